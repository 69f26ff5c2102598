//! A node of real launcher processes, until the real kubelet arrives: each launcher pod the
//! operator makes is bound here, and its container's command line (`verdant-launcher run
//! --config-json ...`) runs as a local process on a loopback address of its own (the "pod
//! IP", 127.x.y.z, so every launcher keeps the fixed VNC and HTTP ports). Boot files come
//! from the pod's hostPath volumes, the display password from its Secret. Readiness is the
//! launcher's own `/readyz`; deleting a pod sends SIGTERM and waits for the exit.
//!
//! What this does not do, and a real node will: images, runc, cgroups, probes run by a
//! kubelet. The pod spec's command line, config and Secret are used as the operator built them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use launcher_api::LauncherConfig;
use launcher_api::endpoints::{HTTP_PORT, VNC_PORT};
use serde_json::json;

use crate::kubelet::Kubelet;

/// One launcher process.
struct Running {
    child: Child,
    ip: Ipv4Addr,
    ready: bool,
}

/// Runs the launcher pods of one namespace as local processes. Dropping it kills them.
pub struct LocalNode {
    running: Arc<Mutex<HashMap<String, Running>>>,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

/// The host path of `path` inside `pod`'s container: through the hostPath volume mounted there.
fn host_path(pod: &Pod, path: &Path) -> Option<PathBuf> {
    let spec = pod.spec.as_ref()?;
    let container = spec.containers.first()?;
    for mount in container.volume_mounts.iter().flatten() {
        let Ok(rest) = path.strip_prefix(&mount.mount_path) else {
            continue;
        };
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)?;
        let host = PathBuf::from(&volume.host_path.as_ref()?.path);
        return Some(if rest.as_os_str().is_empty() {
            host
        } else {
            host.join(rest)
        });
    }
    None
}

