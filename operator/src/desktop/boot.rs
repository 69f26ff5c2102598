//! Boot files: where the launcher finds the kernel and initrd a Desktop names, and the pod
//! volume that brings each. A host path must lie under a directory the administrator allows
//! ([`crate::options::LauncherPod::host_paths`]); that directory is mounted whole and
//! read-only, and the launcher opens the file inside it without leaving it. Pure.

use std::path::{Path, PathBuf};

use crds::ArtifactSource;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ImageVolumeSource, PersistentVolumeClaimVolumeSource, Volume, VolumeMount,
};

use super::invalid::Invalid;

/// A boot file's volume, mount and path inside the launcher, and the directory the launcher
/// must open it without leaving (a host directory).
pub struct BootFile {
    /// The pod volume that brings the file.
    pub volume: Volume,
    /// Its mount in the launcher container.
    pub mount: VolumeMount,
    /// The file's path in the container.
    pub path: String,
    /// The directory the launcher must not leave (a host directory).
    pub root: Option<String>,
}

/// The allowed host directory `path` lies under, and its path inside it; why not, otherwise.
fn allowed(path: &str, field: &str, host_paths: &[PathBuf]) -> Result<(PathBuf, String), Invalid> {
    let refuse = |why: String| Invalid {
        reason: "HostPathNotAllowed",
        message: format!("{field}.hostPath {path}: {why}"),
    };
    if !crate::options::plain_absolute(path) {
        return Err(refuse(
            "write a plain absolute path (no `.`, `..`, `//` or trailing `/`)".into(),
        ));
    }
    let file = Path::new(path);
    let root = host_paths
        .iter()
        .find(|dir| file.starts_with(dir) && file != dir.as_path())
        .ok_or_else(|| {
            let list = host_paths
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            refuse(if host_paths.is_empty() {
                "this operator allows no host path; boot from an image or a PersistentVolumeClaim, or ask your administrator to allow the file's directory (verdant-operator --allow-host-path, the chart's launcher.hostPaths)".into()
            } else {
                format!(
                    "not under a host directory the administrator allows ({list}); move the file there, boot from an image or a PersistentVolumeClaim, or ask for its directory to be allowed (verdant-operator --allow-host-path, the chart's launcher.hostPaths)"
                )
            })
        })?;
    let inside = file
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((root.clone(), inside))
}

