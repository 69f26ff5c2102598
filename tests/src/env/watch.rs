//! Waiting for and watching objects, and the small readers the environment's tests share.

use std::collections::BTreeMap;
use std::time::Duration;

use crds::{Condition, Desktop, DesktopPhase};
use futures::StreamExt;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use testkit::eventually;

/// Waits, up to `limit`, until `count` Desktops of `api` matching `labels` (`""`: all) are
/// Ready; `what` names them in the failure.
pub async fn wait_ready_desktops(
    api: &Api<Desktop>,
    labels: &str,
    count: usize,
    what: &str,
    limit: Duration,
) {
    eventually(&format!("{what} to be Ready"), limit, || async {
        let list = api.list(&ListParams::default().labels(labels)).await.ok()?;
        let ready = list
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DesktopPhase::Ready))
            .count();
        (ready == count).then_some(())
    })
    .await;
}

/// The objects of `api` matching `labels` (`""`: all) that are not being deleted; `None` when
/// the list fails.
pub async fn live<K>(api: &Api<K>, labels: &str) -> Option<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(&ListParams::default().labels(labels)).await.ok()?;
    Some(
        list.items
            .into_iter()
            .filter(|o| o.meta().deletion_timestamp.is_none())
            .collect(),
    )
}

/// Watches the objects of `api` matching `labels` for `window` and returns what changed
/// (`added NAME`, `modified NAME`, `deleted NAME`), after the initial list. A watch sees every
/// change, also one undone within the window, which looking twice would miss.
pub async fn changes_within<K>(api: &Api<K>, labels: &str, window: Duration) -> Vec<String>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let config = watcher::Config::default().labels(labels);
    let mut initial: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut listed = false;
    let mut changes = Vec::new();
    let mut events = std::pin::pin!(watcher(api.clone(), config).default_backoff());
    let deadline = tokio::time::Instant::now() + window;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = tokio::time::sleep_until(deadline), if listed => break,
        };
        let Some(Ok(event)) = event else { continue };
        match event {
            watcher::Event::InitApply(o) => {
                initial.insert(o.name_any(), o.resource_version());
            }
            watcher::Event::InitDone => listed = true,
            watcher::Event::Apply(o)
                if initial.get(&o.name_any()) == Some(&o.resource_version()) => {}
            watcher::Event::Apply(o) if initial.contains_key(&o.name_any()) => {
                changes.push(format!("modified {}", o.name_any()));
            }
            watcher::Event::Apply(o) => changes.push(format!("added {}", o.name_any())),
            watcher::Event::Delete(o) => changes.push(format!("deleted {}", o.name_any())),
            watcher::Event::Init => {}
        }
    }
    changes
}

/// GETs `path` from `addr`; the body, if the answer is 200.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The HTTP path a probe checks.
pub fn probe_path(probe: &Option<k8s_openapi::api::core::v1::Probe>) -> Option<&str> {
    probe.as_ref()?.http_get.as_ref()?.path.as_deref()
}

/// The condition `type_` of `desktop`'s status.
pub fn condition(desktop: &Desktop, type_: &str) -> Option<Condition> {
    desktop
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}
