//! Renders the CRD manifests from the types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{Desktop, DesktopPool};

/// One generated manifest: where it lives under `crds/` and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// File name relative to the `crds/` folder.
    pub file_name: &'static str,
    /// The CustomResourceDefinition it holds.
    pub crd: CustomResourceDefinition,
}

/// Every CRD Verdant installs, in install order.
pub fn crds() -> Vec<Manifest> {
    vec![
        Manifest {
            file_name: "desktop.yaml",
            crd: Desktop::crd(),
        },
        Manifest {
            file_name: "desktoppool.yaml",
            crd: DesktopPool::crd(),
        },
    ]
}

/// Where the manifests are written, relative to the `crds` crate: its own folder, and the Helm
/// chart's `crds/` (Helm installs CRDs only from inside the chart).
pub const FOLDERS: [&str; 2] = [".", "../charts/verdant/crds"];

/// Header written above every generated manifest.
const HEADER: &str = "# Generated from the Rust types in crds/src by `cargo run -p crds --bin crdgen`. Do not edit.\n";

/// Renders one CRD as the YAML document committed under `crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    Ok(format!("{HEADER}{}", serde_saphyr::to_string(crd)?))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{AssignmentPolicy, DesktopPoolSpec, DesktopSpec, DiskMode, NetworkMode};

    fn crate_file(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn committed_manifests_match_the_types() {
        for manifest in crds() {
            let generated = to_yaml(&manifest.crd).expect("renders");
            for folder in FOLDERS {
                let file = format!("{folder}/{}", manifest.file_name);
                assert!(
                    crate_file(&file) == generated,
                    "crds/{file} differs from what the types generate; run `cargo run -p crds --bin crdgen` and commit the result",
                );
            }
        }
    }

    #[test]
    fn committed_manifests_parse_back_into_the_same_crd() {
        for manifest in crds() {
            let parsed: CustomResourceDefinition =
                serde_saphyr::from_str(&crate_file(manifest.file_name)).expect("parses");
            assert_eq!(parsed, manifest.crd, "{}", manifest.file_name);
        }
    }

    fn column_names(
        version: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion,
    ) -> Vec<&str> {
        version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn crds_declare_names_subresources_and_columns() {
        let desktop = Desktop::crd();
        assert_eq!(desktop.spec.group, "vdi.verdant.dev");
        assert_eq!(
            desktop.spec.names.categories,
            Some(vec!["verdant".to_owned()])
        );
        let version = &desktop.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let subresources = version.subresources.as_ref().expect("subresources");
        assert!(subresources.status.is_some());
        assert!(subresources.scale.is_none());
        let columns = column_names(version);
        assert_eq!(columns, ["Phase", "User", "Ready", "Node", "Age"]);

        let pool = DesktopPool::crd();
        let version = &pool.spec.versions[0];
        let scale = version
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref())
            .expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.labelSelector")
        );
        let columns = column_names(version);
        assert_eq!(
            columns,
            ["Desired", "Ready", "Available", "Assigned", "Age"]
        );
    }

    #[derive(serde::Deserialize)]
    struct Doc<S> {
        spec: S,
    }

    #[test]
    fn examples_parse_into_the_types() {
        let desktop: Doc<DesktopSpec> =
            serde_saphyr::from_str(&crate_file("examples/desktop.yaml")).expect("desktop");
        assert_eq!(desktop.spec.user.as_deref(), Some("alice"));
        assert_eq!(desktop.spec.disks[0].mode, DiskMode::Overlay);
        assert_eq!(desktop.spec.display.width, 1920);

        let floating: Doc<DesktopPoolSpec> =
            serde_saphyr::from_str(&crate_file("examples/pool-floating.yaml")).expect("floating");
        assert_eq!(floating.spec.assignment, AssignmentPolicy::Floating);
        assert_eq!(floating.spec.spare, Some(2));

        let dedicated: Doc<DesktopPoolSpec> =
            serde_saphyr::from_str(&crate_file("examples/pool-dedicated.yaml")).expect("dedicated");
        assert_eq!(dedicated.spec.assignment, AssignmentPolicy::Dedicated);
        // Defaults fill what the example leaves out.
        assert_eq!(
            dedicated.spec.template.spec.disks[1].mode,
            DiskMode::ReadWrite
        );
        assert!(dedicated.spec.template.spec.running);
    }

    #[test]
    fn defaults_match_the_contract() {
        let spec: DesktopSpec = serde_json::from_value(serde_json::json!({
            "resources": {"cpus": 1, "memory": "1Gi"},
            "boot": {"kernel": {"hostPath": "/k"}}
        }))
        .expect("minimal spec");
        assert!(spec.running);
        assert_eq!((spec.display.width, spec.display.height), (1280, 800));
        assert_eq!(spec.network.mode, NetworkMode::Masquerade);
        assert!(spec.disks.is_empty() && spec.user.is_none());
    }
}
