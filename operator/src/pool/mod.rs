//! The DesktopPool controller. Its pure middle, which desktops to create and delete and in
//! what order, is in [`plan`].

pub mod assign;
pub mod plan;
