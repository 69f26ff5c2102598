//! Session state into `Desktop.status.assignment`: connected since, last input and
//! disconnected at. Written at once on connect and disconnect, and at most every 30 s per
//! desktop in between (only when there was input), by server-side apply with the broker's
//! own field manager, which owns `status.assignment` and nothing else. The operator's
//! idle, disconnect and maximum-duration limits then act on real sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::Desktop;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::json;

/// The field manager of the broker's writes.
pub const FIELD_MANAGER: &str = "verdant-broker";
/// Least time between two activity writes for one desktop.
pub const WRITE_EVERY: Duration = Duration::from_secs(30);
/// How often live sessions are looked at.
const TICK: Duration = Duration::from_secs(5);

/// One desktop with user sessions through this broker.
struct Live {
    user: String,
    since: Option<Time>,
    viewers: usize,
    connected_at: Time,
    last_input: Arc<AtomicI64>,
    written_input: i64,
    last_write: Instant,
}

/// The desktops this broker has user sessions to.
pub struct Activity {
    client: Client,
    live: Mutex<HashMap<(String, String), Live>>,
}

fn time_at(unix: i64) -> Time {
    Time(Timestamp::from_second(unix).unwrap_or_else(|_| Timestamp::now()))
}

impl Activity {
    /// Writes through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A user viewer of `desktop` connected; returns the clock its relay sets on input.
    pub async fn connected(&self, desktop: &Desktop, user: &str) -> Arc<AtomicI64> {
        let key = key(desktop);
        let now = Timestamp::now();
        let (first, clock, since) = {
            let mut live = self.live();
            let entry = live.entry(key.clone()).or_insert_with(|| {
                // Assigned when it was, if the status says so for this user; else now.
                let since = desktop
                    .status
                    .as_ref()
                    .and_then(|s| s.assignment.as_ref())
                    .filter(|a| a.user == user)
                    .and_then(|a| a.since.clone())
                    .or(Some(Time(now)));
                Live {
                    user: user.to_owned(),
                    since,
                    viewers: 0,
                    connected_at: Time(now),
                    last_input: Arc::new(AtomicI64::new(now.as_second())),
                    written_input: now.as_second(),
                    last_write: Instant::now(),
                }
            });
            entry.viewers += 1;
            (
                entry.viewers == 1,
                Arc::clone(&entry.last_input),
                entry.since.clone(),
            )
        };
        if first {
            let assignment = json!({
                "user": user,
                "since": since,
                "session": "Connected",
                "connectedAt": Time(now),
                "lastActivity": Time(now),
            });
            self.write(&key, assignment).await;
        }
        clock
    }

    /// A user viewer of `desktop` went away.
    pub async fn disconnected(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let assignment = {
            let mut live = self.live();
            let Some(entry) = live.get_mut(&key) else {
                return;
            };
            entry.viewers = entry.viewers.saturating_sub(1);
            if entry.viewers > 0 {
                return;
            }
            let Some(entry) = live.remove(&key) else {
                return;
            };
            json!({
                "user": entry.user,
                "since": entry.since,
                "session": "Disconnected",
                "connectedAt": entry.connected_at,
                "lastActivity": time_at(entry.last_input.load(Ordering::Relaxed)),
                "disconnectedAt": Time(Timestamp::now()),
            })
        };
        self.write(&key, assignment).await;
    }

    /// Writes the last input of live sessions that had some, each desktop at most every
    /// [`WRITE_EVERY`]. Runs until the broker stops.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            let due: Vec<((String, String), serde_json::Value)> = {
                let mut live = self.live();
                live.iter_mut()
                    .filter_map(|(key, entry)| {
                        let input = entry.last_input.load(Ordering::Relaxed);
                        if input <= entry.written_input || entry.last_write.elapsed() < WRITE_EVERY
                        {
                            return None;
                        }
                        entry.written_input = input;
                        entry.last_write = Instant::now();
                        Some((
                            key.clone(),
                            json!({
                                "user": entry.user,
                                "since": entry.since,
                                "session": "Connected",
                                "connectedAt": entry.connected_at,
                                "lastActivity": time_at(input),
                            }),
                        ))
                    })
                    .collect()
            };
            for (key, assignment) in due {
                self.write(&key, assignment).await;
            }
        }
    }

    async fn write(&self, (namespace, name): &(String, String), assignment: serde_json::Value) {
        let api: Api<Desktop> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({
            "apiVersion": Desktop::api_version(&()),
            "kind": Desktop::kind(&()),
            "status": {"assignment": assignment},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(e) = api.patch_status(name, &params, &Patch::Apply(&patch)).await {
            // A lost activity write delays a session limit by one write interval at most;
            // the next write (or disconnect) carries the state again.
            tracing::warn!(%namespace, desktop = %name, error = %e, "cannot write session state");
        }
    }
}

fn key(desktop: &Desktop) -> (String, String) {
    (
        desktop.metadata.namespace.clone().unwrap_or_default(),
        desktop.metadata.name.clone().unwrap_or_default(),
    )
}
