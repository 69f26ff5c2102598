//! How the operator runs: what `verdant-operator`'s flags set.

use std::net::SocketAddr;
use std::time::Duration;

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
