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

/// Header written above every generated manifest.
const HEADER: &str = "# Generated from the Rust types in crds/src by `cargo run -p crds --bin crdgen`. Do not edit.\n";

/// Renders one CRD as the YAML document committed under `crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    Ok(format!("{HEADER}{}", serde_saphyr::to_string(crd)?))
}
