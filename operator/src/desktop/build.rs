//! Build: a Desktop in, the objects it needs out. Pure: no API calls, unit-tested from fixtures.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crds::{Desktop, DesktopSpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, HTTPGetAction, HostPathVolumeSource, Pod, PodSpec,
    Probe, ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use kube::ResourceExt;
use launcher_api::devices::{KVM_DEVICE, KVM_RESOURCE};
use launcher_api::endpoints::{self, HTTP_PORT, HTTP_PORT_NAME, VNC_PORT, VNC_PORT_NAME};
use launcher_api::limits::{CPU_OVERHEAD_MILLIS, MEMORY_OVERHEAD};
use launcher_api::{DisplayConfig, LauncherConfig, VncConfig, parse_size};

use super::boot::boot_file;
use crate::hash::vm_hash;
use crate::labels;
use crate::options::LauncherPod;

pub use crds::labels::{DISPLAY_PASSWORD_KEY, DISPLAY_VIEW_ONLY_PASSWORD_KEY};
/// Where the display password Secret is mounted in the launcher.
pub const DISPLAY_PASSWORD_DIR: &str = "/verdant/secrets/display";
/// Length of generated display passwords. VNC authentication uses 8 bytes of it; the broker
/// and later security types use all of it.
pub const DISPLAY_PASSWORD_LEN: usize = 24;

/// What `build` needs besides the Desktop.
#[derive(Debug, Clone)]
pub struct BuildContext<'a> {
    /// The launcher container image.
    pub launcher_image: &'a str,
    /// Where launcher pods run and how their image is pulled.
    pub launcher_pod: &'a LauncherPod,
}

pub use super::invalid::Invalid;

pub use crds::labels::display_secret_name as secret_name;

/// The launcher pod's name for a spec: `<desktop>-<vm hash>` (at most 63 characters, since
/// Desktop names are capped at 52).
pub fn pod_name(desktop: &str, spec: &DesktopSpec) -> String {
    format!("{desktop}-{}", vm_hash(spec))
}

/// Guest memory in bytes.
pub fn guest_memory(spec: &DesktopSpec) -> Result<u64, Invalid> {
    parse_size(&spec.resources.memory).map_err(|message| Invalid {
        reason: "InvalidMemory",
        message: format!(
            "spec.resources.memory: {message}; write a whole number of Mi or Gi, such as 4Gi"
        ),
    })
}

/// The launcher's configuration for a Desktop, with the boot files at their mount paths;
/// host paths must lie under `host_paths`.
pub fn launcher_config(
    desktop: &Desktop,
    host_paths: &[PathBuf],
) -> Result<LauncherConfig, Invalid> {
    let spec = &desktop.spec;
    let kernel = boot_file("kernel", &spec.boot.kernel, "spec.boot.kernel", host_paths)?;
    let initrd = match &spec.boot.initrd {
        Some(source) => Some(boot_file("initrd", source, "spec.boot.initrd", host_paths)?),
        None => None,
    };
    guest_memory(spec)?;
    Ok(LauncherConfig {
        kernel_root: kernel.root.as_ref().map(Into::into),
        initrd_root: initrd
            .as_ref()
            .and_then(|f| f.root.as_ref())
            .map(Into::into),
        initrd: initrd.map(|f| f.path.into()),
        cmdline: spec.boot.cmdline.clone().unwrap_or_default(),
        cpus: spec.resources.cpus,
        memory: spec.resources.memory.clone(),
        http: Some(endpoints::any_address(HTTP_PORT)),
        display: Some(DisplayConfig {
            width: spec.display.width,
            height: spec.display.height,
        }),
        vnc: Some(VncConfig {
            password_file: Some(format!("{DISPLAY_PASSWORD_DIR}/{DISPLAY_PASSWORD_KEY}").into()),
            view_only_password_file: Some(
                format!("{DISPLAY_PASSWORD_DIR}/{DISPLAY_VIEW_ONLY_PASSWORD_KEY}").into(),
            ),
            ..VncConfig::new(endpoints::any_address(VNC_PORT))
        }),
        ..LauncherConfig::new(kernel.path)
    })
}

/// The Desktop field a launcher config field comes from, for messages.
fn spec_field(config_field: &str) -> String {
    match config_field {
        "kernel" => "spec.boot.kernel".into(),
        "initrd" => "spec.boot.initrd".into(),
        "cmdline" => "spec.boot.cmdline".into(),
        "cpus" => "spec.resources.cpus".into(),
        "memory" => "spec.resources.memory".into(),
        "display" => "spec.display".into(),
        other => format!("the launcher config's {other}"),
    }
}

