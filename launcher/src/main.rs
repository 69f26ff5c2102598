//! `verdant-launcher`: the VMM that runs one desktop's VM through /dev/kvm.
//!
//! A placeholder until its issue lands: it says so and exits with status 2, so nothing mistakes
//! it for a working component.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("verdant-launcher is not built yet: the VMM core arrives with issue #3");
    ExitCode::from(2)
}
