//! `verdant-broker`: the connection broker and web portal (see the `broker` library).

use std::process::ExitCode;

use broker::context::Broker;
use broker::options::Options;
use clap::Parser;

/// Verdant's connection broker and web portal: OpenID login, Kubernetes RBAC for
/// entitlement, noVNC in the browser, and a WebSocket relay to each desktop's VNC server.
#[derive(Debug, Parser)]
#[command(name = "verdant-broker", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    options: Options,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `broker=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the broker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("verdant-broker: --log {:?}: {e}", cli.log);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("verdant-broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.options))
}

async fn run(options: Options) -> ExitCode {
    let tls = match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => match broker::server::tls_acceptor(cert, key) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("verdant-broker: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "verdant-broker: cannot listen on --listen {}: {e}",
                options.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let metrics_listener = match options.metrics_listen.0 {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("verdant-broker: cannot listen on --metrics-listen {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let listen = listener.local_addr().map_or(options.listen, |a| a);
    let url = options.public_url.clone();
    let broker = match Broker::start(options).await {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("verdant-broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(metrics) = metrics_listener {
        let router = broker::routes::metrics_router(std::sync::Arc::clone(&broker));
        tracing::info!(listen = ?metrics.local_addr().ok(), "serving /metrics");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics, router).await {
                tracing::error!("the metrics listener failed: {e}");
            }
        });
    }
    tracing::info!(%listen, %url, tls = tls.is_some(), "serving");
    broker::server::serve(broker, listener, tls, terminated()).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
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
        assert!(text.contains("--public-url"), "{text}");
        assert!(text.contains("VERDANT_OIDC_ISSUER"), "{text}");
        let err = Cli::try_parse_from(["verdant-broker", "--bogus"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }
}
