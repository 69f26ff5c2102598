//! The command line that runs a config: what the operator puts in the launcher container's
//! `args`, and what `verdant-launcher` parses.

use crate::config::LauncherConfig;

/// The subcommand that runs one VM.
pub const RUN: &str = "run";
/// The flag that carries the whole config as one JSON argument.
pub const CONFIG_JSON: &str = "--config-json";

/// The arguments (after the program name) that run `config`: `run --config-json <JSON>`.
pub fn run_args(config: &LauncherConfig) -> Result<Vec<String>, serde_json::Error> {
    Ok(vec![
        RUN.to_owned(),
        CONFIG_JSON.to_owned(),
        serde_json::to_string(config)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_travels_as_one_json_argument() {
        let config = LauncherConfig::new("/k");
        let args = run_args(&config).unwrap();
        assert_eq!(&args[..2], ["run", "--config-json"]);
        assert_eq!(LauncherConfig::from_json(&args[2]).unwrap(), config);
    }
}
