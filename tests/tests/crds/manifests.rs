//! Valid Desktop and DesktopPool manifests, and the table of ways to spoil them.

use serde_json::{Value, json};

/// A Desktop named `name` that the apiserver accepts.
pub fn valid_desktop(name: &str) -> Value {
    json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "Desktop",
        "metadata": {"name": name},
        "spec": {
            "user": "alice",
            "resources": {"cpus": 2, "memory": "4Gi"},
            "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}, "cmdline": "console=ttyS0"},
            "disks": [{"name": "root", "source": {"image": {"reference": "registry.example/debian:13"}}, "mode": "Overlay"}],
            "display": {"width": 1280, "height": 800},
            "network": {"mode": "Masquerade"}
        }
    })
}

/// A DesktopPool named `name` that the apiserver accepts.
pub fn valid_pool(name: &str) -> Value {
    let mut template = valid_desktop("unused")["spec"].clone();
    template.as_object_mut().unwrap().remove("user");
    json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "DesktopPool",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "spare": 1,
            "maxReplicas": 3,
            "assignment": "Floating",
            "session": {"idleTimeout": "30m"},
            "template": {"spec": template}
        }
    })
}

/// One bad manifest: how to spoil a valid one, and what the apiserver's message must contain.
pub struct Case {
    pub name: &'static str,
    pub kind: &'static str,
    pub spoil: fn(&mut Value),
    pub field: &'static str,
    pub says: &'static str,
}

