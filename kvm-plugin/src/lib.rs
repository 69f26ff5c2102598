//! `verdant-kvm-plugin`: a Kubernetes device plugin that gives `/dev/kvm`, and nothing else of
//! the node, to launcher pods that are not privileged (the chart's `launcher.privileged:
//! false`, as KubeVirt runs its virt-launcher pods).
//!
//! It runs on each KVM node (a DaemonSet of the chart) and speaks the kubelet's device plugin
//! API, gRPC over Unix sockets in the kubelet's `device-plugins` folder:
//! - it serves the plugin on its own socket there ([`SOCKET_NAME`]) and registers it with the
//!   kubelet's `kubelet.sock` for [`launcher_api::devices::KVM_RESOURCE`]. A restarted kubelet
//!   empties the folder and makes a new `kubelet.sock`; the plugin sees that and serves and
//!   registers again. (The kubelet's newer plugin watcher, a socket in `plugins_registry`, is
//!   not used: the kubelet asks it for `GetInfo` with the socket's path as the HTTP/2
//!   `:authority`, which the HTTP/2 stack here, as the protocol says, refuses; the device
//!   plugin calls the kubelet makes after registering name `localhost`.)
//! - it advertises [`Config::devices`] units of the resource, all one shareable device
//!   (`/dev/kvm` serves any number of VMs), Healthy while the device is a character device
//!   where the plugin sees it, checked every [`Config::health_period`] (the chart mounts the
//!   node's device, and a node without one gets no plugin at all);
//! - `Allocate` answers each container with the device node alone, read and write (no
//!   `mknod`): the container runtime adds it to the container and its device cgroup.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// The kubelet's device plugin API, `v1beta1`, compiled from `proto/` by the build script.
pub mod api {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("v1beta1");
}

use api::device_plugin_server::{DevicePlugin, DevicePluginServer};
use api::registration_client::RegistrationClient;
use api::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse, Device, DevicePluginOptions,
    DeviceSpec, Empty, ListAndWatchResponse, RegisterRequest,
};

/// The device plugin API version this plugin speaks.
pub const API_VERSION: &str = "v1beta1";
/// The plugin's socket, in the kubelet's `device-plugins` folder.
pub const SOCKET_NAME: &str = "verdant-kvm.sock";
/// The kubelet's registration socket there.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// How often the plugin looks whether the kubelet restarted.
const KUBELET_CHECK: Duration = Duration::from_secs(2);
/// How long a registration may take, and the wait before another try.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
const REGISTER_RETRY: Duration = Duration::from_secs(2);
/// The most units a node may advertise.
pub const MAX_DEVICES: u32 = 10_000;

/// How the plugin runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The kubelet's folder (`/var/lib/kubelet`, where its `device-plugins` folder is; the
    /// kubelet does not move that one with `--root-dir`).
    pub kubelet_dir: PathBuf,
    /// The device on the node, given to containers at the same path.
    pub device: PathBuf,
    /// Units advertised: how many launcher pods the node may run at once.
    pub devices: u32,
    /// How often the device's presence is checked.
    pub health_period: Duration,
}

impl Config {
    /// The kubelet's `device-plugins` folder.
    pub fn plugin_dir(&self) -> PathBuf {
        self.kubelet_dir.join("device-plugins")
    }
}

/// Why the plugin could not serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubelet's device plugin folder is missing: the wrong `--kubelet-dir`, or no kubelet.
    #[error(
        "{0} does not exist: give --kubelet-dir the folder that holds the kubelet's device-plugins folder (the chart's launcher.devicePlugin.kubeletDir), /var/lib/kubelet unless the node's distribution moved it"
    )]
    NoPluginDir(PathBuf),
    /// The socket could not be made.
    #[error("cannot listen on {path}: {source}")]
    Listen {
        /// The socket.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// `Healthy` while `device` is a character device, else `Unhealthy`.
pub fn health(device: &Path) -> &'static str {
    match std::fs::metadata(device) {
        Ok(meta) if meta.file_type().is_char_device() => "Healthy",
        _ => "Unhealthy",
    }
}

