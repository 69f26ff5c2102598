//! `verdant-broker`: the connection broker and web portal.
//!
//! A placeholder until its issue lands: it says so and exits with status 2, so nothing mistakes
//! it for a working component.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("verdant-broker is not built yet: the broker arrives with a later issue");
    ExitCode::from(2)
}
