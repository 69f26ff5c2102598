//! `verdant-kvm-plugin`: see `verdant-kvm-plugin --help` and the library's docs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kvm_plugin::{Config, MAX_DEVICES, serve};

/// Verdant's device plugin: gives /dev/kvm, and no other device of the node, to launcher pods
/// that are not privileged. Runs on each KVM node, as root, with the kubelet's
/// plugins_registry folder and the device mounted at the node's paths.
#[derive(Debug, Parser)]
#[command(name = "verdant-kvm-plugin", version, max_term_width = 100)]
struct Cli {
    /// The kubelet's root folder (its --root-dir); the plugin's socket goes in its
    /// plugins_registry folder.
    #[arg(
        long,
        value_name = "DIR",
        env = "VERDANT_KUBELET_DIR",
        default_value = "/var/lib/kubelet"
    )]
    kubelet_dir: PathBuf,
    /// The device to give.
    #[arg(long, value_name = "PATH", default_value = launcher_api::devices::KVM_DEVICE)]
    device: PathBuf,
    /// How many launcher pods of the node may have the device at once (the units advertised).
    #[arg(
        long,
        value_name = "N",
        env = "VERDANT_KVM_DEVICES",
        default_value_t = 110,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DEVICES))
    )]
    devices: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let config = Config {
        kubelet_dir: cli.kubelet_dir,
        device: cli.device,
        devices: cli.devices,
        health_period: Duration::from_secs(10),
    };
    match serve(config, stopped()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verdant-kvm-plugin: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes at SIGTERM (the kubelet stopping the pod) or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping");
}