/// The advertised units: `kvm-0` to `kvm-<devices - 1>`, all with the device's `health`.
pub fn device_list(devices: u32, health: &str) -> Vec<Device> {
    (0..devices)
        .map(|i| Device {
            id: format!("kvm-{i}"),
            health: health.into(),
        })
        .collect()
}

/// The answer to `Allocate`: the device, read and write, for each container; an error names
/// a unit this plugin never advertised.
pub fn allocate(
    request: &AllocateRequest,
    device: &Path,
    devices: u32,
) -> Result<AllocateResponse, Status> {
    let mut container_responses = Vec::with_capacity(request.container_requests.len());
    for container in &request.container_requests {
        for id in &container.devices_ids {
            let ours = id
                .strip_prefix("kvm-")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n < devices && id == &format!("kvm-{n}"));
            if !ours {
                return Err(Status::invalid_argument(format!(
                    "unknown device {id:?}: this plugin advertises kvm-0 to kvm-{}",
                    devices - 1
                )));
            }
        }
        container_responses.push(ContainerAllocateResponse {
            envs: Default::default(),
            devices: vec![DeviceSpec {
                container_path: launcher_api::devices::KVM_DEVICE.into(),
                host_path: device.to_string_lossy().into_owned(),
                permissions: "rw".into(),
            }],
        });
    }
    Ok(AllocateResponse {
        container_responses,
    })
}

/// The plugin's two services.
#[derive(Clone)]
struct Plugin {
    device: PathBuf,
    devices: u32,
    health: watch::Receiver<&'static str>,
}

type ListStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for Plugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions::default()))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let devices = self.devices;
        // The current list, then a new one at each change of health.
        let stream = WatchStream::new(self.health.clone()).map(move |health| {
            Ok(ListAndWatchResponse {
                devices: device_list(devices, health),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let request = request.into_inner();
        let answer = allocate(&request, &self.device, self.devices)?;
        tracing::info!(
            containers = answer.container_responses.len(),
            device = %self.device.display(),
            "allocated"
        );
        Ok(Response::new(answer))
    }
}

/// The identity of a file (device and inode): a new `kubelet.sock` is a restarted kubelet.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Registers the plugin's socket with the kubelet at `kubelet_socket`.
async fn register(kubelet_socket: &Path) -> Result<(), String> {
    let path = kubelet_socket.to_owned();
    // The URI is not used for the connection; it names the `:authority` the kubelet sees.
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| format!("cannot reach {}: {e}", kubelet_socket.display()))?;
    RegistrationClient::new(channel)
        .register(RegisterRequest {
            version: API_VERSION.into(),
            endpoint: SOCKET_NAME.into(),
            resource_name: launcher_api::devices::KVM_RESOURCE.into(),
            options: Some(DevicePluginOptions::default()),
        })
        .await
        .map_err(|status| format!("the kubelet refused the registration: {}", status.message()))?;
    Ok(())
}

/// Serves the plugin in [`Config::plugin_dir`] and registers it with the kubelet, again after
/// each restart of the kubelet, until `shutdown` completes; then removes its socket (the
/// kubelet then withdraws the resource).
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let dir = config.plugin_dir();
    if !dir.is_dir() {
        return Err(Error::NoPluginDir(dir));
    }
    let socket = dir.join(SOCKET_NAME);
    let kubelet_socket = dir.join(KUBELET_SOCKET);

    let (tx, rx) = watch::channel(health(&config.device));
    let device = config.device.clone();
    let period = config.health_period;
    let watcher = tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let now = health(&device);
            tx.send_if_modified(|was| {
                let changed = *was != now;
                if changed {
                    tracing::warn!(device = %device.display(), health = now, "device health changed");
                    *was = now;
                }
                changed
            });
        }
    });
    let plugin = Plugin {
        device: config.device.clone(),
        devices: config.devices,
        health: rx,
    };
    let result = serve_and_register(&plugin, &socket, &kubelet_socket, shutdown).await;
    watcher.abort();
    let _ = std::fs::remove_file(&socket);
    result
}

