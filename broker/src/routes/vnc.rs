//! Connect tokens and the viewer WebSocket: the desktop page trades its session for a
//! one-time token, then opens the WebSocket with it; the broker authenticates to the
//! launcher with the desktop's password and relays.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Json, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use crds::{Desktop, DesktopPhase};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use serde::Deserialize;
use serde_json::json;

use super::portal::desktop_access;
use super::{Refusal, caller, changing_caller, urlencode};
use crate::context::{App, Broker, controlled_by};
use crate::proxy::framer::MAX_PENDING;
use crate::proxy::{handshake, relay};
use crate::token::TOKEN_TTL;

/// Viewers one user may have open at once through one broker.
pub const MAX_VIEWERS_PER_USER: usize = 8;
/// How long connecting to a launcher may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Issues a connect token for a Ready desktop the caller may open.
pub async fn token(
    State(App(broker)): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
) -> Response {
    let who = match changing_caller(&broker, &headers, &jar, None).await {
        Ok(who) => who,
        Err(refusal) => return refusal.json(),
    };
    let (desktop, view_only) = match desktop_access(&broker, &who, &namespace, &name).await {
        Ok(found) => found,
        Err(refusal) => return refusal.json(),
    };
    if desktop.status.as_ref().and_then(|s| s.phase) != Some(DesktopPhase::Ready) {
        return Refusal::Unavailable("The desktop is not ready yet.".into()).json();
    }
    match broker.tokens.issue(&who.sid, &namespace, &name, view_only) {
        Ok(token) => Json(json!({
            "token": token,
            "path": format!("/desktops/{namespace}/{name}/vnc?token={}", urlencode(&token)),
            "viewOnly": view_only,
            "expiresInSeconds": TOKEN_TTL.as_secs(),
        }))
        .into_response(),
        Err(e) => Refusal::Unavailable(format!("No randomness: {e}")).json(),
    }
}

/// The WebSocket's query.
#[derive(Debug, Deserialize)]
pub struct VncQuery {
    token: Option<String>,
}

/// Where a desktop's launcher serves VNC: its pod's IP and the container port named `vnc`.
async fn launcher_address(
    broker: &Broker,
    desktop: &Desktop,
    namespace: &str,
) -> Result<SocketAddr, Refusal> {
    let not_running = || Refusal::Unavailable("The desktop is not running right now.".into());
    let pod_name = desktop
        .status
        .as_ref()
        .and_then(|s| s.pod_name.clone())
        .ok_or_else(not_running)?;
    let pods: Api<Pod> = Api::namespaced(broker.client.clone(), namespace);
    let pod = pods
        .get_opt(&pod_name)
        .await
        .map_err(|e| Refusal::Unavailable(format!("Cannot find the desktop's pod: {e}")))?
        .ok_or_else(not_running)?;
    // The desktop's own launcher, not a pod someone stood up under its pod's name: it would
    // receive the user's keystrokes.
    if !controlled_by(&pod.metadata, desktop) {
        tracing::warn!(%namespace, %pod_name, desktop = %desktop.name_any(), "a pod not made for the desktop has its launcher's name; not connecting");
        return Err(Refusal::Unavailable(
            "The desktop's launcher pod is not the desktop's own; ask your administrator.".into(),
        ));
    }
    let ip: IpAddr = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(not_running)?;
    let port = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(launcher_api::endpoints::VNC_PORT_NAME))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(launcher_api::endpoints::VNC_PORT);
    Ok(SocketAddr::new(ip, port))
}

