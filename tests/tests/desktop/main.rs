//! The Desktop controller against the real control plane (kube-controller-manager included, for
//! garbage collection). The test plays the kubelet with [`tests::kubelet::Kubelet`].

mod failures;
mod isolation;
mod lifecycle;
mod reconcile;