async fn serve_and_register(
    plugin: &Plugin,
    socket: &Path,
    kubelet_socket: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let listen = |source| Error::Listen {
            path: socket.to_owned(),
            source,
        };
        // A socket left by a plugin that was killed would refuse the bind.
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(listen(e)),
        }
        let listener = tokio::net::UnixListener::bind(socket).map_err(listen)?;
        // Only root (the kubelet) may connect.
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(listen)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DevicePluginServer::new(plugin.clone()))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!(
            socket = %socket.display(),
            device = %plugin.device.display(),
            health = *plugin.health.borrow(),
            devices = plugin.devices,
            "serving"
        );

        // Register, and again whenever the kubelet is not there yet or refuses.
        let kubelet = loop {
            let kubelet = identity(kubelet_socket);
            match tokio::time::timeout(REGISTER_TIMEOUT, register(kubelet_socket)).await {
                Ok(Ok(())) => {
                    tracing::info!(
                        resource = launcher_api::devices::KVM_RESOURCE,
                        "registered with the kubelet"
                    );
                    break kubelet;
                }
                Ok(Err(e)) => tracing::warn!("{e}; trying again"),
                Err(_) => tracing::warn!(
                    "the kubelet did not answer the registration within {REGISTER_TIMEOUT:?}; trying again"
                ),
            }
            tokio::select! {
                () = &mut shutdown => {
                    let _ = stop.send(());
                    return Ok(());
                }
                () = tokio::time::sleep(REGISTER_RETRY) => {}
            }
        };

        // Until the kubelet restarts (a new kubelet.sock, and ours removed) or we stop.
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    let _ = stop.send(());
                    let _ = server.await;
                    return Ok(());
                }
                () = tokio::time::sleep(KUBELET_CHECK) => {}
            }
            if server.is_finished() {
                break;
            }
            if identity(kubelet_socket) != kubelet || identity(socket).is_none() {
                tracing::info!("the kubelet restarted; serving and registering again");
                break;
            }
        }
        let _ = stop.send(());
        if let Ok(Err(e)) = server.await {
            return Err(Error::Serve(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::ContainerAllocateRequest;

    #[test]
    fn a_character_device_is_healthy_and_anything_else_is_not() {
        assert_eq!(health(Path::new("/dev/null")), "Healthy");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kvm");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(health(&file), "Unhealthy");
        assert_eq!(health(&dir.path().join("missing")), "Unhealthy");
    }

    #[test]
    fn units_are_numbered_and_share_health() {
        let list = device_list(3, "Healthy");
        let ids: Vec<_> = list.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["kvm-0", "kvm-1", "kvm-2"]);
        assert!(list.iter().all(|d| d.health == "Healthy"));
    }

    #[test]
    fn allocate_gives_each_container_the_device_alone_and_refuses_unknown_units() {
        let request = |ids: &[&str]| AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: ids.iter().map(|s| s.to_string()).collect(),
            }],
        };
        let answer = allocate(&request(&["kvm-1"]), Path::new("/dev/kvm"), 2).unwrap();
        assert_eq!(answer.container_responses.len(), 1);
        let devices = &answer.container_responses[0].devices;
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].container_path, "/dev/kvm");
        assert_eq!(devices[0].host_path, "/dev/kvm");
        assert_eq!(devices[0].permissions, "rw");
        for bad in ["kvm-2", "kvm-01", "gpu-0", "kvm--1", ""] {
            let err = allocate(&request(&[bad]), Path::new("/dev/kvm"), 2).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }
}
