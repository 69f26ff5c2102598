//! Attacks on the broker, run against the real product: a real broker process in front of a
//! real apiserver, the tests' OpenID provider and launcher processes running the demo guest.
//! Each test is an attack that worked on the code before its fix (the stop notes say so).
//!
//! - a Dedicated desktop released through every path never reaches another user as it was,
//!   and the viewer of whoever had it is closed the moment it changes hands;
//! - `/login?next=` never sends a browser to another host after a real login (the classic
//!   bypass list);
//! - a 1 MiB clipboard sent as a million one-byte WebSocket messages costs the broker time in
//!   proportion to its size, not its size squared.
//!
//! One module per family of attacks.

mod cost;
mod handover;
mod identity;
mod login;
mod sessions;

use tests::env::{Builder, NodeKind};

/// The broker tests' environment in namespace `ns`: the tests' users, `replicas` desktops in
/// pool `eng` of policy `assignment`, run by launcher processes (`launchers`) or a stand-in
/// node that reports them Ready.
pub(crate) fn env(ns: &str, replicas: u32, launchers: bool, assignment: &'static str) -> Builder {
    let node = if launchers {
        NodeKind::Launchers
    } else {
        NodeKind::StandInReady
    };
    tests::brokerenv::builder(ns, replicas)
        .node(node)
        .eng_pool(replicas, assignment)
}
