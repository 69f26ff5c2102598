//! The portal's pages and their JSON twins: the list, Connect, the desktop page, release.

use std::sync::Arc;

use assignment::AssignError;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use crds::labels::POOL_LABEL;
use crds::{AssignmentPolicy, Desktop, DesktopPhase};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::auth::CsrfForm;
use super::{Caller, Refusal, caller, changing_caller};
use crate::context::{App, Broker};
use crate::identity::access::{DESKTOPS, POOLS, SHADOW, USE};
use crate::names;
use crate::portal::pages::{self, DesktopRow, PoolRow, Viewer};

fn viewer(who: &Caller) -> Viewer<'_> {
    Viewer {
        user: &who.identity.user,
        csrf: who.csrf.as_deref().unwrap_or(""),
    }
}

fn phase_text(desktop: &Desktop) -> String {
    desktop
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or_else(|| "Pending".to_owned(), |p| format!("{p:?}"))
}

/// The portal.
pub async fn index(
    State(App(broker)): State<App>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
) -> Response {
    let who = match caller(&broker, &headers, &jar).await {
        Ok(who) => who,
        Err(refusal) => return refusal.page("/"),
    };
    if let Err(why) = broker.listed() {
        return Refusal::Unavailable(why).page("/");
    }
    let all = broker.desktops.state();
    let pools = broker.pools.state();
    // Only a Floating pool's desktops are given back; a Dedicated one's stay their user's.
    let dedicated = |d: &Desktop| {
        let pool = d.labels().get(POOL_LABEL);
        pools.iter().any(|p| {
            Some(&p.name_any()) == pool
                && p.namespace() == d.namespace()
                && p.spec.assignment == AssignmentPolicy::Dedicated
        })
    };
    let mut desktops: Vec<DesktopRow> = all
        .iter()
        .filter(|d| who.owns(d))
        .map(|d| DesktopRow {
            namespace: d.namespace().unwrap_or_default(),
            name: d.name_any(),
            phase: phase_text(d),
            releasable: d.labels().contains_key(POOL_LABEL) && !dedicated(d),
        })
        .collect();
    desktops.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let all = &all;
    let checks = pools.iter().map(|p| {
        let broker = &broker;
        let who = &who;
        async move {
            let ns = p.namespace().unwrap_or_default();
            let allowed = broker
                .access
                .allowed(&who.identity, USE, POOLS, &ns, &p.name_any())
                .await
                .unwrap_or(false);
            allowed.then(|| PoolRow {
                free: all
                    .iter()
                    .filter(|d| {
                        d.namespace().as_deref() == Some(ns.as_str())
                            && d.labels().get(POOL_LABEL) == Some(&p.name_any())
                            && assignment::available(d)
                    })
                    .count(),
                policy: format!("{:?}", p.spec.assignment),
                namespace: ns,
                name: p.name_any(),
            })
        }
    });
    let mut pools: Vec<PoolRow> = futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect();
    pools.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Html(pages::portal(&viewer(&who), &desktops, &pools)).into_response()
}

/// Why Connect gave no desktop.
enum ConnectError {
    Refused(Refusal),
    NoPool,
    NoneFree(String),
}

impl ConnectError {
    fn respond(self, page: bool) -> Response {
        let (status, reason, text) = match self {
            Self::Refused(refusal) => {
                return if page {
                    refusal.page("/")
                } else {
                    refusal.json()
                };
            }
            Self::NoPool => (
                StatusCode::NOT_FOUND,
                "NoPool",
                "There is no such pool.".to_owned(),
            ),
            Self::NoneFree(pool) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "NoDesktopFree",
                format!("No desktop of pool {pool} is free right now. Try again in a minute."),
            ),
        };
        let retry = [(header::RETRY_AFTER, "30")];
        if page {
            let title = if reason == "NoDesktopFree" {
                "No desktop free"
            } else {
                "No such pool"
            };
            (
                status,
                retry,
                Html(pages::message(
                    None,
                    title,
                    &text,
                    Some(("/", "Your desktops")),
                )),
            )
                .into_response()
        } else {
            (
                status,
                retry,
                Json(json!({"reason": reason, "message": text})),
            )
                .into_response()
        }
    }
}

/// The refusal of a pool the caller may not use (or that does not exist: the same words).
fn not_entitled(namespace: &str, pool: &str) -> Refusal {
    Refusal::Forbidden(
        "not_entitled",
        format!(
            "You are not entitled to pool {pool} in {namespace}. Ask your administrator for the `use` verb on it."
        ),
    )
}

