//! `verdant-operator`: see `verdant-operator --help`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use operator::{LauncherPod, LeaderElection, Options};

/// jemalloc, not glibc's malloc: the operator's memory is tens of thousands of cached objects
/// that watch events replace one by one, from several threads. glibc keeps much of what is
/// freed that way (the operator_memory benchmark: 38 KiB a desktop against 25 KiB, with the
/// same heap in use under heaptrack); jemalloc gives it back.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Verdant's operator: the Desktop and DesktopPool controllers, run against the cluster of
/// $KUBECONFIG (or the in-cluster config).
#[derive(Debug, Parser)]
#[command(name = "verdant-operator", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    /// The kubeconfig to use (a list of files separated by ':' is merged) [default: the
    /// in-cluster config, else ~/.kube/config].
    #[arg(long, global = true, value_name = "FILE", env = "KUBECONFIG")]
    kubeconfig: Option<String>,
    #[command(subcommand)]
    admin: Option<Admin>,
}

/// How the controllers run.
#[derive(Debug, Args)]
struct RunArgs {
    /// The launcher container image [default: ghcr.io/verdant-vdi/verdant-launcher:<version>].
    #[arg(long, value_name = "IMAGE", env = "VERDANT_LAUNCHER_IMAGE")]
    launcher_image: Option<String>,
    /// A YAML file with where launcher pods run and how their image is pulled:
    /// imagePullPolicy, nodeSelector, tolerations, runtimeClassName (the chart's `launcher`
    /// values) [default: none of them set].
    #[arg(long, value_name = "FILE", env = "VERDANT_LAUNCHER_SETTINGS", value_parser = launcher_settings)]
    launcher_settings: Option<LauncherPod>,
    /// A host directory Desktops may boot from (repeat it, or separate with commas): a
    /// `hostPath` must lie under one of these or of the settings file's `hostPaths` [default:
    /// none, so no hostPath at all].
    #[arg(
        long = "allow-host-path",
        value_name = "DIR",
        env = "VERDANT_ALLOW_HOST_PATHS",
        value_delimiter = ',',
        value_parser = host_dir
    )]
    allow_host_paths: Vec<std::path::PathBuf>,
    /// Watch only this namespace (repeat it for several) [default: all].
    #[arg(long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Serve /metrics, /healthz and /readyz here; 'off' serves nothing.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080", value_parser = parse_http)]
    http: HttpAddr,
    /// Run the controllers only while holding the Lease (for several replicas).
    #[arg(long)]
    leader_elect: bool,
    /// The Lease's namespace.
    #[arg(
        long,
        value_name = "NS",
        env = "POD_NAMESPACE",
        default_value = "verdant-system"
    )]
    lease_namespace: String,
    /// The Lease's name.
    #[arg(long, value_name = "NAME", default_value = "verdant-operator")]
    lease_name: String,
    /// This replica's name (events, the Lease holder) [default: the host name].
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    identity: Option<String>,
    /// What to log, as a tracing filter such as 'info' or 'debug,kube=info'.
    #[arg(
        long,
        value_name = "FILTER",
        env = "RUST_LOG",
        default_value = "info,kube=warn"
    )]
    log: String,
}

/// `--http`: an address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HttpAddr(Option<SocketAddr>);

fn parse_http(text: &str) -> Result<HttpAddr, String> {
    if text == "off" {
        return Ok(HttpAddr(None));
    }
    text.parse()
        .map(|a| HttpAddr(Some(a)))
        .map_err(|_| "write IP:PORT, such as 0.0.0.0:8080, or off".to_owned())
}

/// Admin commands: what the broker does for users, by hand (see docs/operating.md for the kubectl
/// equivalent).
#[derive(Debug, PartialEq, Eq, Subcommand)]
enum Admin {
    /// Give USER a desktop of pool NAME: the one they have, else a free Ready one.
    Assign {
        /// The pool.
        #[arg(long, value_name = "NAME", value_parser = non_empty)]
        pool: String,
        /// The user, as `spec.user` takes it.
        #[arg(long, value_name = "USER", value_parser = non_empty)]
        user: String,
        /// The pool's namespace [default: the kubeconfig's].
        #[arg(long, value_name = "NS", value_parser = non_empty)]
        namespace: Option<String>,
    },
    /// Take desktop NAME back from its user.
    Release {
        /// The desktop.
        #[arg(long, value_name = "NAME", value_parser = non_empty)]
        desktop: String,
        /// Its namespace [default: the kubeconfig's].
        #[arg(long, value_name = "NS", value_parser = non_empty)]
        namespace: Option<String>,
    },
}

