//! Writes the CRD manifests under `crds/` and the chart's `charts/verdant/crds/` from the
//! types, or checks them with `--check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Writes Verdant's CRD manifests (crds/*.yaml and the chart's charts/verdant/crds/*.yaml)
/// from the Rust types in crds/src.
#[derive(Debug, Parser)]
#[command(name = "crdgen", version)]
struct Cli {
    /// Write nothing; fail, naming them, when the committed manifests differ from the types.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let check = match Cli::try_parse() {
        Ok(cli) => cli.check,
        // Help and version exit 0; usage errors name the argument and exit 2.
        Err(e) => e.exit(),
    };
    let dir = &PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    let targets = crds::generate::crds().into_iter().flat_map(|manifest| {
        crds::generate::FOLDERS
            .iter()
            .map(move |folder| (dir.join(folder).join(manifest.file_name), manifest.clone()))
    });
    for (path, manifest) in targets {
        let yaml = match crds::generate::to_yaml(&manifest.crd) {
            Ok(yaml) => yaml,
            Err(e) => {
                eprintln!("crdgen: cannot render {}: {e}", manifest.file_name);
                return ExitCode::FAILURE;
            }
        };
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == yaml {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else if let Err(e) = std::fs::write(&path, yaml) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("crdgen: wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "crdgen: out of date: {}; run `cargo run -p crds --bin crdgen`",
            stale.join(", ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
