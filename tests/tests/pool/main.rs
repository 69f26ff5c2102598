//! The DesktopPool controller against the real control plane: sizing, scaling, template changes,
//! resets, session limits, refused desktops. The test plays the kubelet with
//! [`tests::kubelet::Kubelet`].

mod readiness;
mod scaling;
mod sessions;
mod templates;
