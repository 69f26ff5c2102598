//! A session's groups follow the provider: every `--groups-refresh`, the login's refresh token
//! brings a new ID token, the apiserver reviews it, and the session's Lease takes the identity
//! it gives. Requests read the Lease, and the watchdog checks open viewers against it, so a user
//! who left a group at the provider loses what the group allowed within `--groups-refresh`
//! plus the watchdog's round. A provider that refuses the refresh (the user gone or disabled,
//! the grant revoked) or an ID token the apiserver no longer accepts ends the session
//! everywhere. A provider that cannot be reached ends nothing: the refresh is tried again
//! `--groups-refresh` later.
//!
//! One replica refreshes a session at a time: it first marks the session's groups as read
//! now, written only if nobody wrote the Lease since it was read, and only the replica whose
//! write took does the refresh (a provider that rotates refresh tokens refuses a second use).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;

use crate::context::Broker;
use crate::identity::oidc::OidcError;
use crate::identity::review::ReviewError;

/// How often the sessions due for a refresh are looked for, at most.
const LOOK_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// Refreshes sessions whose groups are `--groups-refresh` old, until the broker stops.
pub async fn run(broker: Arc<Broker>) {
    let every = broker.options.groups_refresh;
    let look = (every / 4).clamp(Duration::from_secs(1), LOOK_AT_MOST_EVERY);
    let mut tick = tokio::time::interval(look);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (lease, sealed) in broker.sessions.due_for_refresh(every) {
            refresh(&broker, &lease, &sealed).await;
        }
    }
}

/// Refreshes one session, if this replica wins it.
async fn refresh(broker: &Broker, lease: &Lease, sealed: &str) {
    let name = lease.name_any();
    let user = lease
        .annotations()
        .get("vdi.verdant.dev/user")
        .cloned()
        .unwrap_or_default();
    match broker.sessions.claim_refresh(lease).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(%user, error = %e, "cannot take a session's refresh; next round");
            return;
        }
    }
    let Some(oidc) = broker.oidc() else {
        return;
    };
    let Some(token) = broker
        .sealer
        .open(sealed, &name)
        .and_then(|t| String::from_utf8(t).ok())
    else {
        // Sealed with another session key (it was changed): the groups stay as they are until
        // the session ends, as without a refresh token.
        tracing::warn!(%user, "a session's refresh token does not open with this session key; its groups stay as they are");
        return;
    };
    let tokens = match oidc.refresh(&token).await {
        Ok(tokens) => tokens,
        Err(OidcError::RefreshRefused(why)) => {
            end(
                broker,
                &name,
                &user,
                &format!("the provider refused to refresh: {why}"),
            )
            .await;
            return;
        }
        Err(e) => {
            tracing::warn!(%user, error = %e, "cannot refresh a session's groups; trying again after --groups-refresh");
            return;
        }
    };
    let checked = broker
        .provider
        .check(&oidc, |oidc| oidc.verify_refreshed(&tokens.id_token))
        .await;
    let id_token = match checked {
        Ok(token) => token,
        Err(e) => {
            end(
                broker,
                &name,
                &user,
                &format!("the refreshed ID token: {e}"),
            )
            .await;
            return;
        }
    };
    let identity = match broker.reviewer.review(&id_token).await {
        Ok(identity) => identity,
        Err(ReviewError::Invalid(why)) => {
            end(
                broker,
                &name,
                &user,
                &format!("Kubernetes no longer accepts the login: {why}"),
            )
            .await;
            return;
        }
        Err(e) => {
            tracing::warn!(%user, error = %e, "cannot review a refreshed ID token; trying again after --groups-refresh");
            return;
        }
    };
    if identity.user != user {
        end(
            broker,
            &name,
            &user,
            &format!("the refresh names another user, {}", identity.user),
        )
        .await;
        return;
    }
    let sealed = match tokens.refresh {
        Some(next) => match broker.sealer.seal(next.as_bytes(), &name) {
            Ok(sealed) => Some(sealed),
            Err(_) => {
                end(
                    broker,
                    &name,
                    &user,
                    "no randomness to seal the new refresh token",
                )
                .await;
                return;
            }
        },
        None => None,
    };
    match broker.sessions.refreshed(&name, &identity, sealed).await {
        Ok(_) => tracing::debug!(%user, groups = ?identity.groups, "session groups refreshed"),
        Err(e) => tracing::warn!(%user, error = %e, "cannot record a session's refreshed groups"),
    }
}

/// Ends session Lease `name` everywhere, saying why.
async fn end(broker: &Broker, name: &str, user: &str, why: &str) {
    tracing::info!(%user, %why, "session ended at its refresh");
    if let Err(e) = broker.sessions.end_lease(name).await {
        tracing::warn!(%user, error = %e, "cannot end a session; next round");
    }
}
