//! `verdant-dev`: Verdant's local environment on this machine.
//!
//! `verdant-dev up` first installs what the product needs and this machine lacks (Debian
//! packages, PyPI tools and npm packages from tests/setup/requirements.txt, as root), then
//! starts the whole product in the background where this machine can run a node (root,
//! `/dev/kvm`, containerd, runc and the CNI plugins): a real control plane (etcd,
//! kube-apiserver, kube-controller-manager, built from pinned Go modules on first use) with a
//! real node (containerd, kubelet, kube-scheduler), Verdant's images built by
//! `images/build.sh` and loaded into it, `helm install` of the chart, a demo pool of two
//! desktops running the demo guest in launcher pods, and the broker's portal with two demo
//! users (see [`tests::product`]). It prints the `KUBECONFIG`, the portal's URL and the users.
//!
//! Where no node can run, it says why and falls back: the control plane, the CRDs and the
//! operator in this process, and one demo desktop VM it runs itself (where `/dev/kvm` works)
//! behind VNC. `verdant-dev down` stops either and leaves nothing behind. `verdant-dev test`
//! runs the tests and ends with the slowest binaries and a count of what skipped.

mod demo;
mod state;
mod test_run;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tests::controlplane::{self, ControlPlane, Versions};

use demo::start_demo;
use state::{State, alive, default_state_dir, write_atomically};

/// Verdant's local environment on this machine: a real control plane and node with Verdant
/// installed by its chart, a demo pool and the portal (or, where no node can run, the control
/// plane with Verdant's CRDs and operator, and a demo desktop VM).
#[derive(Debug, Parser)]
#[command(name = "verdant-dev", version, max_term_width = 100)]
struct Cli {
    /// Where the environment keeps its files [default: $XDG_STATE_HOME/verdant/dev, else
    /// ~/.local/state/verdant/dev].
    #[arg(long, global = true, value_name = "DIR", env = "VERDANT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start the environment in the background and print how to use it.
    ///
    /// First installs what is missing (tests/setup/requirements.txt; Debian packages as root).
    /// Where a node can run (root, /dev/kvm, containerd, runc, CNI plugins): the control plane,
    /// a node, helm install of Verdant, a demo pool and the portal. Else the control plane, the
    /// CRDs, the operator and a demo VM, saying why.
    Up,
    /// Stop it and remove its data.
    Down,
    /// Say whether it runs.
    Status,
    /// Run the tests (`cargo test --workspace`, with ARGS after it): every test binary, two at
    /// a time (VERDANT_TEST_LANES; 1 is cargo's own sequential run), whatever fails; then list
    /// the slowest test binaries and count what skipped a missing part.
    ///
    /// A missing part fails its test unless VERDANT_ALLOW_SKIP=1 is set; with it, the run ends
    /// with how many tests skipped, and why.
    Test {
        /// Arguments for cargo test, e.g. `-p operator` or `-- --test-threads 1`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The background process `up` starts (not for direct use).
    #[command(hide = true)]
    Serve {
        /// Run the whole product on a real node.
        #[arg(long)]
        node: bool,
    },
}

/// How long `up` waits for the background environment.
const UP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `up` waits for the whole product on a node (the images are built before).
const UP_NODE_TIMEOUT: Duration = Duration::from_secs(480);
/// How long `down` waits for a graceful stop before killing.
const DOWN_GRACE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    // Behave like other command-line tools when the reader of our output goes away (`| head`):
    // end quietly instead of failing to print.
    // SAFETY: restoring a signal's default disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version print and exit 0; usage errors name the flag and exit 2.
        Err(e) => e.exit(),
    };
    let state = State::new(cli.state_dir.unwrap_or_else(default_state_dir));
    let result = match cli.command {
        Cmd::Up => up(&state),
        Cmd::Down => down(&state),
        Cmd::Status => status(&state),
        Cmd::Test { args } => test_run::run(&tests::chart::root(), &args),
        Cmd::Serve { node } => serve(&state, node),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("verdant-dev: {message}");
            ExitCode::FAILURE
        }
    }
}

