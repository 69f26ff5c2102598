//! Verdant's test support: one test environment ([`env::Env::builder`]) on a real control plane
//! (etcd + kube-apiserver + kube-controller-manager built from pinned Go modules), and the
//! helpers end-to-end tests share.

pub mod attacker;
pub mod audit;
pub mod bins;
pub mod broker;
pub mod brokerenv;
pub mod chart;
pub mod controlplane;
pub mod e2e;
pub mod env;
pub mod kubelet;
pub mod kubeschema;
pub mod layout;
pub mod localnode;
pub mod node;
pub mod product;
pub mod wsrfb;

pub use controlplane::ControlPlane;
