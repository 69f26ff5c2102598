//! `verdant-operator`: the Kubernetes controllers that turn each `Desktop` into a launcher pod
//! and keep its status true, and each `DesktopPool` into desktops.
//!
//! [`run`] is the whole operator: the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`),
//! leader election over a Lease when asked, and the controllers while leading.
//!
//! Modules point one way: [`controller`] runs [`desktop`] and [`pool`], which share only
//! [`context`] (client, options, events, metrics) and the pure helpers ([`labels`], [`hash`],
//! [`conditions`], [`field_manager`], [`retry`], [`error`]); each controller keeps its own
//! state.

pub mod conditions;
pub mod context;
pub mod controller;
pub mod desktop;
pub mod error;
pub mod field_manager;
pub mod gauges;
pub mod hash;
pub mod labels;
pub mod metrics;
pub mod options;
pub mod pool;
pub mod retry;
pub mod server;

pub use error::{Category, Error};
pub use options::{LauncherPod, LeaderElection, Options, RECHECK_REFUSED};

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::context::Context;
use crate::field_manager::FIELD_MANAGER;
use crate::metrics::Metrics;

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
        .with_field_manager(format!("{FIELD_MANAGER}-{}", options.identity))
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
