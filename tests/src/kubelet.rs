//! A stand-in for the kubelet, which the test control plane does not run: binds launcher pods
//! to a node, reports them running, ready or failed, and completes their deletion.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The field manager of the stand-in kubelet's writes.
const MANAGER: &str = "test-kubelet";

/// Drives pods in one namespace the way a kubelet would.
#[derive(Clone)]
pub struct Kubelet {
    pods: Api<Pod>,
    node: String,
}

impl Kubelet {
    /// A kubelet for `namespace` that claims to be node `node`.
    pub fn new(client: Client, namespace: &str, node: &str) -> Self {
        Self {
            pods: Api::namespaced(client, namespace),
            node: node.into(),
        }
    }

    /// Registers this kubelet's Node, as a real kubelet does on start (an existing one is
    /// kept). Without it, kube-controller-manager's pod garbage collector deletes the pods
    /// bound to the node, as orphans, about a minute after they were bound. A test that runs
    /// longer than a minute, or replaces launchers, also sends [`Self::heartbeat`]s.
    pub async fn register(&self) -> Result<(), kube::Error> {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}},
        }))
        .map_err(kube::Error::SerdeError)?;
        let nodes: Api<Node> = Api::all(self.pods.clone().into_client());
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reports the Node Ready now, as a kubelet's status heartbeat does. Without it the node
    /// lifecycle controller marks the node unreachable about 50 s after it registered, and
    /// from then on marks every pod bound to it not Ready, new ones the moment they run: a
    /// test that replaces launchers (a reset) after that would never see them Ready.
    pub async fn heartbeat(&self) -> Result<(), kube::Error> {
        let now = Time(Timestamp::now());
        let status = json!({"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "the tests' stand-in kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }]}});
        let nodes: Api<Node> = Api::all(self.pods.clone().into_client());
        nodes
            .patch_status(
                &self.node,
                &PatchParams::default(),
                &Patch::Strategic(&status),
            )
            .await?;
        Ok(())
    }

    /// Keeps sending [`Self::heartbeat`] every 10 s until the returned handle drops.
    pub fn heartbeat_in_background(&self) -> Reaper {
        let kubelet = self.clone();
        Reaper::spawn(async move {
            loop {
                let _ = kubelet.heartbeat().await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        })
    }

    /// Binds the pod to this node (what the scheduler does), as the `pods/binding` subresource.
    pub async fn schedule(&self, pod: &str) -> Result<(), kube::Error> {
        let binding = Binding {
            metadata: kube::api::ObjectMeta {
                name: Some(pod.into()),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.node.clone()),
                ..Default::default()
            },
        };
        // The binding subresource answers with a Status, not the Binding.
        let _: serde_json::Value = self
            .pods
            .create_subresource("binding", pod, &PostParams::default(), &binding)
            .await?;
        Ok(())
    }

    /// Reports the pod's container running, and the pod ready or not.
    pub async fn run(&self, pod: &str, ready: bool) -> Result<(), kube::Error> {
        let now = Time(Timestamp::now());
        let status = json!({
            "status": {
                "phase": "Running",
                "startTime": now,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": if ready { "True" } else { "False" }, "lastTransitionTime": now},
                    {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": now},
                ],
                "containerStatuses": [{
                    "name": "launcher", "image": "launcher", "imageID": "", "ready": ready, "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }],
            }
        });
        self.pods
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(())
    }

    /// Binds and starts (running and ready) each pod `names` yields, `in_flight` at a time,
    /// as a node full of kubelets would; stops at the first failure.
    pub async fn start_all(
        &self,
        names: impl futures::Stream<Item = String>,
        in_flight: usize,
    ) -> Result<(), kube::Error> {
        use futures::{StreamExt, TryStreamExt};
        names
            .map(Ok)
            .try_for_each_concurrent(in_flight, |pod| async move {
                self.schedule(&pod).await?;
                self.run(&pod, true).await
            })
            .await
    }

    /// Reports the launcher exited with `code`.
    pub async fn exit(&self, pod: &str, code: i32) -> Result<(), kube::Error> {
        let now = Time(Timestamp::now());
        let status = json!({
            "status": {
                "phase": if code == 0 { "Succeeded" } else { "Failed" },
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
                "containerStatuses": [{
                    "name": "launcher", "image": "launcher", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": now, "finishedAt": now}},
                }],
            }
        });
        self.pods
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(())
    }

    /// Finishes the deletion of pods that are being deleted (a kubelet confirms a pod is gone
    /// once its containers stopped); returns how many it removed.
    pub async fn reap(&self) -> Result<usize, kube::Error> {
        let mut reaped = 0;
        for pod in self.pods.list(&ListParams::default()).await? {
            if pod.metadata.deletion_timestamp.is_some() {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                };
                match self.pods.delete(&pod.name_any(), &params).await {
                    Ok(_) => reaped += 1,
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(reaped)
    }

    /// Keeps reaping terminating pods in the background until the returned handle drops.
    pub fn reap_in_background(&self) -> Reaper {
        let kubelet = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let _ = kubelet.reap().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Reaper(task)
    }

    /// The field manager name this stand-in uses.
    pub fn manager() -> &'static str {
        MANAGER
    }
}

/// Stops a background reaper when dropped.
pub struct Reaper(tokio::task::JoinHandle<()>);

impl Reaper {
    /// Runs `task` in the background until the returned handle drops.
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.0.abort();
    }
}