/// Gives the caller a desktop of `pool` (theirs if they have one there).
async fn connect(
    broker: &Broker,
    who: &Caller,
    namespace: &str,
    pool: &str,
) -> Result<String, ConnectError> {
    let Some((namespace, pool)) = names::object(namespace, pool) else {
        return Err(ConnectError::Refused(Refusal::BadName));
    };
    // A namespace the broker does not serve has no pool it could give from (and asking the
    // apiserver would cost it a review for nothing): the same answer as a pool not granted.
    if !broker.options.serves(&namespace) {
        broker.metrics.refused("not_entitled");
        return Err(ConnectError::Refused(not_entitled(&namespace, &pool)));
    }
    match broker
        .access
        .allowed(&who.identity, USE, POOLS, &namespace, &pool)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            broker.metrics.refused("not_entitled");
            return Err(ConnectError::Refused(not_entitled(&namespace, &pool)));
        }
        Err(e) => {
            return Err(ConnectError::Refused(Refusal::Unavailable(format!(
                "The broker cannot check your rights now: {e}"
            ))));
        }
    }
    let assigned = broker
        .assigner(&namespace)
        .assign_claimed(&pool, &who.identity.user, &broker.holder)
        .await;
    match assigned {
        Ok(name) => {
            tracing::info!(user = %who.identity.user, %namespace, %pool, desktop = %name, "assigned");
            Ok(name)
        }
        Err(AssignError::NoPool { .. }) => Err(ConnectError::NoPool),
        Err(AssignError::NoDesktopAvailable { .. }) => Err(ConnectError::NoneFree(pool)),
        Err(AssignError::InvalidUser(_)) => Err(ConnectError::Refused(Refusal::Forbidden(
            "invalid_user",
            "Your user name cannot be given a desktop (it is not a valid spec.user).".into(),
        ))),
        Err(e) => Err(ConnectError::Refused(Refusal::Unavailable(format!(
            "No desktop could be given: {e}"
        )))),
    }
}

/// Connect, from the portal's form.
pub async fn connect_form(
    State(App(broker)): State<App>,
    Path((namespace, pool)): Path<(String, String)>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    Form(form): Form<CsrfForm>,
) -> Response {
    let who = match changing_caller(&broker, &headers, &jar, form.csrf.as_deref()).await {
        Ok(who) => who,
        Err(refusal) => return refusal.page("/"),
    };
    match connect(&broker, &who, &namespace, &pool).await {
        Ok(name) => Redirect::to(&format!("/desktops/{namespace}/{name}")).into_response(),
        Err(e) => e.respond(true),
    }
}

/// Connect, for scripts: `{"namespace", "name", "url"}`.
pub async fn connect_api(
    State(App(broker)): State<App>,
    Path((namespace, pool)): Path<(String, String)>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
) -> Response {
    let who = match changing_caller(&broker, &headers, &jar, None).await {
        Ok(who) => who,
        Err(refusal) => return refusal.json(),
    };
    match connect(&broker, &who, &namespace, &pool).await {
        Ok(name) => Json(json!({
            "namespace": namespace,
            "name": name,
            "url": format!("{}/desktops/{namespace}/{name}", broker.options.origin()),
        }))
        .into_response(),
        Err(e) => e.respond(false),
    }
}

/// Whether the caller may open desktop `namespace`/`name`, and whether only to watch it:
/// theirs (`spec.user`), or `use` on it (full), or `shadow` on it (view only). Anything else
/// is the same 404 as a desktop that does not exist.
///
/// What it costs the apiserver is bounded: the caller's own desktop, as the cache shows it,
/// costs nothing; anything else is rate-limited per user; a desktop the cache knows is read
/// again (it may have been assigned a moment ago), and a name the cache has never seen is
/// read only once a SubjectAccessReview allows the caller to open it.
pub async fn desktop_access(
    broker: &Broker,
    who: &Caller,
    namespace: &str,
    name: &str,
) -> Result<(Arc<Desktop>, bool), Refusal> {
    let (namespace, name) = names::object(namespace, name).ok_or(Refusal::BadName)?;
    broker.listed().map_err(Refusal::Unavailable)?;
    if !broker.options.serves(&namespace) {
        broker.metrics.refused("not_entitled");
        return Err(Refusal::NotFound);
    }
    let unavailable = |e: kube::Error| {
        Refusal::Unavailable(format!("The broker cannot check your rights now: {e}"))
    };
    // Their own desktop, while RBAC still lets them use its pool.
    let theirs = |d: Arc<Desktop>| async move {
        if broker
            .owner_entitled(&who.identity, &d)
            .await
            .map_err(unavailable)?
        {
            Ok((d, false))
        } else {
            broker.metrics.refused("not_entitled");
            Err(Refusal::NotFound)
        }
    };
    let cached = broker.desktop(&namespace, &name);
    if let Some(d) = &cached
        && who.owns(d)
    {
        return theirs(Arc::clone(d)).await;
    }
    if !broker.limits.lookups_per_user.allow(&who.identity.user) {
        broker.metrics.refused("rate_limited");
        return Err(Refusal::TooMany);
    }
    let read = || async {
        broker
            .desktop_now(&namespace, &name, |d| who.owns(d))
            .await
            .map_err(unavailable)
    };
    // Known to the cache, not the caller's there: maybe assigned to them a moment ago.
    let mut now = None;
    if cached.is_some() {
        now = read().await?;
        if let Some(d) = &now
            && who.owns(d)
        {
            return theirs(Arc::clone(d)).await;
        }
    }
    let access = &broker.access;
    let view_only = if access
        .allowed(&who.identity, USE, DESKTOPS, &namespace, &name)
        .await
        .map_err(unavailable)?
    {
        false
    } else if access
        .allowed(&who.identity, SHADOW, DESKTOPS, &namespace, &name)
        .await
        .map_err(unavailable)?
    {
        true
    } else {
        broker.metrics.refused("not_entitled");
        return Err(Refusal::NotFound);
    };
    if now.is_none() {
        now = read().await?;
    }
    now.map(|d| (d, view_only)).ok_or(Refusal::NotFound)
}