impl LocalNode {
    /// Starts running the launcher pods of `namespace` as node `node`.
    pub async fn start(client: Client, namespace: &str, node: &str) -> Result<Self, kube::Error> {
        let kubelet = Kubelet::new(client.clone(), namespace, node);
        kubelet.register().await?;
        let running: Arc<Mutex<HashMap<String, Running>>> = Arc::default();
        let dir = tempfile::Builder::new()
            .prefix("verdant-localnode-")
            .tempdir()
            .expect("a temporary folder");
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(client, namespace);
        let state = Arc::clone(&running);
        let root = dir.path().to_owned();
        let launcher = crate::bins::binary("verdant-launcher");
        let task = tokio::spawn(async move {
            let _heartbeat = kubelet.heartbeat_in_background();
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for pod in list {
                        let step = Step {
                            kubelet: &kubelet,
                            pods: &pods,
                            secrets: &secrets,
                            running: &state,
                            root: &root,
                            launcher: &launcher,
                        };
                        if let Err(e) = step.pod(&pod).await {
                            eprintln!("localnode: pod {}: {e}", pod.name_any());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Self { running, task, dir })
    }

    /// The loopback address pod `pod` runs on.
    pub fn pod_ip(&self, pod: &str) -> Option<Ipv4Addr> {
        self.lock().get(pod).map(|r| r.ip)
    }

    /// The process id of pod `pod`'s launcher.
    pub fn pid(&self, pod: &str) -> Option<u32> {
        self.lock().get(pod).map(|r| r.child.id())
    }

    /// The log of pod `pod`'s launcher so far.
    pub fn log(&self, pod: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{pod}.log"))).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.task.abort();
        for (_, mut r) in self.lock().drain() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

/// One pass over one pod.
struct Step<'a> {
    kubelet: &'a Kubelet,
    pods: &'a Api<Pod>,
    secrets: &'a Api<Secret>,
    running: &'a Mutex<HashMap<String, Running>>,
    root: &'a Path,
    launcher: &'a Path,
}

impl Step<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn pod(&self, pod: &Pod) -> Result<(), String> {
        let name = pod.name_any();
        if pod.metadata.deletion_timestamp.is_some() {
            let child = self.lock().remove(&name);
            if let Some(mut r) = child {
                // SIGTERM, then wait for the launcher to stop its VM (up to the grace period).
                // SAFETY: kill(2) with a pid we spawned and have not reaped; no memory involved.
                unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
                let grace = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30);
                let deadline = std::time::Instant::now() + Duration::from_secs(grace as u64);
                while r.child.try_wait().ok().flatten().is_none()
                    && std::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = r.child.kill();
                let _ = r.child.wait();
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            return match self.pods.delete(&name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e.to_string()),
            };
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return Ok(());
        }
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none()
        {
            self.kubelet
                .schedule(&name)
                .await
                .map_err(|e| e.to_string())?;
            return self.start(pod).await;
        }
        let exited = {
            let mut running = self.lock();
            match running.get_mut(&name) {
                None => return Ok(()),
                Some(r) => match r.child.try_wait() {
                    Ok(Some(status)) => {
                        running.remove(&name);
                        Some(status.code().unwrap_or(128 + 9))
                    }
                    _ => None,
                },
            }
        };
        if let Some(code) = exited {
            return self
                .kubelet
                .exit(&name, code)
                .await
                .map_err(|e| e.to_string());
        }
        let (ip, ready) = {
            let running = self.lock();
            let Some(r) = running.get(&name) else {
                return Ok(());
            };
            (r.ip, r.ready)
        };
        if !ready {
            let probe = SocketAddr::from((ip, HTTP_PORT));
            if crate::env::http_get(probe, launcher_api::endpoints::READYZ)
                .await
                .is_some()
            {
                self.status(&name, ip, true).await?;
                if let Some(r) = self.lock().get_mut(&name) {
                    r.ready = true;
                }
            }
        }
        Ok(())
    }

    async fn start(&self, pod: &Pod) -> Result<(), String> {
        let name = pod.name_any();
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .ok_or("no container")?;
        let args = container.args.clone().unwrap_or_default();
        let json = args
            .iter()
            .position(|a| a == launcher_api::argv::CONFIG_JSON)
            .and_then(|i| args.get(i + 1))
            .ok_or("no --config-json in the container's args")?;
        let mut config = LauncherConfig::from_json(json).map_err(|e| e.to_string())?;
        config.kernel =
            host_path(pod, &config.kernel).ok_or("the kernel is not on a hostPath volume")?;
        if let Some(initrd) = &config.initrd {
            config.initrd =
                Some(host_path(pod, initrd).ok_or("the initrd is not on a hostPath volume")?);
        }
        // The directories the launcher must stay inside, as mounted: the host directories.
        for root in [&mut config.kernel_root, &mut config.initrd_root] {
            if let Some(dir) = root.as_ref() {
                *root = Some(host_path(pod, dir).ok_or("a boot root is not a hostPath volume")?);
            }
        }
        // The launcher's ports are fixed: each pod gets a loopback address of its own.
        let ip = testkit::net::free_loopback_ip(&[VNC_PORT, HTTP_PORT]);
        config.http = Some(SocketAddr::from((ip, HTTP_PORT)).to_string());
        if let Some(vnc) = config.vnc.as_mut() {
            vnc.listen = SocketAddr::from((ip, VNC_PORT)).to_string();
            if vnc.password_file.is_some() {
                let desktop = pod
                    .labels()
                    .get(crds::labels::DESKTOP_LABEL)
                    .cloned()
                    .unwrap_or_default();
                let secret = self
                    .secrets
                    .get(&crds::labels::display_secret_name(&desktop))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut data = secret.data.unwrap_or_default();
                let password = data
                    .remove(crds::labels::DISPLAY_PASSWORD_KEY)
                    .ok_or("the display Secret has no password")?;
                let file = self.root.join(format!("{name}.password"));
                std::fs::write(&file, &password.0).map_err(|e| e.to_string())?;
                vnc.password_file = Some(file);
                // As the Secret volume would have it: the file only where the key is.
                if vnc.view_only_password_file.is_some() {
                    let file = self.root.join(format!("{name}.view-only-password"));
                    let _ = std::fs::remove_file(&file);
                    if let Some(view_only) =
                        data.remove(crds::labels::DISPLAY_VIEW_ONLY_PASSWORD_KEY)
                    {
                        std::fs::write(&file, &view_only.0).map_err(|e| e.to_string())?;
                    }
                    vnc.view_only_password_file = Some(file);
                }
            }
        }
        // Appended to: a pod started again under the same name keeps its predecessor's log, as
        // `kubectl logs --previous` would.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.root.join(format!("{name}.log")))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let args = launcher_api::argv::run_args(&config).map_err(|e| e.to_string())?;
        let child = Command::new(self.launcher)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.launcher.display()))?;
        self.lock().insert(
            name.clone(),
            Running {
                child,
                ip,
                ready: false,
            },
        );
        self.status(&name, ip, false).await
    }

    async fn status(&self, pod: &str, ip: Ipv4Addr, ready: bool) -> Result<(), String> {
        self.kubelet
            .run(pod, ready)
            .await
            .map_err(|e| e.to_string())?;
        let now = Time(Timestamp::now());
        let status = json!({"status": {"podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}], "hostIP": "127.0.0.1", "startTime": now}});
        self.pods
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
