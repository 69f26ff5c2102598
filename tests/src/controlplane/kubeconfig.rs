//! The kubeconfig files of a control plane: written for its users, read back into clients.

use std::path::Path;

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::Error;

pub(super) fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    cert: &Path,
    key: &Path,
) -> Result<(), Error> {
    let b64 = |p: &Path| -> Result<String, Error> {
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    let credentials = format!(
        "client-certificate-data: {}\n    client-key-data: {}",
        b64(cert)?,
        b64(key)?
    );
    write_config(path, server, ca, user, &credentials)
}

/// Writes a kubeconfig for `server` (trusting the CA at `ca`) whose one user, `user`,
/// authenticates with `credentials`: the fields of its `user:` entry.
fn write_config(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    credentials: &str,
) -> Result<(), Error> {
    let ca = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: verdant
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    {credentials}
contexts:
- name: verdant
  context:
    cluster: verdant
    user: {user}
current-context: verdant
",
        ca = base64::engine::general_purpose::STANDARD.encode(ca),
    );
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// A client for the current context of a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, Error> {
    let kube_err = |message: String| Error::Kubeconfig {
        path: path.to_owned(),
        message,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| kube_err(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| kube_err(e.to_string()))?;
    Client::try_from(config).map_err(Error::Kube)
}

/// A client that authenticates as ServiceAccount `ns/name`, with a token from the
/// apiserver's TokenRequest API (as a pod's projected token is made), valid for an hour:
/// what a component installed by the chart runs as.
pub async fn service_account_client(
    cp: &super::ControlPlane,
    ns: &str,
    name: &str,
) -> Result<Client, Error> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(cp.client(), ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let granted = accounts
        .create_token_request(name, &kube::api::PostParams::default(), &request)
        .await
        .map_err(Error::Kube)?;
    let token = granted.status.map(|s| s.token).unwrap_or_default();
    let path = cp.dir().join(format!("kubeconfig-sa-{ns}-{name}"));
    write_config(
        &path,
        cp.server(),
        &cp.pki().ca_cert,
        &format!("{ns}-{name}"),
        &format!("token: {token}"),
    )?;
    client_from_kubeconfig(&path).await
}
