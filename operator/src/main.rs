//! `verdant-operator`: the Kubernetes controllers for Desktop and DesktopPool.
//!
//! A placeholder until its issue lands: it says so and exits with status 2, so nothing mistakes
//! it for a working component.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("verdant-operator is not built yet: the Desktop controller arrives with issue #4");
    ExitCode::from(2)
}
