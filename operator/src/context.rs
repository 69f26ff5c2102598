//! What every reconcile of every controller shares: the client, the options, the event
//! recorder and the metrics. Nothing else: each controller keeps its own state.

use std::sync::Arc;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::metrics::Metrics;
use crate::options::Options;

/// The longest note an event may carry (events.k8s.io/v1 refuses longer ones).
const MAX_NOTE: usize = 1024;

/// `text` cut to at most `max` bytes, on a character boundary, marked with an ellipsis.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

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
            note: Some(truncate(note, MAX_NOTE)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_to_what_events_take() {
        assert_eq!(truncate("short".into(), MAX_NOTE), "short");
        let cut = truncate("é".repeat(1000), MAX_NOTE);
        assert!(cut.len() <= MAX_NOTE && cut.ends_with('…'), "{}", cut.len());
    }
}