/// The volume, mount and path of boot file `name` from `source` (the Desktop's `field`),
/// host paths under `host_paths` only.
pub fn boot_file(
    name: &str,
    source: &ArtifactSource,
    field: &str,
    host_paths: &[PathBuf],
) -> Result<BootFile, Invalid> {
    let dir = format!("/verdant/boot/{name}");
    let mut volume = Volume {
        name: format!("boot-{name}"),
        ..Volume::default()
    };
    let mut mount = VolumeMount {
        name: volume.name.clone(),
        mount_path: dir.clone(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut root = None;
    let path = match (
        &source.host_path,
        &source.image,
        &source.persistent_volume_claim,
    ) {
        (Some(host_path), None, None) => {
            // The allowed directory, mounted whole and read-only; the launcher opens the file
            // inside it without leaving it, so neither `..` nor a symbolic link reaches the
            // node's other files.
            let (allowed_dir, inside) = allowed(host_path, field, host_paths)?;
            volume.host_path = Some(HostPathVolumeSource {
                path: allowed_dir.to_string_lossy().into_owned(),
                type_: Some("Directory".into()),
            });
            mount.mount_path = format!("{dir}/host");
            root = Some(mount.mount_path.clone());
            format!("{dir}/host/{inside}")
        }
        (None, Some(image), None) => {
            volume.image = Some(ImageVolumeSource {
                reference: Some(image.reference.clone()),
                pull_policy: Some("IfNotPresent".into()),
            });
            format!("{dir}{}", image.path)
        }
        (None, None, Some(claim)) => {
            volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.claim_name.clone(),
                read_only: Some(true),
            });
            format!("{dir}/{}", claim.path.trim_start_matches('/'))
        }
        _ => {
            return Err(Invalid {
                reason: "InvalidBootSource",
                message: format!(
                    "{field}: set exactly one of hostPath, image or persistentVolumeClaim"
                ),
            });
        }
    };
    Ok(BootFile {
        volume,
        mount,
        path,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::super::build::{BuildContext, build_pod, launcher_config};
    use super::*;
    use crate::options::LauncherPod;
    use crds::Desktop;

    fn fixture() -> Desktop {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "metadata": {"name": "d", "namespace": "ns", "uid": "u"},
            "spec": {
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"image": {"reference": "registry.example/k:6.12", "path": "/boot/vmlinuz"}}},
            },
        }))
        .unwrap()
    }

    fn ctx() -> BuildContext<'static> {
        static POD: std::sync::LazyLock<LauncherPod> = std::sync::LazyLock::new(|| LauncherPod {
            host_paths: vec!["/var/lib/verdant".into()],
            ..LauncherPod::default()
        });
        BuildContext {
            launcher_image: "l:1",
            launcher_pod: &POD,
        }
    }

    #[test]
    fn a_host_path_mounts_its_allowed_directory_and_the_launcher_stays_inside() {
        let mut desktop = fixture();
        desktop.spec.boot.kernel = ArtifactSource {
            host_path: Some("/var/lib/verdant/kernels/vmlinuz".into()),
            ..ArtifactSource::default()
        };
        let allowed = [
            PathBuf::from("/srv/boot"),
            PathBuf::from("/var/lib/verdant"),
        ];
        let config = launcher_config(&desktop, &allowed).unwrap();
        assert_eq!(
            config.kernel.to_str(),
            Some("/verdant/boot/kernel/host/kernels/vmlinuz")
        );
        assert_eq!(
            config.kernel_root.as_deref().and_then(Path::to_str),
            Some("/verdant/boot/kernel/host")
        );
        let pod = build_pod(&desktop, &ctx()).unwrap();
        let spec = pod.spec.unwrap();
        let vol = spec
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "boot-kernel")
            .unwrap();
        let host = vol.host_path.unwrap();
        assert_eq!(
            (host.path.as_str(), host.type_.as_deref()),
            ("/var/lib/verdant", Some("Directory"))
        );
    }

    #[test]
    fn a_host_path_outside_the_allowed_directories_is_refused_naming_the_field() {
        let allowed = [PathBuf::from("/var/lib/verdant")];
        for (path, why) in [
            (
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
                "not under a host directory",
            ),
            (
                "/var/lib/verdant/../kubelet/pki/kubelet.key",
                "plain absolute path",
            ),
            ("/var/lib/verdant/./k", "plain absolute path"),
            ("/var/lib/verdant//k", "plain absolute path"),
            ("/var/lib/verdant", "not under a host directory"),
            ("/var/lib/verdantx/k", "not under a host directory"),
            ("/etc/shadow", "not under a host directory"),
        ] {
            let mut desktop = fixture();
            desktop.spec.boot.initrd = Some(ArtifactSource {
                host_path: Some(path.into()),
                ..ArtifactSource::default()
            });
            let err = launcher_config(&desktop, &allowed).unwrap_err();
            assert_eq!(err.reason, "HostPathNotAllowed", "{path}");
            assert!(
                err.message
                    .starts_with(&format!("spec.boot.initrd.hostPath {path}: ")),
                "{}",
                err.message
            );
            assert!(err.message.contains(why), "{path}: {}", err.message);
        }
        let mut desktop = fixture();
        desktop.spec.boot.kernel = ArtifactSource {
            host_path: Some("/var/lib/verdant/k".into()),
            ..ArtifactSource::default()
        };
        let none = launcher_config(&desktop, &[]).unwrap_err();
        assert!(
            none.message.contains("allows no host path"),
            "{}",
            none.message
        );
    }
}
