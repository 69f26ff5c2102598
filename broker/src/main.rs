//! `verdant-broker`: the connection broker and web portal.
//!
//! A placeholder until its issue lands: it says so and exits with status 2, so nothing mistakes
//! it for a working component. Its command line already answers `--help` and `--version`.

use std::process::ExitCode;

use clap::Parser;

/// Verdant's connection broker and web portal: not built yet. It arrives with a later issue;
/// until then this binary only says so, and exits with status 2.
#[derive(Debug, Parser)]
#[command(name = "verdant-broker", version, max_term_width = 100)]
struct Cli {}

fn main() -> ExitCode {
    if let Err(e) = Cli::try_parse() {
        // Help and version print and exit 0; anything else is a usage error (exit 2).
        e.exit();
    }
    eprintln!("verdant-broker is not built yet: the broker arrives with a later issue");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_is_generated_and_unknown_flags_are_refused() {
        Cli::command().debug_assert();
        let help = Cli::try_parse_from(["verdant-broker", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let text = help.to_string();
        assert!(text.contains("Usage: verdant-broker"), "{text}");
        assert!(
            text.contains("not built yet"),
            "the help says what it is: {text}"
        );
        let err = Cli::try_parse_from(["verdant-broker", "--listen", "x"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }
}
