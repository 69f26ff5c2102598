//! `verdant-operator`: the Kubernetes controllers that turn each `Desktop` into a launcher pod
//! and keep its status true.
//!
//! [`run`] is the whole operator: the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`),
//! leader election over a Lease when asked, and the Desktop controller while leading.

pub mod controller;
pub mod desktop;
pub mod metrics;
pub mod pool;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::controller::Context;
use crate::metrics::Metrics;

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The launcher container image.
    pub launcher_image: String,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; none if unset.
    pub http: Option<SocketAddr>,
    /// Leader election, for running several replicas; none runs unconditionally.
    pub leader_election: Option<LeaderElection>,
    /// This replica's name (events, the Lease holder).
    pub identity: String,
}

/// Leader election over a `coordination.k8s.io/v1` Lease.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub lease: String,
    /// How long a holder's claim lasts without renewal; a new leader takes over within about
    /// this long after the old one dies.
    pub duration: Duration,
}

/// What can go wrong in a reconcile or at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The OS random generator failed.
    #[error("Random password generation failed: {0}")]
    Random(String),
    /// Leader election failed.
    #[error("Leader election: {0}")]
    Lease(String),
    /// Releasing a pool desktop failed.
    #[error("Pool: {0}")]
    Pool(String),
    /// The HTTP endpoints could not start.
    #[error("Cannot serve HTTP on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// A short label for the errors metric.
    pub fn kind(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(e)) => format!("api_{}", e.code),
            Error::Kube(_) => "request".into(),
            Error::Random(_) => "random".into(),
            Error::Lease(_) => "lease".into(),
            Error::Pool(_) => "pool".into(),
            Error::Http { .. } => "http".into(),
        }
    }
}

/// Runs the operator until `shutdown` resolves.
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = options.http {
        let bound = server::serve(addr, Arc::clone(&metrics)).await?;
        tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
    }
    let ctx = Arc::new(Context::new(client.clone(), options.clone(), metrics));
    let Some(election) = options.leader_election.clone() else {
        controller::run_controllers(ctx, shutdown).await;
        return Ok(());
    };

    let manager = LeaseManagerBuilder::new(client, election.lease.clone())
        .with_namespace(election.namespace.clone())
        .with_identity(options.identity.clone())
        .with_duration(election.duration.as_secs().max(2))
        .with_grace((election.duration.as_secs() / 3).max(1))
        // One field manager per replica: taking a free lease is a server-side apply, and only
        // a different manager's claim makes a second replica's apply conflict. With one shared
        // manager both replicas "took" the lease at start-up and both led for a while.
        .with_field_manager(format!(
            "{}-{}",
            desktop::apply::FIELD_MANAGER,
            options.identity
        ))
        .build()
        .await
        .map_err(|e| Error::Lease(e.to_string()))?;
    // The lease is renewed by polling `changed()` right here, in this future, never in a
    // detached task: whatever ends this future (shutdown, a crash, an abort) ends the renewals
    // too, so another replica takes over once the lease runs out.
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        loop {
            tokio::select! {
                state = manager.changed() => match state {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "lease");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                () = &mut shutdown => return Ok(()),
            }
        }
        tracing::info!(identity = %options.identity, "leading: starting the controllers");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let controllers = controller::run_controllers(Arc::clone(&ctx), async {
            let _ = stop_rx.await;
        });
        let mut controllers = std::pin::pin!(controllers);
        let (ended, shutting_down) = loop {
            tokio::select! {
                () = &mut controllers => break (true, false),
                state = manager.changed() => match state {
                    Ok(true) => {}
                    Ok(false) => break (false, false),
                    Err(e) => tracing::warn!(error = %e, "lease renewal"),
                },
                () = &mut shutdown => break (false, true),
            }
        };
        let _ = stop_tx.send(());
        if !ended {
            controllers.await;
        }
        if shutting_down {
            let _ = manager.release().await;
            return Ok(());
        }
        tracing::warn!("lost the lease: controllers stopped, standing by");
    }
}
