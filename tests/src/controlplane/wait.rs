//! Waiting for a control plane's processes: telling a port clash apart, and readiness.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{Api, Client};

use super::{Error, Process, READY_TIMEOUT};

pub(super) fn port_clash(error: &Error) -> bool {
    match error {
        Error::Exited { log_tail, .. } | Error::NotReady { log_tail, .. } => {
            log_tail.contains("address already in use")
        }
        _ => false,
    }
}

/// Waits for `/readyz` and the `default` namespace, failing early if a process dies.
pub(super) async fn wait_ready(
    client: &Client,
    etcd: &mut Process,
    apiserver: &mut Process,
) -> Result<(), Error> {
    let start = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    loop {
        etcd.check_running()?;
        apiserver.check_running()?;
        let last_error = match readyz(client).await {
            Ok(()) => match namespaces.get_opt("default").await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => "namespace default not created yet".to_owned(),
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        if start.elapsed() > READY_TIMEOUT {
            return Err(Error::NotReady {
                seconds: READY_TIMEOUT.as_secs(),
                last_error,
                log_tail: apiserver.log_tail(30),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn readyz(client: &Client) -> Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Waits until kube-controller-manager has created the `default` service account of
/// namespace `ns` (for the `default` namespace, that shows its controllers run).
pub(super) async fn wait_default_account(
    client: &Client,
    kcm: &mut Process,
    ns: &str,
) -> Result<(), Error> {
    let start = Instant::now();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    loop {
        kcm.check_running()?;
        if accounts.get_opt("default").await?.is_some() {
            return Ok(());
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(Error::NotReady {
                seconds: READY_TIMEOUT.as_secs(),
                last_error: format!(
                    "kube-controller-manager created no default service account in namespace {ns}"
                ),
                log_tail: kcm.log_tail(30),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
