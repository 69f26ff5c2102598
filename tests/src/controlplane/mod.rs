//! A real Kubernetes control plane for tests: etcd, kube-apiserver and, on request,
//! kube-controller-manager, built from pinned Go modules by `tests/controlplane/build.sh`.
//! Tests start it through the one test environment, [`crate::env::Env::builder`]; only its
//! own tests start it directly.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tests::controlplane::Error> {
//! let cp = tests::controlplane::ControlPlane::start().await?;
//! let client = cp.client(); // a kube::Client authenticated as a cluster admin
//! # Ok(()) }
//! ```
//!
//! With [`Options::oidc`] it also runs the tests' OpenID provider (see [`OidcProvider`]) and the
//! apiserver accepts the provider's ID tokens.
//!
//! Every instance lives on its own free loopback ports and in its own temporary folder, so tests
//! may run several at once. Dropping it stops every process and removes the folder, also when
//! the test panics; and each process dies with the thread that started it, so a test that is
//! killed outright leaves nothing running either.

mod binaries;
mod crds;
mod kubeconfig;
mod oidc;
mod oidc_login;
mod pki;
mod process;
mod wait;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::node::Node;
pub use binaries::{Binaries, Versions, cache_dir};
pub use crds::{committed_crds, install_crds};
use kubeconfig::write_kubeconfig;
pub use kubeconfig::{client_from_kubeconfig, service_account_client};
pub use oidc::{OIDC_CLIENT_ID, OidcProvider, OidcUser, PROBE_USER, REDIRECT_GLOBS, token_review};
pub use oidc_login::{LoginCode, Tokens, jwt_claims};
pub use pki::{ADMIN_USER, Pki};
pub use process::{Process, log_tail, process_alive};
use wait::{port_clash, wait_default_account, wait_ready};