/// The launcher pod of a Desktop.
pub fn build_pod(desktop: &Desktop, ctx: &BuildContext<'_>) -> Result<Pod, Invalid> {
    let spec = &desktop.spec;
    let name = desktop.name_any();
    let config = launcher_config(desktop, &ctx.launcher_pod.host_paths)?;
    // What the launcher would refuse is refused here, naming the Desktop's field, instead of
    // a launcher pod that exits at once.
    config.validate().map_err(|e| Invalid {
        reason: "InvalidSpec",
        message: format!("{}: {}", spec_field(&e.field), e.message),
    })?;
    let args = launcher_api::argv::run_args(&config).map_err(|e| Invalid {
        reason: "InternalError",
        message: format!("cannot render the launcher config: {e}"),
    })?;
    let memory = guest_memory(spec)? + MEMORY_OVERHEAD;
    let cpu_millis = ctx
        .launcher_pod
        .cpu_request_millis(spec.resources.cpus, CPU_OVERHEAD_MILLIS);

    let privileged = ctx.launcher_pod.privileged;
    let mut volumes = vec![Volume {
        name: "display-password".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name(&name)),
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "display-password".into(),
        mount_path: DISPLAY_PASSWORD_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    if privileged {
        // A privileged container may open any device; the node's /dev/kvm is mounted.
        volumes.push(Volume {
            name: "kvm".into(),
            host_path: Some(HostPathVolumeSource {
                path: KVM_DEVICE.into(),
                type_: Some("CharDevice".into()),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "kvm".into(),
            mount_path: KVM_DEVICE.into(),
            ..VolumeMount::default()
        });
    }
    let host_paths = &ctx.launcher_pod.host_paths;
    let kernel = boot_file("kernel", &spec.boot.kernel, "spec.boot.kernel", host_paths)?;
    volumes.push(kernel.volume);
    mounts.push(kernel.mount);
    if let Some(source) = &spec.boot.initrd {
        let initrd = boot_file("initrd", source, "spec.boot.initrd", host_paths)?;
        volumes.push(initrd.volume);
        mounts.push(initrd.mount);
    }

    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(HTTP_PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let mut quantities = BTreeMap::from([
        ("cpu".to_owned(), Quantity(format!("{cpu_millis}m"))),
        ("memory".to_owned(), Quantity(memory.to_string())),
    ]);
    let mut limits = BTreeMap::from([("memory".to_owned(), quantities["memory"].clone())]);
    if !privileged {
        // The device plugin's answer is the device alone; an extended resource is asked for in
        // the limits (the request follows).
        let kvm = Quantity("1".into());
        quantities.insert(KVM_RESOURCE.to_owned(), kvm.clone());
        limits.insert(KVM_RESOURCE.to_owned(), kvm);
    }
    let container = Container {
        name: "launcher".into(),
        image: Some(ctx.launcher_image.into()),
        image_pull_policy: ctx.launcher_pod.image_pull_policy.clone(),
        args: Some(args),
        ports: Some(vec![
            ContainerPort {
                name: Some(HTTP_PORT_NAME.into()),
                container_port: HTTP_PORT.into(),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(VNC_PORT_NAME.into()),
                container_port: VNC_PORT.into(),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        security_context: Some(security_context(privileged)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities),
            limits: Some(limits),
            ..ResourceRequirements::default()
        }),
        readiness_probe: Some(probe(endpoints::READYZ, 2, 3)),
        // A launcher that fails says why in its log; the kubelet keeps the end of it, which
        // the Desktop's status then shows.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        liveness_probe: Some(probe(endpoints::HEALTHZ, 10, 3)),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(&name, spec)),
            namespace: desktop.namespace(),
            labels: Some(labels::pod_labels(desktop, &vm_hash(spec))),
            annotations: {
                let mut annotations = BTreeMap::new();
                if let Some(user) = &desktop.spec.user {
                    annotations.insert(labels::USER_ANNOTATION.to_owned(), user.clone());
                }
                let resets = labels::reset_count(desktop.annotations());
                if resets > 0 {
                    annotations.insert(labels::RESET_ANNOTATION.to_owned(), resets.to_string());
                }
                (!annotations.is_empty()).then_some(annotations)
            },
            owner_references: desktop.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            // The operator replaces a finished launcher itself, with backoff and a reason.
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: i64::try_from(
                config.termination_grace_period_seconds(),
            )
            .ok(),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            node_selector: (!ctx.launcher_pod.node_selector.is_empty())
                .then(|| ctx.launcher_pod.node_selector.clone()),
            tolerations: (!ctx.launcher_pod.tolerations.is_empty())
                .then(|| ctx.launcher_pod.tolerations.clone()),
            runtime_class_name: ctx.launcher_pod.runtime_class_name.clone(),
            ..PodSpec::default()
        }),
        ..Pod::default()
    })
}

/// The launcher container's security context: privileged, or (the hardened mode) no
/// privilege, no capability, no way to gain either, and the runtime's default seccomp filter
/// under the launcher's own. Both modes run the launcher's own confinement after setup.
fn security_context(privileged: bool) -> SecurityContext {
    if privileged {
        return SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        };
    }
    SecurityContext {
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// The display-password Secret of a Desktop, owned by it: the full password and the
/// view-only one (for shadowing).
pub fn build_secret(desktop: &Desktop, password: &str, view_only: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&desktop.name_any())),
            namespace: desktop.namespace(),
            labels: Some(labels::desktop_labels(desktop)),
            owner_references: desktop.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (
                DISPLAY_PASSWORD_KEY.to_owned(),
                ByteString(password.as_bytes().to_vec()),
            ),
            (
                DISPLAY_VIEW_ONLY_PASSWORD_KEY.to_owned(),
                ByteString(view_only.as_bytes().to_vec()),
            ),
        ])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// A view-only password for a Secret whose full password is `full`: random, and unlike it