/// The viewer WebSocket. Checks, in order: Origin, identity, the one-time token (bound to
/// this session and this desktop), then connects to the launcher before upgrading, so a
/// refusal is a plain HTTP status.
pub async fn websocket(
    State(App(broker)): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<VncQuery>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let started = Instant::now();
    if let Some(origin) = headers.get(header::ORIGIN)
        && origin.as_bytes() != broker.options.origin().as_bytes()
    {
        broker.metrics.refused("origin");
        return Refusal::Forbidden(
            "origin",
            "WebSockets are accepted from the portal's own pages only.".into(),
        )
        .json();
    }
    let who = match caller(&broker, &headers, &jar).await {
        Ok(who) => who,
        Err(refusal) => return refusal.json(),
    };
    let Some((namespace, name)) = crate::names::object(&namespace, &name) else {
        return Refusal::BadName.json();
    };
    let grant = match broker.tokens.redeem(
        query.token.as_deref().unwrap_or(""),
        &who.sid,
        &namespace,
        &name,
    ) {
        Ok(grant) => grant,
        Err(e) => return token_refused(&broker, &who, (&namespace, &name), &e),
    };
    // Once at every replica, not once at each: the session's record says whether any replica
    // took this token already. A bearer caller has no session record, and needs none: the
    // token opens nothing without the bearer token, which mints new connect tokens anyway.
    let once = if who.is_bearer() {
        Ok(true)
    } else {
        broker
            .sessions
            .redeem_once(&who.sid, &grant.jti, grant.exp)
            .await
    };
    match once {
        Ok(true) => {}
        Ok(false) => {
            let replayed = crate::token::TokenError::Replayed;
            return token_refused(&broker, &who, (&namespace, &name), &replayed);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a connect token's use");
            return Refusal::Unavailable("The broker cannot reach the cluster; try again.".into())
                .json();
        }
    }
    // A bounded number of viewers per user and replica: each holds a launcher connection.
    if broker.relays.of_user(&who.identity.user) >= MAX_VIEWERS_PER_USER {
        broker.metrics.refused("too_many_viewers");
        return Refusal::TooMany.json();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    // Allowed now, not only when the token was issued: the desktop may have changed hands
    // in between. A grant for watching only stays that.
    let (desktop, view_only) = match desktop_access(&broker, &who, &namespace, &name).await {
        Ok((desktop, view_only)) => (desktop, view_only || grant.view_only),
        Err(refusal) => return refusal.json(),
    };
    let addr = match launcher_address(&broker, &desktop, &namespace).await {
        Ok(addr) => addr,
        Err(refusal) => return refusal.json(),
    };
    let password = match broker.display_password(&desktop, view_only).await {
        Ok(password) => password,
        Err(e) => {
            return Refusal::Unavailable(format!("Cannot use the desktop's display Secret: {e}"))
                .json();
        }
    };
    let mut launcher =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Refusal::Unavailable(format!("Cannot reach the desktop: {e}")).json();
            }
            Err(_) => {
                return Refusal::Unavailable("The desktop did not answer in time.".into()).json();
            }
        };
    let _ = launcher.set_nodelay(true);
    if let Err(e) = handshake::launcher(&mut launcher, password.as_deref()).await {
        tracing::warn!(%namespace, desktop = %name, error = %e, "launcher handshake failed");
        return Refusal::Unavailable(format!("The desktop refused the broker: {e}")).json();
    }
    broker
        .metrics
        .connect_seconds
        .observe(started.elapsed().as_secs_f64());
    let user = who.identity.user.clone();
    // A session of the desktop's own user counts for its session limits; an admin's or a
    // helpdesk's does not.
    let counts = !view_only && who.owns(&desktop);
    // Registered before the relay starts; a change the watch brought meanwhile ends it at
    // once (the cache has it, and it is newer than what access was checked on).
    let registration = broker.relays.open(
        &desktop,
        crate::relays::Opener {
            sid: who.sid.clone(),
            identity: who.identity.clone(),
            view_only,
        },
    );
    if let Some(now) = broker.desktop(&namespace, &name) {
        broker.relays.desktop_changed(&now);
    }
    ws.protocols(["binary"])
        .max_message_size(MAX_PENDING)
        .max_frame_size(MAX_PENDING)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * relay::CHUNK)
        .on_upgrade(move |socket| async move {
            broker.metrics.sessions.inc();
            tracing::info!(%user, %namespace, desktop = %name, view_only, "viewer connected");
            let last_input = if counts {
                broker.activity.connected(&desktop, &user).await
            } else {
                Arc::default()
            };
            let metrics = Arc::clone(&broker);
            let end = relay::run(
                socket,
                launcher,
                relay::Relay {
                    view_only,
                    last_input,
                    shutdown: broker.shutdown.subscribe(),
                    ended: registration.ended.clone(),
                    count: Arc::new(move |down, up| metrics.metrics.relayed(down, up)),
                },
            )
            .await;
            drop(registration);
            if counts {
                broker.activity.disconnected(&namespace, &name).await;
            }
            broker.metrics.sessions.dec();
            tracing::info!(%user, %namespace, desktop = %name, end = ?end, "viewer disconnected");
        })
}

/// A connect token refused: counted, logged, and 403 with what to do.
fn token_refused(
    broker: &Broker,
    who: &super::Caller,
    (namespace, name): (&str, &str),
    e: &crate::token::TokenError,
) -> Response {
    broker.metrics.refused(e.reason());
    tracing::info!(user = %who.identity.user, %namespace, desktop = %name, why = %e, "connect token refused");
    Refusal::Forbidden(
        e.reason(),
        "The connect token is not valid; reload the page.".into(),
    )
    .json()
}
