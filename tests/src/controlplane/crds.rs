//! Installs Verdant's CRDs, exactly as committed under `crds/`, into a control plane.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};

use super::Error;

/// The committed manifests, embedded so that the binaries work from any folder.
const COMMITTED: [(&str, &str); 2] = [
    (
        "crds/desktop.yaml",
        include_str!("../../../crds/desktop.yaml"),
    ),
    (
        "crds/desktoppool.yaml",
        include_str!("../../../crds/desktoppool.yaml"),
    ),
];

/// The field manager of the CRD installs.
const FIELD_MANAGER: &str = "verdant-dev";

/// The CRDs as committed under `crds/` (what `kubectl apply -f crds/` installs).
pub fn committed_crds() -> Result<Vec<CustomResourceDefinition>, Error> {
    COMMITTED
        .iter()
        .map(|(file, yaml)| {
            serde_saphyr::from_str(yaml).map_err(|e| Error::Manifest {
                file: (*file).to_owned(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Applies the committed CRDs (server-side apply) and waits until each is Established.
pub async fn install_crds(client: &Client) -> Result<Vec<CustomResourceDefinition>, Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut installed = Vec::new();
    for crd in committed_crds()? {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd)).await?;
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(Duration::from_secs(30), established).await {
            Ok(Ok(Some(crd))) => installed.push(crd),
            Ok(Ok(None)) | Err(_) => return Err(Error::NotEstablished(name)),
            Ok(Err(e)) => return Err(Error::Watch(e.to_string())),
        }
    }
    Ok(installed)
}
