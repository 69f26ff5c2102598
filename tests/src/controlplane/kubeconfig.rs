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
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: verdant
  context:
    cluster: verdant
    user: {user}
current-context: verdant
",
        ca = b64(ca)?,
        cert = b64(cert)?,
        key = b64(key)?,
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
