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
  --identity         this replica's name (default: env POD_NAME, else the host name)

Admin commands (the same as the broker does; see the README for the kubectl equivalent):

  verdant-operator assign --pool NAME --user USER [--namespace NS]
      gives USER a desktop of pool NAME (the one they have, else a free Ready one)
  verdant-operator release --desktop NAME [--namespace NS]
      takes desktop NAME back from its user";

/// An admin command: `assign` or `release`.
#[derive(Debug, PartialEq, Eq)]
enum Admin {
    /// Give `user` a desktop of `pool`.
    Assign {
        pool: String,
        user: String,
        namespace: Option<String>,
    },
    /// Take `desktop` back.
    Release {
        desktop: String,
        namespace: Option<String>,
    },
}

/// Parses `assign ...` or `release ...`; `None` when `args` is no admin command.
fn parse_admin(args: &[String]) -> Option<Result<Admin, String>> {
    let (command, rest) = args.split_first()?;
    if !matches!(command.as_str(), "assign" | "release") {
        return None;
    }
    let mut values = std::collections::BTreeMap::new();
    let mut iter = rest.iter();
    while let Some(flag) = iter.next() {
        let allowed: &[&str] = if command == "assign" {
            &["--pool", "--user", "--namespace"]
        } else {
            &["--desktop", "--namespace"]
        };
        if !allowed.contains(&flag.as_str()) {
            return Some(Err(format!("{command}: unknown flag {flag:?}")));
        }
        let Some(value) = iter.next().filter(|v| !v.is_empty()) else {
            return Some(Err(format!("{command}: {flag} needs a value")));
        };
        values.insert(flag.as_str(), value.clone());
    }
    let mut take = |flag: &str| {
        values
            .remove(flag)
            .ok_or_else(|| format!("{command}: {flag} is required"))
    };
    Some((|| {
        Ok(if command == "assign" {
            Admin::Assign {
                pool: take("--pool")?,
                user: take("--user")?,
                namespace: take("--namespace").ok(),
            }
        } else {
            Admin::Release {
                desktop: take("--desktop")?,
                namespace: take("--namespace").ok(),
            }
        })
    })())
}

/// Runs an admin command against the cluster of $KUBECONFIG.
fn admin(command: Admin) -> ExitCode {
    use operator::pool::assign::{Assigner, release};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("verdant-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<String, String> = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot reach the cluster: {e}"))?;
        let api = |ns: Option<String>| {
            let ns = ns.unwrap_or_else(|| client.default_namespace().to_owned());
            (
                kube::Api::<crds::Desktop>::namespaced(client.clone(), &ns),
                ns,
            )
        };
        match command {
            Admin::Assign {
                pool,
                user,
                namespace,
            } => {
                let (api, ns) = api(namespace);
                let desktop = Assigner::new(api)
                    .assign(&pool, &user)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "{user} has desktop {desktop} (pool {pool}, namespace {ns})"
                ))
            }
            Admin::Release { desktop, namespace } => {
                let (api, ns) = api(namespace);
                release(&api, &desktop).await.map_err(|e| e.to_string())?;
                Ok(format!(
                    "desktop {desktop} (namespace {ns}) has no user now"
                ))
            }
        }
    });
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("verdant-operator: {message}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_admin(&args) {
        Some(Ok(command)) => return admin(command),
        Some(Err(message)) => {
            eprintln!("verdant-operator: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {}
    }
    let options = match parse(args) {
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

    #[test]
    fn admin_commands_parse_and_name_what_is_missing() {
        let assign = parse_admin(&args(&["assign", "--pool", "office", "--user", "alice"]));
        assert_eq!(
            assign,
            Some(Ok(Admin::Assign {
                pool: "office".into(),
                user: "alice".into(),
                namespace: None
            }))
        );
        let release = parse_admin(&args(&[
            "release",
            "--desktop",
            "office-1",
            "--namespace",
            "t",
        ]));
        assert_eq!(
            release,
            Some(Ok(Admin::Release {
                desktop: "office-1".into(),
                namespace: Some("t".into())
            }))
        );
        assert_eq!(
            parse_admin(&args(&["assign", "--pool", "office"])),
            Some(Err("assign: --user is required".into()))
        );
        assert_eq!(
            parse_admin(&args(&["release", "--user", "x"])),
            Some(Err("release: unknown flag \"--user\"".into()))
        );
        assert_eq!(
            parse_admin(&args(&["assign", "--pool"])),
            Some(Err("assign: --pool needs a value".into()))
        );
        assert_eq!(
            parse_admin(&args(&["release", "--desktop", ""])),
            Some(Err("release: --desktop needs a value".into()))
        );
        assert_eq!(parse_admin(&args(&["--http", "off"])), None);
    }

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
