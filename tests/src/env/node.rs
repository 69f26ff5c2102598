//! What runs the environment's launcher pods ([`NodeKind`]), and what tests of desktops on a
//! node do with it: apply YAML with the real kubectl, find a desktop's pod, read its display
//! password.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;

use super::Env;
use crate::controlplane::ControlPlane;
use crate::kubelet::{Kubelet, Reaper};
use crate::localnode::LocalNode;
use testkit::eventually;

/// What runs the launcher pods; see the table in [`super`]'s docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// No node: pods stay Pending.
    None,
    /// The stand-in node `node-1`, which the test drives through [`Env::kubelet`].
    StandIn,
    /// A stand-in node that reports every pod Ready at once and reaps deleted ones.
    StandInReady,
    /// Launcher processes running the demo guest ([`LocalNode`]; needs `/dev/kvm`).
    Launchers,
    /// The control plane's real node ([`crate::node`]; needs root, and `/dev/kvm` for the demo
    /// guest).
    Real,
}

impl NodeKind {
    /// The kind of part missing here for this node (see [`testkit::skip`]) and why, if one is.
    pub fn missing(self) -> Option<(&'static str, String)> {
        if matches!(self, Self::Launchers | Self::Real)
            && let Some(why) = crate::e2e::demo_guest_missing()
        {
            return Some((testkit::KVM, why));
        }
        if self == Self::Real {
            return crate::node::missing().map(|why| (testkit::NODE, why));
        }
        None
    }
}

/// The running node of an [`Env`].
pub enum Node {
    /// None: pods stay Pending.
    None,
    /// The stand-in the test drives ([`Env::kubelet`]).
    StandIn,
    /// A stand-in kubelet that reports every pod Ready (stops on drop).
    StandInReady(Reaper),
    /// Launcher processes with the demo guest.
    Launchers(LocalNode),
    /// The control plane's real node: the kubelet runs the pods.
    Real {
        /// `kubectl` against the control plane, for the launchers' logs.
        kubectl: PathBuf,
        /// Its kubeconfig.
        kubeconfig: PathBuf,
        /// The pods' namespace.
        namespace: String,
    },
}

/// Starts the node of kind `kind` for the pods of namespace `ns`.
pub(super) async fn start(kind: NodeKind, cp: &ControlPlane, kubelet: &Kubelet, ns: &str) -> Node {
    match kind {
        NodeKind::None => Node::None,
        NodeKind::StandIn => {
            kubelet.register().await.expect("node");
            Node::StandIn
        }
        NodeKind::StandInReady => {
            kubelet.register().await.expect("node");
            Node::StandInReady(stand_in_ready(
                kubelet.clone(),
                Api::namespaced(cp.client(), ns),
            ))
        }
        NodeKind::Launchers => Node::Launchers(
            LocalNode::start(cp.client(), ns, "node-1")
                .await
                .expect("local node"),
        ),
        NodeKind::Real => Node::Real {
            kubectl: cp.binaries().kubectl.clone(),
            kubeconfig: cp.kubeconfig().to_owned(),
            namespace: ns.to_owned(),
        },
    }
}

/// The stand-in of [`NodeKind::StandInReady`]: starts, as Ready, every pod of `pods` not bound
/// yet, as `kubelet`'s node, and reaps deleted ones, until dropped.
pub fn stand_in_ready(kubelet: Kubelet, pods: Api<Pod>) -> Reaper {
    Reaper::spawn(async move {
        let _heartbeat = kubelet.heartbeat_in_background();
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                // Many at once, as a node full of kubelets would (a pool's resets come in
                // bursts).
                let unbound = list.into_iter().filter(|pod| {
                    let bound = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_some();
                    pod.metadata.deletion_timestamp.is_none() && !bound
                });
                let names = futures::stream::iter(unbound.map(|p| kube::ResourceExt::name_any(&p)));
                let _ = kubelet.start_all(names, 16).await;
            }
            let _ = kubelet.reap().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

impl Node {
    /// The launcher log of `pod` (empty for a stand-in).
    pub fn log(&self, pod: &str) -> String {
        match self {
            Self::Launchers(node) => node.log(pod),
            Self::Real {
                kubectl,
                kubeconfig,
                namespace,
            } => std::process::Command::new(kubectl)
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args(["--namespace", namespace, "logs", pod])
                .output()
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                .unwrap_or_default(),
            Self::None | Self::StandIn | Self::StandInReady(_) => String::new(),
        }
    }

    /// The loopback address `pod`'s launcher listens on (local launchers only).
    pub fn pod_ip(&self, pod: &str) -> Option<std::net::Ipv4Addr> {
        match self {
            Self::Launchers(node) => node.pod_ip(pod),
            _ => None,
        }
    }

    /// The process id of `pod`'s launcher (local launchers only).
    pub fn pid(&self, pod: &str) -> Option<u32> {
        match self {
            Self::Launchers(node) => node.pid(pod),
            _ => None,
        }
    }
}

impl Env {
    /// A Desktop named `name` running the demo guest, as YAML for `kubectl apply`.
    pub fn demo_desktop(&self, name: &str) -> String {
        format!(
            "apiVersion: vdi.verdant.dev/v1alpha1
kind: Desktop
metadata:
  name: {name}
  namespace: {ns}
spec:
{spec}",
            ns = self.ns,
            spec = self.demo_spec(2)
        )
    }

    /// The spec of a desktop running the demo guest, as YAML indented by `indent` spaces.
    pub fn demo_spec(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        format!(
            "{pad}resources: {{cpus: 1, memory: 128Mi}}\n{pad}boot:\n{pad}  kernel: {{hostPath: {}}}\n{pad}display: {{width: 1280, height: 800}}\n",
            self.kernel.display()
        )
    }

    /// `kubectl apply -f -` of `yaml`; panics with kubectl's output when it fails.
    pub fn apply(&self, yaml: &str) {
        let mut child = self
            .cp
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("kubectl's stdin");
            stdin.write_all(yaml.as_bytes()).expect("YAML to kubectl");
        }
        let out = child.wait_with_output().expect("kubectl finishes");
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            crate::e2e::text(&out)
        );
    }

    /// `kubectl` with `args` against the test's namespace: its output, stdout then stderr.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.cp
            .kubectl()
            .args(["--namespace", &self.ns])
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// The launcher pod of Desktop `desktop`, once it exists (on a real node's time).
    pub async fn pod_of(&self, desktop: &str) -> Pod {
        let desktops = self.desktops();
        let pods = self.pods();
        let what = format!("a launcher pod for {desktop}");
        eventually(&what, crate::e2e::LIMIT, || async {
            let name = desktops.get(desktop).await.ok()?.status?.pod_name?;
            pods.get_opt(&name).await.ok()?
        })
        .await
    }

    /// The display password of Desktop `desktop`, from its Secret.
    pub async fn display_password(&self, desktop: &str) -> Vec<u8> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let secret = secrets
            .get(&crds::labels::display_secret_name(desktop))
            .await
            .expect("the display Secret");
        secret
            .data
            .and_then(|mut d| d.remove(crds::labels::DISPLAY_PASSWORD_KEY))
            .expect("the Secret holds the password")
            .0
    }
}
