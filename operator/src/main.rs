//! `verdant-operator`: see `verdant-operator --help`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use operator::{LeaderElection, Options};

const USAGE: &str = "\
usage: verdant-operator [--launcher-image IMAGE] [--namespace NS]... [--http ADDR]
                        [--leader-elect] [--lease-namespace NS] [--lease-name NAME]
                        [--identity NAME]

Runs the Desktop controller against the cluster of $KUBECONFIG (or the in-cluster config).

  --launcher-image   the launcher container image (env VERDANT_LAUNCHER_IMAGE;
                     default ghcr.io/verdant-vdi/verdant-launcher:<version>)
  --namespace        watch only these namespaces (repeat it); default: all
  --http             serve /metrics, /healthz, /readyz here (default 0.0.0.0:8080; 'off' disables)
  --leader-elect     run only while holding the Lease (for several replicas)
  --lease-namespace  the Lease's namespace (default: env POD_NAMESPACE, else verdant-system)
  --lease-name       the Lease's name (default verdant-operator)
  --identity         this replica's name (default: env POD_NAME, else the host name)";

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("verdant-operator: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("verdant-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot reach the cluster: {e}"))?;
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        operator::run(client, options, shutdown)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("verdant-operator: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: Vec<String>) -> Result<Option<Options>, String> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let mut options = Options {
        launcher_image: env("VERDANT_LAUNCHER_IMAGE").unwrap_or_else(|| {
            format!(
                "ghcr.io/verdant-vdi/verdant-launcher:{}",
                env!("CARGO_PKG_VERSION")
            )
        }),
        namespaces: Vec::new(),
        http: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
        leader_election: None,
        identity: env("POD_NAME")
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_else(|| "verdant-operator".into()),
    };
    let mut leader = false;
    let mut lease_namespace = env("POD_NAMESPACE").unwrap_or_else(|| "verdant-system".into());
    let mut lease_name = "verdant-operator".to_owned();
    let mut iter = args.into_iter();
    while let Some(flag) = iter.next() {
        if matches!(flag.as_str(), "-h" | "--help") {
            return Ok(None);
        }
        if flag == "--leader-elect" {
            leader = true;
            continue;
        }
        let value = iter.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--launcher-image" => options.launcher_image = value,
            "--namespace" => options.namespaces.push(value),
            "--http" if value == "off" => options.http = None,
            "--http" => {
                options.http = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--http {value:?} is not IP:PORT"))?,
                )
            }
            "--lease-namespace" => lease_namespace = value,
            "--lease-name" => lease_name = value,
            "--identity" => options.identity = value,
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if leader {
        options.leader_election = Some(LeaderElection {
            namespace: lease_namespace,
            lease: lease_name,
            duration: Duration::from_secs(10),
        });
    }
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_fill_the_options() {
        let options = parse(args(&[
            "--launcher-image",
            "reg/launcher:1",
            "--namespace",
            "a",
            "--namespace",
            "b",
            "--http",
            "127.0.0.1:9090",
            "--leader-elect",
            "--lease-namespace",
            "verdant",
            "--identity",
            "pod-0",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(options.launcher_image, "reg/launcher:1");
        assert_eq!(options.namespaces, ["a", "b"]);
        assert_eq!(options.http, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(options.identity, "pod-0");
        let election = options.leader_election.unwrap();
        assert_eq!(
            (election.namespace.as_str(), election.lease.as_str()),
            ("verdant", "verdant-operator")
        );
    }

    #[test]
    fn defaults_and_errors() {
        let options = parse(Vec::new()).unwrap().unwrap();
        assert!(options.namespaces.is_empty() && options.leader_election.is_none());
        assert!(
            parse(args(&["--http", "off"]))
                .unwrap()
                .unwrap()
                .http
                .is_none()
        );
        assert!(parse(args(&["--help"])).unwrap().is_none());
        assert!(
            parse(args(&["--http", "nowhere"]))
                .unwrap_err()
                .contains("--http")
        );
        assert!(
            parse(args(&["--namespace"]))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse(args(&["--frobnicate", "x"]))
                .unwrap_err()
                .contains("unknown flag")
        );
    }
}
