//! Verdant's connection broker: users log in with OpenID Connect, Kubernetes says who they
//! are (TokenReview) and what they may use (SubjectAccessReview), the portal lists their
//! desktops and pools, and noVNC reaches a desktop through a WebSocket the broker relays to
//! the launcher's VNC server, answering its authentication with the desktop's password.
//! Desktop traffic never passes through kube-apiserver.
//!
//! - [`options`]: the command line;
//! - [`context`]: what every request shares (clients, caches, keys, metrics); [`cache`]: the
//!   watch caches of desktops and pools in the namespaces the broker serves;
//! - [`identity`]: login (and the provider, kept current), token review, the session cookie,
//!   access reviews, rate limits;
//! - [`routes`]: the HTTP surface; [`portal`]: its pages;
//! - [`token`]: one-time connect tokens; [`proxy`]: the VNC handshake and relay;
//! - [`activity`]: session state into `Desktop.status.assignment`;
//! - [`relays`]: the open viewer relays, ended when their desktop changes hands or their
//!   session ends; [`watchdog`]: ends those RBAC no longer allows;
//! - [`server`]: serving, TLS, graceful shutdown; [`metrics`], [`names`].

pub mod activity;
pub mod cache;
pub mod context;
pub mod identity;
pub mod metrics;
pub mod names;
pub mod options;
pub mod portal;
pub mod proxy;
pub mod refresher;
pub mod relays;
pub mod routes;
pub mod server;
pub mod token;
pub mod watchdog;
