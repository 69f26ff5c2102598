//! `verdant-dev`: Verdant's local environment on this machine.
//!
//! `verdant-dev up` starts a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! built from pinned Go modules on first use) in the background, installs Verdant's CRDs, runs
//! the operator against it and prints the `KUBECONFIG` to use; `verdant-dev down` stops it and
//! leaves nothing behind. There is no kubelet: launcher pods are created but nothing runs them;
//! instead `up` runs one demo desktop VM itself (where `/dev/kvm` works) behind VNC.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use clap::{Parser, Subcommand};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use launcher::machine::ConsoleOptions;
use launcher::{LaunchOptions, Launcher};
use launcher_api::{LauncherConfig, VncConfig};
use rfb::auth::obfuscated_password_file;
use tests::controlplane::{self, ControlPlane, Options, Versions};

/// Verdant's local environment on this machine: a real control plane with Verdant's CRDs and
/// operator, and a demo desktop VM.
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
    /// Start the local control plane in the background, install the CRDs, run the operator.
    Up,
    /// Stop it and remove its data.
    Down,
    /// Say whether it runs.
    Status,
    /// The background process `up` starts (not for direct use).
    #[command(hide = true)]
    Serve,
}

/// How long `up` waits for the background environment.
const UP_TIMEOUT: Duration = Duration::from_secs(180);
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
        Cmd::Serve => serve(&state),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("verdant-dev: {message}");
            ExitCode::FAILURE
        }
    }
}

fn default_state_dir() -> PathBuf {
    let env = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_STATE_HOME")
        .map(|d| d.join("verdant").join("dev"))
        .or_else(|| env("HOME").map(|d| d.join(".local/state/verdant/dev")))
        .unwrap_or_else(|| PathBuf::from("/tmp/verdant-dev"))
}

/// The files of one environment.
struct State {
    dir: PathBuf,
}

impl State {
    fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("verdant-dev.pid")
    }
    fn ready_file(&self) -> PathBuf {
        self.dir.join("ready")
    }
    fn log_file(&self) -> PathBuf {
        self.dir.join("verdant-dev.log")
    }
    fn controlplane_dir(&self) -> PathBuf {
        self.dir.join("controlplane")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.controlplane_dir().join("kubeconfig")
    }
    fn demo_password_file(&self) -> PathBuf {
        self.dir.join("demo-vnc-password")
    }
    fn demo_passwd_file(&self) -> PathBuf {
        self.dir.join("demo-vnc.passwd")
    }
    /// Where the demo desktop's VNC server listens, if it runs.
    fn demo_address(&self) -> Option<String> {
        let ready = std::fs::read_to_string(self.ready_file()).ok()?;
        ready
            .lines()
            .nth(2)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    }

    /// The pid of the background process, if it runs.
    fn running_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }

    fn clear(&self) {
        for file in [
            self.pid_file(),
            self.ready_file(),
            self.demo_password_file(),
            self.demo_passwd_file(),
        ] {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn alive(pid: i32) -> bool {
    u32::try_from(pid).is_ok_and(controlplane::process_alive)
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

    // Build missing tools here, in the foreground, so their progress shows.
    controlplane::Binaries::locate().map_err(|e| e.to_string())?;

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
    println!(
        "verdant-dev: starting etcd, kube-apiserver {} and kube-controller-manager (log: {})",
        Versions::pinned().kubernetes,
        state.log_file().display()
    );

    let start = Instant::now();
    loop {
        if state.ready_file().exists() {
            println!(
                "verdant-dev: up in {:.1} s; Verdant's CRDs are installed and the operator runs.",
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
        if start.elapsed() > UP_TIMEOUT {
            let _ = down(state);
            return Err(format!(
                "the environment was not up after {} s; the end of its log:\n{}",
                UP_TIMEOUT.as_secs(),
                controlplane::log_tail(&state.log_file(), 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

/// The background process: runs the control plane until SIGTERM or SIGINT.
fn serve(state: &State) -> Result<(), String> {
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
        let options = Options {
            controller_manager: true,
            dir: Some(state.controlplane_dir()),
            ..Options::default()
        };
        let cp = ControlPlane::start_with(options)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("control plane up at {}", cp.server());
        controlplane::install_crds(&cp.client())
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("CRDs installed");
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
        write_ready(state, &cp, demo.as_ref().map(|d| d.addr))?;
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
    }
}

fn write_ready(state: &State, cp: &ControlPlane, demo: Option<SocketAddr>) -> Result<(), String> {
    let demo = demo.map(|a| a.to_string()).unwrap_or_default();
    let text = format!("{}\n{}\n{demo}\n", cp.server(), cp.kubeconfig().display());
    write_atomically(&state.ready_file(), &text)
}

/// The demo desktop VM, run by this process: the demo guest behind VNC on 127.0.0.1:5900 (or a
/// free port when that is taken), with a random password in the state folder.
struct Demo {
    addr: SocketAddr,
    stop: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

fn start_demo(state: &State) -> Result<Demo, String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    let password: String = bytes.iter().map(|b| char::from(b'a' + b % 26)).collect();
    std::fs::write(state.demo_password_file(), format!("{password}\n"))
        .map_err(|e| e.to_string())?;
    std::fs::write(
        state.demo_passwd_file(),
        obfuscated_password_file(password.as_bytes()),
    )
    .map_err(|e| e.to_string())?;

    // The usual VNC port if it is free, else any.
    let usual = SocketAddr::from(([127, 0, 0, 1], 5900));
    let listen = match std::net::TcpListener::bind(usual) {
        Ok(_) => usual,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let config = LauncherConfig {
        vnc: Some(VncConfig {
            password_file: Some(state.demo_password_file()),
            ..VncConfig::new(listen.to_string())
        }),
        // Stopped with the environment, at once: the demo guest has nothing to save.
        shutdown_grace_seconds: 0,
        ..launcher::demo::demo_config()?
    };
    let vm = config.validate().map_err(|e| e.to_string())?;
    let options = LaunchOptions {
        console: ConsoleOptions {
            stdout: false,
            buffer_bytes: 64 << 10,
        },
        desktop_name: "verdant demo desktop".into(),
    };
    let demo = Launcher::start(&vm, options).map_err(|e| e.to_string())?;
    let addr = demo.vnc_addr().ok_or("the demo has no VNC server")?;
    let stop = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("demo-vm".into())
        .spawn(move || match demo.run(&flag) {
            Ok(exit) => eprintln!("demo desktop ended: {exit:?}"),
            Err(e) => eprintln!("demo desktop failed: {e}"),
        })
        .map_err(|e| e.to_string())?;
    Ok(Demo { addr, stop, thread })
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