fn progress_step(phase: Option<DesktopPhase>) -> u32 {
    match phase {
        Some(DesktopPhase::Starting) => 2,
        Some(DesktopPhase::Running) => 3,
        Some(DesktopPhase::Ready) => 4,
        _ => 1,
    }
}

/// The desktop page: the viewer when Ready, else the starting page.
pub async fn desktop_page(
    State(App(broker)): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
) -> Response {
    let here = format!("/desktops/{namespace}/{name}");
    let who = match caller(&broker, &headers, &jar).await {
        Ok(who) => who,
        Err(refusal) => return refusal.page(&here),
    };
    let (desktop, view_only) = match desktop_access(&broker, &who, &namespace, &name).await {
        Ok(found) => found,
        Err(refusal) => return refusal.page(&here),
    };
    let phase = desktop.status.as_ref().and_then(|s| s.phase);
    if phase != Some(DesktopPhase::Ready) {
        return Html(pages::starting(
            &viewer(&who),
            &namespace,
            &name,
            &phase_text(&desktop),
            progress_step(phase),
        ))
        .into_response();
    }
    Html(pages::desktop(&viewer(&who), &namespace, &name, view_only)).into_response()
}

/// A desktop's state, for the starting page and scripts.
pub async fn desktop_api(
    State(App(broker)): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
) -> Response {
    let who = match caller(&broker, &headers, &jar).await {
        Ok(who) => who,
        Err(refusal) => return refusal.json(),
    };
    let (desktop, view_only) = match desktop_access(&broker, &who, &namespace, &name).await {
        Ok(found) => found,
        Err(refusal) => return refusal.json(),
    };
    let status = desktop.status.clone().unwrap_or_default();
    // The first condition that is not True says what the desktop waits for.
    let message = status
        .conditions
        .iter()
        .find(|c| c.status != crds::ConditionStatus::True)
        .map(|c| c.message.clone());
    Json(json!({
        "namespace": namespace,
        "name": name,
        "phase": phase_text(&desktop),
        "ready": status.phase == Some(DesktopPhase::Ready),
        "user": desktop.spec.user,
        "viewOnly": view_only,
        "message": message,
        "assignment": status.assignment,
    }))
    .into_response()
}

/// Gives a desktop of a Floating pool back (it is reset for the next user); a Dedicated
/// pool's desktop stays its user's, and only an administrator releases it.
async fn give_back(
    broker: &Broker,
    who: &Caller,
    namespace: &str,
    name: &str,
) -> Result<(), Refusal> {
    let (namespace, name) = names::object(namespace, name).ok_or(Refusal::BadName)?;
    let api: Api<Desktop> = Api::namespaced(broker.client.clone(), &namespace);
    match assignment::give_back(&api, &name, &who.identity.user).await {
        Ok(()) => {
            tracing::info!(user = %who.identity.user, %namespace, desktop = %name, "released");
            Ok(())
        }
        // Missing or not theirs: the same answer.
        Err(AssignError::NotFound(_) | AssignError::NotYours(_)) => Err(Refusal::NotFound),
        Err(e @ AssignError::Dedicated { .. }) => {
            broker.metrics.refused("dedicated");
            Err(Refusal::Conflict("dedicated", format!("{e}.")))
        }
        Err(e) => Err(Refusal::Unavailable(format!(
            "The desktop could not be released: {e}"
        ))),
    }
}

/// Release, from the portal's form.
pub async fn release_form(
    State(App(broker)): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    Form(form): Form<CsrfForm>,
) -> Response {
    let who = match changing_caller(&broker, &headers, &jar, form.csrf.as_deref()).await {
        Ok(who) => who,
        Err(refusal) => return refusal.page("/"),
    };
    match give_back(&broker, &who, &namespace, &name).await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(refusal) => refusal.page("/"),
    }
}

/// Release, for scripts: 204, or the refusal as JSON.
pub async fn release_api(
    State(App(broker)): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
) -> Response {
    let who = match changing_caller(&broker, &headers, &jar, None).await {
        Ok(who) => who,
        Err(refusal) => return refusal.json(),
    };
    match give_back(&broker, &who, &namespace, &name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refusal.json(),
    }
}
