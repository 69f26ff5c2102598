//! Giving Verdant's pool desktops to users and taking them back: what the broker does when a
//! user logs in and out, what the operator does when a session passes a limit, and what an
//! admin does by hand with `verdant-operator assign` and `release`.
//!
//! - [`assigner`]: the [`Assigner`], a watch cache of a namespace's pool desktops that gives
//!   each user one desktop with one conditional write, never the same desktop to two users;
//! - [`claim`]: the per-user Lease that keeps one user to one desktop across processes;
//! - [`release`](mod@release): taking a desktop back, by an administrator or a session limit
//!   (and resetting a VM that had a user), or by its user (Floating pools only);
//! - [`session`]: the session-limit rules of `spec.session` (pure).
//!
//! Depends on the API types and kube only: the broker links no controller.

pub mod assigner;
pub mod claim;
pub mod error;
pub mod release;
pub mod session;

pub use assigner::{Assigner, available};
pub use error::AssignError;
pub use release::{give_back, release};