/// Every bad manifest the CRDs must refuse.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "cpus-zero",
            kind: "Desktop",
            spoil: |v| v["spec"]["resources"]["cpus"] = json!(0),
            field: "spec.resources.cpus",
            says: "greater than or equal to 1",
        },
        Case {
            name: "cpus-too-many",
            kind: "Desktop",
            spoil: |v| v["spec"]["resources"]["cpus"] = json!(65),
            field: "spec.resources.cpus",
            says: "less than or equal to 64",
        },
        Case {
            name: "memory-too-small",
            kind: "Desktop",
            spoil: |v| v["spec"]["resources"]["memory"] = json!("64Mi"),
            field: "spec.resources.memory",
            says: "at least 128Mi",
        },
        Case {
            name: "memory-too-big",
            kind: "Desktop",
            spoil: |v| v["spec"]["resources"]["memory"] = json!("2Ti"),
            field: "spec.resources.memory",
            says: "at most 1Ti",
        },
        Case {
            name: "memory-not-quantity",
            kind: "Desktop",
            spoil: |v| v["spec"]["resources"]["memory"] = json!("lots"),
            field: "spec.resources.memory",
            says: "quantity such as",
        },
        Case {
            name: "resources-missing",
            kind: "Desktop",
            spoil: |v| {
                v["spec"].as_object_mut().unwrap().remove("resources");
            },
            field: "spec.resources",
            says: "Required value",
        },
        Case {
            name: "kernel-missing",
            kind: "Desktop",
            spoil: |v| {
                v["spec"]["boot"].as_object_mut().unwrap().remove("kernel");
            },
            field: "spec.boot.kernel",
            says: "Required value",
        },
        Case {
            name: "kernel-two-sources",
            kind: "Desktop",
            spoil: |v| {
                v["spec"]["boot"]["kernel"]["image"] = json!({"reference": "r", "path": "/k"})
            },
            field: "spec.boot.kernel",
            says: "exactly one of hostPath, image or persistentVolumeClaim",
        },
        Case {
            name: "kernel-no-source",
            kind: "Desktop",
            spoil: |v| v["spec"]["boot"]["kernel"] = json!({}),
            field: "spec.boot.kernel",
            says: "exactly one of hostPath, image or persistentVolumeClaim",
        },
        Case {
            name: "kernel-relative-path",
            kind: "Desktop",
            spoil: |v| v["spec"]["boot"]["kernel"]["hostPath"] = json!("vmlinuz"),
            field: "spec.boot.kernel.hostPath",
            says: "absolute path",
        },
        Case {
            name: "kernel-path-with-dotdot",
            kind: "Desktop",
            spoil: |v| {
                v["spec"]["boot"]["kernel"]["hostPath"] =
                    json!("/var/lib/verdant/../kubelet/pki/kubelet.key")
            },
            field: "spec.boot.kernel.hostPath",
            says: "plain absolute path",
        },
        Case {
            name: "initrd-path-with-double-slash",
            kind: "Desktop",
            spoil: |v| v["spec"]["boot"]["initrd"] = json!({"hostPath": "/var/lib//verdant/i"}),
            field: "spec.boot.initrd.hostPath",
            says: "plain absolute path",
        },
        Case {
            name: "cmdline-too-long",
            kind: "Desktop",
            spoil: |v| v["spec"]["boot"]["cmdline"] = json!("x".repeat(2048)),
            field: "spec.boot.cmdline",
            says: "2047",
        },
        Case {
            name: "display-too-narrow",
            kind: "Desktop",
            spoil: |v| v["spec"]["display"]["width"] = json!(320),
            field: "spec.display.width",
            says: "greater than or equal to 640",
        },
        Case {
            name: "display-too-tall",
            kind: "Desktop",
            spoil: |v| v["spec"]["display"]["height"] = json!(5000),
            field: "spec.display.height",
            says: "less than or equal to 4320",
        },
        Case {
            name: "disk-names-repeat",
            kind: "Desktop",
            spoil: |v| {
                let d = v["spec"]["disks"][0].clone();
                v["spec"]["disks"].as_array_mut().unwrap().push(d);
            },
            field: "spec.disks[1]",
            says: "Duplicate value",
        },
        Case {
            name: "disk-name-not-dns-label",
            kind: "Desktop",
            spoil: |v| v["spec"]["disks"][0]["name"] = json!("Root_Disk"),
            field: "spec.disks[0].name",
            says: "DNS label",
        },
        Case {
            name: "disk-mode-unknown",
            kind: "Desktop",
            spoil: |v| v["spec"]["disks"][0]["mode"] = json!("Snapshot"),
            field: "spec.disks[0].mode",
            says: "Unsupported value",
        },
        Case {
            name: "image-disk-read-write",
            kind: "Desktop",
            spoil: |v| v["spec"]["disks"][0]["mode"] = json!("ReadWrite"),
            field: "spec.disks[0].mode",
            says: "use mode Overlay",
        },
        Case {
            name: "empty-disk-overlay",
            kind: "Desktop",
            spoil: |v| v["spec"]["disks"][0]["source"] = json!({"empty": {"size": "10Gi"}}),
            field: "spec.disks[0].mode",
            says: "use mode ReadWrite",
        },
        Case {
            name: "empty-disk-size-zero",
            kind: "Desktop",
            spoil: |v| {
                v["spec"]["disks"][0] =
                    json!({"name": "scratch", "source": {"empty": {"size": "0"}}})
            },
            field: "spec.disks[0].source.empty.size",
            says: "at least 1Mi",
        },
        Case {
            name: "too-many-disks",
            kind: "Desktop",
            spoil: |v| {
                v["spec"]["disks"] = (0..17)
                    .map(|i| json!({"name": format!("d{i}"), "source": {"empty": {"size": "1Gi"}}}))
                    .collect()
            },
            field: "spec.disks",
            says: "must have at most 16 items",
        },
        Case {
            name: "network-mode-unknown",
            kind: "Desktop",
            spoil: |v| v["spec"]["network"]["mode"] = json!("Bridge"),
            field: "spec.network.mode",
            says: "Unsupported value",
        },
        Case {
            name: "user-with-space",
            kind: "Desktop",
            spoil: |v| v["spec"]["user"] = json!("alice smith"),
            field: "spec.user",
            says: "must be a user name",
        },
        Case {
            name: "desktop-name-too-long",
            kind: "Desktop",
            spoil: |v| v["metadata"]["name"] = json!("d".repeat(53)),
            // A rule on the object as a whole: the message itself names the field.
            field: "metadata.name must be at most 52 characters",
            says: "adds an 11-character suffix",
        },
        Case {
            name: "pool-name-too-long",
            kind: "DesktopPool",
            spoil: |v| v["metadata"]["name"] = json!("p".repeat(47)),
            field: "metadata.name must be at most 46 characters",
            says: "add a 6-character suffix",
        },
        Case {
            name: "pool-replicas-over-max",
            kind: "DesktopPool",
            spoil: |v| v["spec"]["replicas"] = json!(5),
            field: "spec.replicas",
            says: "must not exceed spec.maxReplicas",
        },
        Case {
            name: "pool-spare-over-max",
            kind: "DesktopPool",
            spoil: |v| v["spec"]["spare"] = json!(4),
            field: "spec.spare",
            says: "must not exceed spec.maxReplicas",
        },
        Case {
            name: "pool-replicas-negative",
            kind: "DesktopPool",
            spoil: |v| v["spec"]["replicas"] = json!(-1),
            field: "spec.replicas",
            says: "greater than or equal to 0",
        },
        Case {
            name: "pool-assignment-unknown",
            kind: "DesktopPool",
            spoil: |v| v["spec"]["assignment"] = json!("Shared"),
            field: "spec.assignment",
            says: "Unsupported value",
        },
        Case {
            name: "pool-idle-timeout-not-duration",
            kind: "DesktopPool",
            spoil: |v| v["spec"]["session"]["idleTimeout"] = json!("soon"),
            field: "spec.session.idleTimeout",
            says: "positive duration",
        },
        Case {
            name: "pool-template-names-user",
            kind: "DesktopPool",
            spoil: |v| v["spec"]["template"]["spec"]["user"] = json!("alice"),
            field: "spec.template.spec.user",
            says: "must be unset",
        },
        Case {
            name: "pool-template-missing",
            kind: "DesktopPool",
            spoil: |v| {
                v["spec"].as_object_mut().unwrap().remove("template");
            },
            field: "spec.template",
            says: "Required value",
        },
        Case {
            name: "pool-template-cpus-zero",
            kind: "DesktopPool",
            spoil: |v| v["spec"]["template"]["spec"]["resources"]["cpus"] = json!(0),
            field: "spec.template.spec.resources.cpus",
            says: "greater than or equal to 1",
        },
    ]
}