fn up(state: &State) -> Result<(), String> {
    if state.running_pid().is_some() && state.ready_file().exists() {
        println!("verdant-dev: already up.");
        print_how_to_use(state);
        return Ok(());
    }
    if let Some(pid) = state.running_pid() {
        return Err(format!(
            "an environment (pid {pid}) is starting or stuck in {}; run `verdant-dev down` first",
            state.dir.display()
        ));
    }
    state.clear();
    std::fs::create_dir_all(&state.dir)
        .map_err(|e| format!("cannot create {}: {e}", state.dir.display()))?;

    install_requirements();
    // Build missing tools here, in the foreground, so their progress shows.
    controlplane::Binaries::locate().map_err(|e| e.to_string())?;
    // The whole product where a node can run, and its images built here too; else the
    // control plane alone, saying why.
    let images = match node_blocker() {
        None => Some(tests::node::Images::build().map_err(|e| e.to_string())?),
        Some(why) => {
            println!("verdant-dev: no node here ({why}); starting the control plane alone.");
            None
        }
    };

    let log = std::fs::File::create(state.log_file())
        .map_err(|e| format!("cannot create {}: {e}", state.log_file().display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let mut serve = Command::new(exe);
    serve
        .arg("serve")
        .arg("--state-dir")
        .arg(&state.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if let Some(images) = &images {
        serve.arg("--node").env("VERDANT_IMAGES_DIR", &images.dir);
    }
    // SAFETY: setsid() is async-signal-safe and only detaches the forked child from our session,
    // so the environment outlives this terminal.
    unsafe {
        serve.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = serve
        .spawn()
        .map_err(|e| format!("cannot start the background process: {e}"))?;
    let (what, limit) = if images.is_some() {
        (
            "a node, helm install of Verdant, a demo pool and the portal",
            UP_NODE_TIMEOUT,
        )
    } else {
        ("kube-controller-manager", UP_TIMEOUT)
    };
    println!(
        "verdant-dev: starting etcd, kube-apiserver {}, {what} (log: {})",
        Versions::pinned().kubernetes,
        state.log_file().display()
    );

    let start = Instant::now();
    let mut shown = 0;
    loop {
        shown = show_progress(state, shown);
        if state.ready_file().exists() {
            let done = if images.is_some() {
                "Verdant runs on a node, installed by its chart"
            } else {
                "Verdant's CRDs are installed and the operator runs"
            };
            println!(
                "verdant-dev: up in {:.1} s; {done}.",
                start.elapsed().as_secs_f64()
            );
            print_how_to_use(state);
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            state.clear();
            return Err(format!(
                "the environment failed to start ({status}); the end of its log:\n{}",
                controlplane::log_tail(&state.log_file(), 30)
            ));
        }
        if start.elapsed() > limit {
            let _ = down(state);
            return Err(format!(
                "the environment was not up after {} s; the end of its log:\n{}",
                limit.as_secs(),
                controlplane::log_tail(&state.log_file(), 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Installs what the product needs and this machine lacks, from the list `.ci/run` uses too
/// (tests/setup/requirements.txt), saying what and why. Where that cannot be done (not root,
/// no network), says so and the one command that would; `up` then goes on with what is here,
/// falling back as it says.
fn install_requirements() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("setup/install.sh");
    let status = Command::new("bash").arg(&script).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) if s.code() == Some(3) => println!(
            "verdant-dev: going on without them; `sudo bash {}` installs them",
            script.display()
        ),
        Ok(s) => println!(
            "verdant-dev: {} failed ({s}); going on with what is here",
            script.display()
        ),
        Err(e) => println!(
            "verdant-dev: cannot run {}: {e}; going on with what is here",
            script.display()
        ),
    }
}

/// Prints the background process's `progress:` lines past byte `from` of its log; returns how
/// far it read.
fn show_progress(state: &State, from: usize) -> usize {
    let Ok(log) = std::fs::read(state.log_file()) else {
        return from;
    };
    // Whole lines only: a line being written is read next time.
    let end = log
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(from, |i| i + 1);
    if end > from {
        for line in String::from_utf8_lossy(&log[from..end]).lines() {
            if let Some(text) = line.strip_prefix("progress: ") {
                println!("verdant-dev: {text}");
            }
        }
    }
    end.max(from)
}

/// Why the whole product cannot run on a node here, if it cannot.
fn node_blocker() -> Option<String> {
    tests::e2e::demo_guest_missing().or_else(tests::node::missing)
}

fn print_how_to_use(state: &State) {
    let kubectl = controlplane::Binaries::expected().kubectl;
    println!();
    println!("  export KUBECONFIG={}", state.kubeconfig().display());
    println!();
    println!(
        "Then, with any kubectl (a matching one is {}):",
        kubectl.display()
    );
    println!("  kubectl get desktops,desktoppools -A");
    println!("  kubectl apply -f crds/examples/");
    if let Some(portal) = state.portal() {
        println!();
        println!("The portal is at {portal} (its certificate is signed by the CA in");
        println!(
            "{}). Log in as one of the demo users, who may use pool",
            state.controlplane_dir().join("ca.crt").display()
        );
        println!(
            "{}/{} ({} desktops running the demo guest in launcher pods):",
            tests::product::DEMO_NAMESPACE,
            tests::product::DEMO_POOL,
            tests::product::DEMO_DESKTOPS
        );
        for (user, password) in tests::product::DEMO_USERS {
            println!("  {user} / {password}");
        }
        println!("Stop it with `verdant-dev down`.");
        return;
    }
    match state.demo_address() {
        Some(addr) => {
            let port = addr.rsplit(':').next().unwrap_or("5900");
            println!();
            println!("The demo desktop (a tiny guest VM) is on VNC at {addr}; its password is in");
            println!("{}. For example:", state.demo_password_file().display());
            println!(
                "  vncsnapshot -passwd {} 127.0.0.1::{port} demo.jpg",
                state.demo_passwd_file().display()
            );
        }
        None => println!(
            "\nNo demo desktop: see {} for why.",
            state.log_file().display()
        ),
    }
    println!("Stop it with `verdant-dev down`.");
}

fn down(state: &State) -> Result<(), String> {
    let Some(pid) = state.running_pid() else {
        state.clear();
        println!("verdant-dev: not running.");
        return Ok(());
    };
    // SAFETY: kill() with a plain pid and a valid signal.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + DOWN_GRACE;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The background process leads its own process group: whatever of it is left goes now.
    let leftovers = group_members(pid);
    if alive(pid) || !leftovers.is_empty() {
        // SAFETY: kill() with a negative pid signals the process group `pid` leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        eprintln!(
            "verdant-dev: killed {} process(es) that did not stop in time",
            leftovers.len().max(1)
        );
    }
    let _ = std::fs::remove_dir_all(state.controlplane_dir());
    state.clear();
    println!("verdant-dev: stopped.");
    Ok(())
}

/// Live processes in process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // Fields after the command: state, ppid, pgrp, ...
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
            })
        })
        .collect()
}

fn status(state: &State) -> Result<(), String> {
    match state.running_pid() {
        Some(pid) if state.ready_file().exists() => {
            println!("verdant-dev: up (pid {pid}).");
            print_how_to_use(state);
        }
        Some(pid) => println!("verdant-dev: starting (pid {pid})."),
        None => println!("verdant-dev: not running."),
    }
    Ok(())
}

/// The background process: runs the control plane (and with `node`, the whole product) until
/// SIGTERM or SIGINT.
fn serve(state: &State, node: bool) -> Result<(), String> {
    std::fs::write(state.pid_file(), std::process::id().to_string())
        .map_err(|e| format!("cannot write {}: {e}", state.pid_file().display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // The control plane's processes die with the thread that starts them: block_on runs this
    // future on the main thread, which lives until the end.
    let result = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        if node {
            let say = |text: &str| eprintln!("progress: {text}");
            let product = tests::product::start(&state.controlplane_dir(), say).await?;
            let portal = product.broker().url.to_string();
            write_ready(state, &product.cp, None, Some(&portal))?;
            tokio::select! {
                _ = term.recv() => eprintln!("SIGTERM: stopping"),
                _ = tokio::signal::ctrl_c() => eprintln!("SIGINT: stopping"),
            }
            drop(product);
            eprintln!("stopped");
            return Ok(());
        }
        // The operator runs below, as an administrator would run it by hand: for every
        // namespace, with the launcher image of $VERDANT_LAUNCHER_IMAGE.
        let env = tests::env::Env::builder("default")
            .dir(&state.controlplane_dir())
            .api_only()
            .controller_manager()
            .try_start()
            .await
            .map_err(|e| e.to_string())?;
        let cp = env.cp;
        eprintln!("control plane up at {}, CRDs installed", cp.server());
        let (stop_operator, operator_stopped) = tokio::sync::oneshot::channel::<()>();
        let operator = tokio::spawn(operator::run(cp.client(), operator_options(), async {
            let _ = operator_stopped.await;
        }));
        eprintln!("operator started");
        let demo = match start_demo(state) {
            Ok(demo) => {
                eprintln!("demo desktop on vnc://{}", demo.addr);
                Some(demo)
            }
            Err(e) => {
                eprintln!("no demo desktop: {e}");
                None
            }
        };
        write_ready(state, &cp, demo.as_ref().map(|d| d.addr), None)?;
        tokio::select! {
            _ = term.recv() => eprintln!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => eprintln!("SIGINT: stopping"),
        }
        if let Some(demo) = demo {
            demo.stop.store(2, Ordering::Release);
            let _ = demo.thread.join();
        }
        let _ = stop_operator.send(());
        match operator.await {
            Ok(Err(e)) => eprintln!("operator: {e}"),
            Err(e) => eprintln!("operator task: {e}"),
            Ok(Ok(())) => {}
        }
        drop(cp);
        eprintln!("stopped");
        Ok::<(), String>(())
    });
    state.clear();
    result
}

/// The operator of the local environment: all namespaces, no HTTP endpoints, the launcher
/// image from `$VERDANT_LAUNCHER_IMAGE`.
fn operator_options() -> operator::Options {
    operator::Options {
        launcher_image: std::env::var("VERDANT_LAUNCHER_IMAGE")
            .unwrap_or_else(|_| "localhost/verdant-launcher:dev".into()),
        launcher_pod: Default::default(),
        namespaces: Vec::new(),
        http: None,
        leader_election: None,
        identity: "verdant-dev".into(),
        recheck_refused: operator::RECHECK_REFUSED,
    }
}

/// The ready file: the apiserver's URL, the kubeconfig, the demo VM's VNC address and the
/// portal's URL, one a line (empty when absent).
fn write_ready(
    state: &State,
    cp: &ControlPlane,
    demo: Option<SocketAddr>,
    portal: Option<&str>,
) -> Result<(), String> {
    let demo = demo.map(|a| a.to_string()).unwrap_or_default();
    let text = format!(
        "{}\n{}\n{demo}\n{}\n",
        cp.server(),
        cp.kubeconfig().display(),
        portal.unwrap_or_default()
    );
    write_atomically(&state.ready_file(), &text)
}

#[cfg(test)]
mod cli_tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    #[test]
    fn help_is_generated_and_usage_errors_name_the_argument() {
        Cli::command().debug_assert();
        let help = Cli::try_parse_from(["verdant-dev", "--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        let text = help.to_string();
        assert!(
            text.contains("Usage: verdant-dev") && text.contains("up"),
            "{text}"
        );
        assert!(
            !text.contains("serve"),
            "the background command stays hidden: {text}"
        );
        let err = Cli::try_parse_from(["verdant-dev", "upp"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSubcommand);
        assert!(err.to_string().contains("upp"));
        let cli = Cli::try_parse_from(["verdant-dev", "down", "--state-dir", "/s"]).unwrap();
        assert_eq!(cli.state_dir, Some(PathBuf::from("/s")));
        assert!(matches!(cli.command, Cmd::Down));
    }
}