/// in the first 8 bytes, which are all VNC authentication compares.
pub fn generate_view_only_password(full: &[u8]) -> Result<String, getrandom::Error> {
    loop {
        let password = generate_password()?;
        if password.as_bytes().iter().take(8).ne(full.iter().take(8)) {
            return Ok(password);
        }
    }
}

/// A random password from the OS's generator: letters and digits.
pub fn generate_password() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; DISPLAY_PASSWORD_LEN];
    getrandom::fill(&mut bytes)?;
    // 256 is not a multiple of the alphabet size; the bias is below 1% per character and
    // leaves far more entropy than VNC authentication can use.
    Ok(bytes
        .iter()
        .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"
apiVersion: vdi.verdant.dev/v1alpha1
kind: Desktop
metadata:
  name: alice-dev
  namespace: team-a
  uid: 8a1c2f3e-0000-4000-8000-000000000001
  labels:
    vdi.verdant.dev/pool: devs
spec:
  user: alice@example.com
  resources: {cpus: 2, memory: 4Gi}
  boot:
    kernel: {image: {reference: "registry.example/k:6.12", path: /boot/vmlinuz}}
    initrd: {persistentVolumeClaim: {claimName: boot, path: initrd.img}}
    cmdline: "console=ttyS0"
  display: {width: 1280, height: 800}
"#;

    /// The HTTP path a probe checks.
    fn probe_path(probe: &Option<k8s_openapi::api::core::v1::Probe>) -> Option<&str> {
        probe.as_ref()?.http_get.as_ref()?.path.as_deref()
    }

    fn fixture() -> Desktop {
        serde_saphyr::from_str(FIXTURE).expect("fixture parses")
    }

    fn ctx() -> BuildContext<'static> {
        static POD: std::sync::LazyLock<LauncherPod> = std::sync::LazyLock::new(|| LauncherPod {
            image_pull_policy: Some("IfNotPresent".into()),
            node_selector: BTreeMap::from([("verdant.dev/kvm".into(), "true".into())]),
            tolerations: vec![k8s_openapi::api::core::v1::Toleration {
                key: Some("kvm".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }],
            runtime_class_name: Some("kvm".into()),
            cpu_allocation_ratio: None,
            host_paths: vec!["/var/lib/verdant".into()],
            ..LauncherPod::default()
        });
        BuildContext {
            launcher_image: "registry.example/verdant/launcher:0.1.0",
            launcher_pod: &POD,
        }
    }

    #[test]
    fn pod_carries_owner_labels_privilege_kvm_probes_and_resources() {
        let desktop = fixture();
        let pod = build_pod(&desktop, &ctx()).unwrap();
        let name = pod.metadata.name.clone().unwrap();
        assert!(name.starts_with("alice-dev-") && name.len() == "alice-dev-".len() + 10);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("team-a"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Desktop", "alice-dev", Some(true))
        );
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["vdi.verdant.dev/desktop"], "alice-dev");
        assert_eq!(labels["vdi.verdant.dev/pool"], "devs");
        assert_eq!(labels["vdi.verdant.dev/user"], "alice-example.com");

        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let c = &spec.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("registry.example/verdant/launcher:0.1.0")
        );
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
        // The chart's launcher settings: image pull, KVM nodes, runtime class.
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            spec.node_selector.as_ref().unwrap()["verdant.dev/kvm"],
            "true"
        );
        assert_eq!(
            spec.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("kvm")
        );
        assert_eq!(spec.runtime_class_name.as_deref(), Some("kvm"));
        let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["cpu"].0, "2100m");
        assert_eq!(
            requests["memory"].0,
            ((4u64 << 30) + (64 << 20)).to_string()
        );
        assert_eq!(probe_path(&c.readiness_probe), Some("/readyz"));
        assert_eq!(probe_path(&c.liveness_probe), Some("/healthz"));

        let kvm = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "kvm")
            .unwrap();
        let host = kvm.host_path.as_ref().unwrap();
        assert_eq!(
            (host.path.as_str(), host.type_.as_deref()),
            ("/dev/kvm", Some("CharDevice"))
        );
        let secret = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "display-password")
            .unwrap();
        assert_eq!(
            secret.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("alice-dev-display")
        );
    }

    #[test]
    fn hardened_pods_are_unprivileged_and_ask_the_device_plugin_for_kvm_alone() {
        let hardened = LauncherPod {
            privileged: false,
            ..ctx().launcher_pod.clone()
        };
        let pod = build_pod(
            &fixture(),
            &BuildContext {
                launcher_pod: &hardened,
                ..ctx()
            },
        )
        .unwrap();
        let spec = pod.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        let security = c.security_context.as_ref().unwrap();
        assert_eq!(security.privileged, Some(false));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(
            security.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let resources = c.resources.as_ref().unwrap();
        for quantities in [&resources.requests, &resources.limits] {
            assert_eq!(quantities.as_ref().unwrap()[KVM_RESOURCE].0, "1");
        }
        // No host device is mounted: the plugin's answer is the only way to /dev/kvm.
        let volumes = spec.volumes.as_ref().unwrap();
        assert!(
            volumes
                .iter()
                .all(|v| v.host_path.as_ref().is_none_or(|h| h.path != KVM_DEVICE)),
            "{volumes:?}"
        );
        assert!(volumes.iter().all(|v| v.name != "kvm"));
    }

    #[test]
    fn launcher_arguments_carry_the_spec_as_one_json_config() {
        let pod = build_pod(&fixture(), &ctx()).unwrap();
        let args = pod.spec.unwrap().containers[0].args.clone().unwrap();
        assert_eq!(&args[..2], ["run", "--config-json"]);
        let config = LauncherConfig::from_json(&args[2]).expect("the launcher accepts it");
        assert_eq!(
            config.kernel.to_str(),
            Some("/verdant/boot/kernel/boot/vmlinuz")
        );
        assert_eq!(
            config.initrd.unwrap().to_str(),
            Some("/verdant/boot/initrd/initrd.img")
        );
        assert_eq!(
            (config.cpus, config.memory.as_str(), config.cmdline.as_str()),
            (2, "4Gi", "console=ttyS0")
        );
        assert_eq!(config.http.as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(
            config.display,
            Some(DisplayConfig {
                width: 1280,
                height: 800
            })
        );
    }

    #[test]
    fn only_vm_fields_change_the_pod_name() {
        let desktop = fixture();
        let base = pod_name("d", &desktop.spec);
        let mut other = desktop.spec.clone();
        other.user = None;
        other.running = false;
        assert_eq!(
            pod_name("d", &other),
            base,
            "user and running do not need a new VM"
        );
        other.resources.memory = "8Gi".into();
        assert_ne!(pod_name("d", &other), base);
    }

    #[test]
    fn unusable_memory_is_an_invalid_spec_naming_the_field() {
        let mut desktop = fixture();
        desktop.spec.resources.memory = "1.5Gi".into();
        let err = build_pod(&desktop, &ctx()).unwrap_err();
        assert_eq!(err.reason, "InvalidMemory");
        assert!(
            err.message.starts_with("spec.resources.memory:"),
            "{}",
            err.message
        );
    }

    #[test]
    fn secret_is_owned_and_passwords_are_random() {
        let desktop = fixture();
        let secret = build_secret(&desktop, "pw", "view");
        assert_eq!(secret.metadata.name.as_deref(), Some("alice-dev-display"));
        let data = secret.data.unwrap();
        assert_eq!(data["password"].0, b"pw");
        assert_eq!(data["viewOnlyPassword"].0, b"view");
        let view = generate_view_only_password(b"abcdefgh").unwrap();
        assert_eq!(view.len(), DISPLAY_PASSWORD_LEN);
        assert_ne!(&view.as_bytes()[..8], b"abcdefgh");
        let (a, b) = (generate_password().unwrap(), generate_password().unwrap());
        assert_eq!(a.len(), DISPLAY_PASSWORD_LEN);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
