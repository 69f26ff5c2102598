//! Open relays are checked again every [`RECHECK`]: a relay whose user RBAC no longer allows
//! on its desktop is closed, on every replica (each checks its own). So a revoked RoleBinding
//! ends the sessions it allowed within [`RECHECK`] plus the access cache's 5 s, not when the
//! user happens to reconnect. The user is who their session says now: groups the refresher
//! ([`crate::refresher`]) read again from the provider count. An apiserver that cannot answer
//! ends nothing: the next round asks again.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Broker;
use crate::identity::access::{DESKTOPS, SHADOW, USE};
use crate::relays::OpenRelay;

/// How often open relays are checked again.
pub const RECHECK: Duration = Duration::from_secs(10);

/// Whether `relay` is still allowed: `Some(false)` ends it, `None` says nothing could be
/// decided now.
async fn still_allowed(broker: &Broker, relay: &OpenRelay) -> Option<bool> {
    let (namespace, name) = &relay.desktop;
    // The session's identity now (its groups refreshed); a bearer caller's is the one its
    // token had. A session that ended is the session watch's to close.
    let now = if relay.opener.is_bearer() {
        None
    } else {
        broker.sessions.identity(&relay.opener.sid).await.ok()?
    };
    let identity = now.as_ref().unwrap_or(&relay.opener.identity);
    // (A desktop gone or changed hands is the desktop watch's to end.)
    let desktop = broker.desktop(namespace, name)?;
    if desktop.spec.user.as_deref() == Some(identity.user.as_str()) {
        return broker.owner_entitled(identity, &desktop).await.ok();
    }
    let access = &broker.access;
    let full = access
        .allowed(identity, USE, DESKTOPS, namespace, name)
        .await
        .ok()?;
    if full || !relay.opener.view_only {
        return Some(full);
    }
    access
        .allowed(identity, SHADOW, DESKTOPS, namespace, name)
        .await
        .ok()
}

/// Checks every open relay every [`RECHECK`] until the broker stops.
pub async fn run(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(RECHECK);
    loop {
        tick.tick().await;
        for relay in broker.relays.snapshot() {
            if still_allowed(&broker, &relay).await == Some(false) {
                let user = &relay.opener.identity.user;
                let (namespace, name) = &relay.desktop;
                tracing::info!(%user, %namespace, desktop = %name, "access revoked: viewer closed");
                broker
                    .relays
                    .end(relay.id, "your access to this desktop was revoked");
            }
        }
    }
}