/// Parses the command line; the controllers' flags given with an admin command are refused,
/// naming them (they would do nothing there).
fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(args)?;
    if let Some((admin, _)) = matches.subcommand() {
        let given: Vec<String> = command
            .get_arguments()
            .filter(|a| !a.is_global_set())
            .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
            .filter_map(|a| a.get_long().map(|long| format!("--{long}")))
            .collect();
        if !given.is_empty() {
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{} runs the controllers; it does nothing for `{admin}`",
                    given.join(", ")
                ),
            ));
        }
    }
    Cli::from_arg_matches(&matches)
}

/// `--launcher-settings`: the file, read and checked now, so that a mistake stops the start.
fn launcher_settings(path: &str) -> Result<LauncherPod, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    LauncherPod::parse(&text).map_err(|e| format!("{path}: {e}"))
}

fn host_dir(text: &str) -> Result<std::path::PathBuf, String> {
    let dir = std::path::PathBuf::from(text);
    operator::options::check_host_dir(&dir)?;
    Ok(dir)
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(text.to_owned())
}

impl RunArgs {
    fn options(self) -> Options {
        Options {
            launcher_image: self.launcher_image.unwrap_or_else(|| {
                format!(
                    "ghcr.io/verdant-vdi/verdant-launcher:{}",
                    env!("CARGO_PKG_VERSION")
                )
            }),
            launcher_pod: {
                let mut pod = self.launcher_settings.unwrap_or_default();
                pod.host_paths.extend(self.allow_host_paths);
                pod
            },
            namespaces: self.namespaces,
            recheck_refused: operator::RECHECK_REFUSED,
            http: self.http.0,
            leader_election: self.leader_elect.then(|| LeaderElection {
                namespace: self.lease_namespace,
                lease: self.lease_name,
                duration: Duration::from_secs(10),
            }),
            identity: self
                .identity
                .filter(|i| !i.is_empty())
                .or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .unwrap_or_else(|| "verdant-operator".into()),
        }
    }
}

