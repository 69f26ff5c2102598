//! What every reconcile of every controller shares: the client, the options, the event
//! recorder and the metrics. Nothing else: each controller keeps its own state.

use std::sync::Arc;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::metrics::Metrics;
use crate::options::Options;

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The operator's options.
    pub options: Options,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
}

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, options: Options, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "verdant-operator".into(),
            instance: Some(options.identity.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            options,
            metrics,
        }
    }

    /// Publishes an event about `object` (a Desktop or a pool); a failure to publish is
    /// logged, not fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}