/// How long the apiserver may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often to try again with new ports when one was taken by someone else meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// What went wrong while starting or using a control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A built tool is missing.
    #[error(
        "Control-plane binary {0} is missing; build the pinned tools with `bash tests/controlplane/build.sh`"
    )]
    MissingBinary(PathBuf),
    /// build.sh failed.
    #[error("Building the control-plane tools failed ({0}); see build.sh's output above")]
    BuildFailed(String),
    /// A file operation failed.
    #[error("Cannot use {path}: {source}")]
    Io {
        /// The file or program.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating keys or certificates failed.
    #[error("Cannot generate the control plane's certificates: {0}")]
    Pki(String),
    /// A process exited while it should be running.
    #[error("{name} exited ({status}); the end of its log:\n{log_tail}")]
    Exited {
        /// The process.
        name: &'static str,
        /// How it exited.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// The apiserver did not become ready in time.
    #[error(
        "kube-apiserver was not ready after {seconds} s (last error: {last_error}); the end of its log:\n{log_tail}"
    )]
    NotReady {
        /// How long we waited.
        seconds: u64,
        /// The last readiness error.
        last_error: String,
        /// The end of the apiserver's log.
        log_tail: String,
    },
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be loaded.
    #[error("Kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A committed CRD manifest could not be parsed.
    #[error("CRD manifest {file}: {message}")]
    Manifest {
        /// The manifest.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Watching a resource failed.
    #[error("Watch failed: {0}")]
    Watch(String),
    /// A CRD was not Established in time.
    #[error("CRD {0} was not Established within 30 s")]
    NotEstablished(String),
    /// The tests' OpenID provider did not start, or kube-apiserver did not come to trust it.
    #[error("OpenID provider: {0}")]
    Oidc(String),
    /// A node (containerd, kubelet, kube-scheduler) could not be started or used.
    #[error("Node: {0}")]
    Node(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// How to start a control plane.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also run kube-controller-manager (garbage collection, ReplicaSets, service accounts).
    pub controller_manager: bool,
    /// Keep the processes and files in this folder instead of a new temporary one. It is
    /// created if missing and removed on drop all the same.
    pub dir: Option<PathBuf>,
    /// Write an audit log of every write request (see [`ControlPlane::audit_log`]).
    pub audit: bool,
    /// Run an OpenID provider with these users, started before the apiserver, which accepts its
    /// ID tokens (see [`ControlPlane::oidc`]).
    pub oidc: Option<Vec<OidcUser>>,
    /// Also run a real node ([`crate::node::Node`]: containerd, runc, CNI, kubelet,
    /// kube-scheduler) with Verdant's images loaded; implies `controller_manager`. The
    /// apiserver then authorizes kubelets with the Node authorizer, reaches them on their
    /// InternalIP, and authenticates to them with a client certificate.
    pub node: bool,
}

/// The audit policy: the metadata of every write, nothing of reads.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
";

/// A running control plane. Dropping it stops every process and removes its folder.
pub struct ControlPlane {
    dir: PathBuf,
    etcd: Process,
    apiserver: Process,
    controller_manager: Option<Process>,
    oidc: Option<OidcProvider>,
    kubeconfig: PathBuf,
    server: String,
    pki: Pki,
    client: Client,
    binaries: Binaries,
    node: Option<Node>,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver in a new temporary folder and waits until they serve.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::default()).await
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager.
    pub async fn start_with_controller_manager() -> Result<Self, Error> {
        Self::start_with(Options {
            controller_manager: true,
            ..Options::default()
        })
        .await
    }

    /// Starts etcd, kube-apiserver, kube-controller-manager and a real node with Verdant's
    /// images (built by `images/build.sh` first), and waits until the node is Ready.
    pub async fn start_with_node() -> Result<Self, Error> {
        Self::start_with(Options {
            node: true,
            ..Options::default()
        })
        .await
    }

    /// Starts a control plane as `options` say and waits until it serves.
    pub async fn start_with(options: Options) -> Result<Self, Error> {
        let binaries = Binaries::locate()?;
        let dir = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                dir.clone()
            }
            None => tempfile::Builder::new()
                .prefix("verdant-controlplane-")
                .tempdir()
                .map_err(|e| Error::io(&std::env::temp_dir(), e))?
                .keep(),
        };
        // Until the control plane is up, a failure removes the folder again.
        let mut dir_guard = DirGuard(Some(dir.clone()));
        // A node's network comes first: the apiserver listens on the node's address, where its
        // pods (the operator's, in-cluster) reach it too.
        let network = if options.node {
            Some(crate::node::Network::create()?)
        } else {
            None
        };
        let address = network.as_ref().map(|n| std::net::IpAddr::V4(n.ip()));
        let pki = Pki::generate(&dir, address.as_slice())?;
        let oidc = match &options.oidc {
            Some(users) => Some(OidcProvider::start(&binaries, &dir, &pki, users).await?),
            None => None,
        };

        let mut attempt = 1;
        loop {
            let launched = Self::launch(&binaries, &dir, &pki, &options, oidc.as_ref(), address);
            match launched.await {
                Ok(mut cp) => {
                    cp.oidc = oidc;
                    dir_guard.0 = None;
                    if let Some(network) = network {
                        let images = crate::node::Images::build()?;
                        cp.node = Some(Node::start(&cp, &images, network).await?);
                    }
                    return Ok(cp);
                }
                Err(e) if attempt < PORT_ATTEMPTS && port_clash(&e) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn launch(
        binaries: &Binaries,
        dir: &Path,
        pki: &Pki,
        options: &Options,
        oidc: Option<&OidcProvider>,
        address: Option<std::net::IpAddr>,
    ) -> Result<Self, Error> {
        let address = address.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        // Another process may take one before our server binds it: `start_with` tries again.
        let [etcd_client, etcd_peer, apiserver_port] =
            testkit::net::free_ports().map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let etcd_data = dir.join("etcd");
        let _ = std::fs::remove_dir_all(&etcd_data);

        let mut etcd_cmd = Command::new(&binaries.etcd);
        etcd_cmd.args([
            "--name=verdant".to_owned(),
            format!("--data-dir={}", etcd_data.display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=verdant=http://127.0.0.1:{etcd_peer}"),
            // Test data is thrown away; fsync only slows every write down.
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ]);
        let mut etcd = Process::spawn("etcd", etcd_cmd, &dir.join("etcd.log"))?;

        let mut apiserver_cmd = Command::new(&binaries.kube_apiserver);
        apiserver_cmd.args([
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            format!("--secure-port={apiserver_port}"),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!(
                "--service-account-key-file={}",
                pki.service_account_pub.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
            "--v=1".to_owned(),
        ]);
        if options.node {
            // Kubelets reach the apiserver as `system:node:<name>`; `kubectl logs` and `exec`
            // reach kubelets on their node IP, with a certificate they trust.
            let (cert, key) =
                pki.issue_client(dir, "kube-apiserver-kubelet-client", Some("system:masters"))?;
            apiserver_cmd.args([
                "--authorization-mode=Node,RBAC".to_owned(),
                "--kubelet-preferred-address-types=InternalIP".to_owned(),
                format!("--kubelet-client-certificate={}", cert.display()),
                format!("--kubelet-client-key={}", key.display()),
            ]);
        } else {
            apiserver_cmd.arg("--authorization-mode=RBAC");
        }
        if options.audit {
            let policy = dir.join("audit-policy.yaml");
            std::fs::write(&policy, AUDIT_POLICY).map_err(|e| Error::io(&policy, e))?;
            apiserver_cmd.args([
                format!("--audit-policy-file={}", policy.display()),
                format!("--audit-log-path={}", dir.join("audit.log").display()),
                "--audit-log-format=json".to_owned(),
                "--audit-log-mode=blocking".to_owned(),
            ]);
        }
        if let Some(oidc) = oidc {
            apiserver_cmd.args(oidc.apiserver_args(dir)?);
        }
        let mut apiserver = Process::spawn(
            "kube-apiserver",
            apiserver_cmd,
            &dir.join("kube-apiserver.log"),
        )?;

        let server = format!("https://{address}:{apiserver_port}");
        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &server,
            &pki.ca_cert,
            ADMIN_USER,
            &pki.admin_cert,
            &pki.admin_key,
        )?;
        let client = client_from_kubeconfig(&kubeconfig).await?;

        wait_ready(&client, &mut etcd, &mut apiserver).await?;
        if let Some(oidc) = oidc {
            oidc.wait_trusted(&client, &mut apiserver).await?;
        }

        let controller_manager = if options.controller_manager || options.node {
            let mut cmd = Command::new(&binaries.kube_controller_manager);
            cmd.args([
                format!("--kubeconfig={}", kubeconfig.display()),
                "--bind-address=127.0.0.1".to_owned(),
                "--secure-port=0".to_owned(),
                "--leader-elect=false".to_owned(),
                "--use-service-account-credentials=false".to_owned(),
                format!(
                    "--service-account-private-key-file={}",
                    pki.service_account_key.display()
                ),
                format!("--root-ca-file={}", pki.ca_cert.display()),
                format!("--cluster-signing-cert-file={}", pki.ca_cert.display()),
                format!("--cluster-signing-key-file={}", pki.ca_key.display()),
                "--controllers=*".to_owned(),
                "--v=1".to_owned(),
            ]);
            let mut kcm = Process::spawn(
                "kube-controller-manager",
                cmd,
                &dir.join("kube-controller-manager.log"),
            )?;
            wait_default_account(&client, &mut kcm, "default").await?;
            Some(kcm)
        } else {
            None
        };

        Ok(Self {
            dir: dir.to_owned(),
            etcd,
            apiserver,
            controller_manager,
            oidc: None,
            kubeconfig,
            server,
            pki: pki.clone(),
            client,
            binaries: binaries.clone(),
            node: None,
        })
    }

    /// A client authenticated as a cluster admin.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Creates namespace `name`. Where kube-controller-manager runs, also waits for the
    /// `default` service account it makes there, which pods need.
    pub async fn create_namespace(&mut self, name: &str) -> Result<(), Error> {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(name.into());
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        if let Some(kcm) = self.controller_manager.as_mut() {
            wait_default_account(&self.client, kcm, name).await?;
        }
        Ok(())
    }

    /// A kubeconfig file for this control plane (for kubectl, helm, or another process).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver URL, e.g. `https://127.0.0.1:40123`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A client (and its kubeconfig file) authenticated as `user` in `group`, by a client
    /// certificate from this control plane's CA. Give it RBAC rules, or `system:masters`.
    pub async fn client_for(
        &self,
        user: &str,
        group: Option<&str>,
    ) -> Result<(Client, PathBuf), Error> {
        let (cert, key) = self.pki.issue_client(&self.dir, user, group)?;
        let kubeconfig = self
            .dir
            .join(format!("kubeconfig-{}", user.replace([':', '/'], "_")));
        write_kubeconfig(
            &kubeconfig,
            &self.server,
            &self.pki.ca_cert,
            user,
            &cert,
            &key,
        )?;
        Ok((client_from_kubeconfig(&kubeconfig).await?, kubeconfig))
    }

    /// The audit log (JSON lines), when started with [`Options::audit`].
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The keys and certificates of this control plane.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The folder holding its data, logs and kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tools it runs (and kubectl, helm, kubeconform of the same pins).
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// Process ids of the running processes (etcd, kube-apiserver, kube-controller-manager,
    /// the OpenID provider).
    pub fn pids(&self) -> Vec<u32> {
        [
            Some(&self.etcd),
            Some(&self.apiserver),
            self.controller_manager.as_ref(),
            self.oidc.as_ref().map(OidcProvider::process),
        ]
        .into_iter()
        .flatten()
        .filter_map(Process::pid)
        .collect()
    }

    /// The node, when started with [`Options::node`].
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// The node, to restart its containerd or check on it.
    pub fn node_mut(&mut self) -> Option<&mut Node> {
        self.node.as_mut()
    }

    /// A `kubectl` command already pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.binaries.kubectl);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    /// Fails if any process has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        self.etcd.check_running()?;
        self.apiserver.check_running()?;
        if let Some(kcm) = self.controller_manager.as_mut() {
            kcm.check_running()?;
        }
        if let Some(oidc) = self.oidc.as_mut() {
            oidc.process_mut().check_running()?;
        }
        if let Some(node) = self.node.as_mut() {
            node.check_running()?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("dir", &self.dir)
            .field("pids", &self.pids())
            .finish_non_exhaustive()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "control plane in {} (test panicked); the end of kube-apiserver's log:\n{}",
                self.dir.display(),
                self.apiserver.log_tail(20)
            );
        }
        // The node first: its kubelet talks to the apiserver until it stops.
        drop(self.node.take());
        if let Some(kcm) = self.controller_manager.as_mut() {
            kcm.stop();
        }
        self.apiserver.stop();
        if let Some(oidc) = self.oidc.as_mut() {
            oidc.process_mut().stop();
        }
        self.etcd.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a folder on drop unless emptied first.
struct DirGuard(Option<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