/// A client for `kubeconfig` (':'-separated files, merged), else the inferred configuration.
async fn client(kubeconfig: Option<&str>) -> Result<kube::Client, String> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let config = match kubeconfig.filter(|k| !k.is_empty()) {
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
        Some(files) => {
            let mut merged: Option<Kubeconfig> = None;
            for file in files.split(':').filter(|f| !f.is_empty()) {
                let next = Kubeconfig::read_from(file).map_err(|e| format!("{file}: {e}"))?;
                merged = Some(match merged {
                    None => next,
                    Some(m) => m.merge(next).map_err(|e| e.to_string())?,
                });
            }
            let merged = merged.ok_or("--kubeconfig names no file")?;
            kube::Config::from_custom_kubeconfig(merged, &KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?
        }
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Runs an admin command.
async fn admin(command: Admin, kubeconfig: Option<&str>) -> Result<String, String> {
    use assignment::{Assigner, release};
    let client = client(kubeconfig)
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
}

/// Runs the controllers until SIGTERM or SIGINT.
async fn controllers(options: Options, kubeconfig: Option<&str>) -> Result<(), String> {
    let client = client(kubeconfig)
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
}

fn main() -> ExitCode {
    let cli = match parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        // Help and version print and exit 0; usage errors name the flag and exit 2.
        Err(e) => e.exit(),
    };
    let kubeconfig = cli.kubeconfig.clone();
    let runtime = match cli.admin {
        Some(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("verdant-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.admin {
        Some(command) => runtime
            .block_on(admin(command, kubeconfig.as_deref()))
            .map(|message| println!("{message}")),
        None => {
            let filter = tracing_subscriber::EnvFilter::try_new(&cli.run.log)
                .unwrap_or_else(|_| "info,kube=warn".into());
            tracing_subscriber::fmt().with_env_filter(filter).init();
            runtime.block_on(controllers(cli.run.options(), kubeconfig.as_deref()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("verdant-operator: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(list: &[&str]) -> Result<Cli, clap::Error> {
        parse_from(["verdant-operator"].iter().chain(list))
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn admin_commands_parse_and_name_what_is_missing() {
        let assign = parse(&["assign", "--pool", "office", "--user", "alice"]).unwrap();
        assert_eq!(
            assign.admin,
            Some(Admin::Assign {
                pool: "office".into(),
                user: "alice".into(),
                namespace: None
            })
        );
        let release = parse(&["release", "--desktop", "office-1", "--namespace", "t"]).unwrap();
        assert_eq!(
            release.admin,
            Some(Admin::Release {
                desktop: "office-1".into(),
                namespace: Some("t".into())
            })
        );
        let cases: [(&[&str], ErrorKind, &str); 4] = [
            (
                &["assign", "--pool", "office"],
                ErrorKind::MissingRequiredArgument,
                "--user",
            ),
            (
                &["release", "--user", "x"],
                ErrorKind::UnknownArgument,
                "--user",
            ),
            (&["assign", "--pool"], ErrorKind::InvalidValue, "--pool"),
            (
                &["release", "--desktop", ""],
                ErrorKind::ValueValidation,
                "--desktop",
            ),
        ];
        for (args, kind, flag) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), kind, "{args:?}: {err}");
            assert!(err.to_string().contains(flag), "{args:?}: {err}");
        }
        assert_eq!(parse(&["--http", "off"]).unwrap().admin, None);
        // The kubeconfig is for the controllers and the admin commands alike.
        let cli = parse(&["--kubeconfig", "/k", "assign", "--pool", "p", "--user", "u"]).unwrap();
        assert_eq!(cli.kubeconfig.as_deref(), Some("/k"));
        let cli = parse(&["release", "--desktop", "d", "--kubeconfig", "/k"]).unwrap();
        assert_eq!(cli.kubeconfig.as_deref(), Some("/k"));
        // Run flags belong to the controllers, not to an admin command.
        let err = parse(&["--http", "off", "assign", "--pool", "p", "--user", "u"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        assert!(err.to_string().contains("--http"), "{err}");
    }

    #[test]
    fn flags_fill_the_options() {
        let cli = parse(&[
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
        ])
        .unwrap();
        let options = cli.run.options();
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
        let options = parse(&[]).unwrap().run.options();
        assert!(options.namespaces.is_empty() && options.leader_election.is_none());
        assert!(
            parse(&["--http", "off"])
                .unwrap()
                .run
                .options()
                .http
                .is_none()
        );
        let help = parse(&["--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert!(help.to_string().contains("--launcher-image <IMAGE>"));
        let err = parse(&["--http", "nowhere"]).unwrap_err();
        assert!(err.to_string().contains("--http"), "{err}");
        let err = parse(&["--namespace"]).unwrap_err();
        assert!(err.to_string().contains("--namespace"), "{err}");
        let err = parse(&["--frobnicate", "x"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
    }

    #[test]
    fn launcher_settings_are_read_at_start_and_a_bad_file_names_the_flag_and_field() {
        let dir = std::env::temp_dir().join(format!("verdant-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(&good, "nodeSelector: {verdant.dev/kvm: \"true\"}\n").unwrap();
        let options = parse(&["--launcher-settings", good.to_str().unwrap()])
            .unwrap()
            .run
            .options();
        assert_eq!(
            options.launcher_pod.node_selector["verdant.dev/kvm"],
            "true"
        );
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "imagePullPolicy: Sometimes\n").unwrap();
        let err = parse(&["--launcher-settings", bad.to_str().unwrap()]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--launcher-settings") && text.contains("imagePullPolicy"),
            "{text}"
        );
        let missing = parse(&["--launcher-settings", "/nonexistent/launcher.yaml"]).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
