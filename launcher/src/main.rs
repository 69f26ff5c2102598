//! `verdant-launcher`: runs one desktop's VM. See `verdant-launcher --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::{Args, Parser, Subcommand};
use launcher::machine::VmExit;
use launcher::sandbox::SeccompMode;
use launcher::{LaunchOptions, Launcher};
use launcher_api::{DisplayConfig, ExitStatus, LauncherConfig, VncConfig};

/// Verdant's VMM: runs one desktop's VM through /dev/kvm.
#[derive(Debug, Parser)]
#[command(name = "verdant-launcher", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one VM until it powers off, resets, crashes or is stopped.
    ///
    /// Flags override the config. Guest console output goes to stdout. SIGTERM or SIGINT asks
    /// the guest to shut down (Ctrl+Alt+Del) and stops it after the grace period; a second
    /// signal stops it at once.
    ///
    /// Exit status: 0 the guest powered off (or shut down when asked), 3 it reset, 4 it crashed
    /// (the registers are printed), 5 it was stopped hard, 1 the launcher failed, 2 bad usage.
    Run(Box<RunArgs>),
    /// Check /dev/kvm, the CPU KVM offers guests, and guest speed.
    ///
    /// Exits 0 when Verdant can run VMs here, 1 when it cannot.
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `run`'s flags.
#[derive(Debug, Args)]
struct RunArgs {
    /// The whole config, from a JSON file.
    #[arg(long, value_name = "FILE", group = "base")]
    config: Option<PathBuf>,
    /// The whole config as one JSON argument (what the operator passes).
    #[arg(long, value_name = "JSON", group = "base", value_parser = parse_config_json)]
    config_json: Option<LauncherConfig>,
    /// Run the built-in demo desktop guest (1280x800, 64 MiB).
    #[arg(long, group = "base")]
    demo: bool,
    /// The kernel: an ELF vmlinux (PVH or 64-bit entry) or a bzImage.
    #[arg(long, value_name = "PATH", required_unless_present = "base")]
    kernel: Option<PathBuf>,
    /// The initrd.
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// The kernel command line.
    #[arg(long, value_name = "TEXT")]
    cmdline: Option<String>,
    /// Guest memory, a quantity such as 512Mi or 4Gi [default: 512Mi].
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Number of vCPUs, 1 to 64 [default: 1].
    #[arg(long, value_name = "N")]
    cpus: Option<u32>,
    /// Serve /healthz, /readyz (the VM runs and its display is live) and /console (the last
    /// 64 KiB of console output) here, e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Seconds the guest gets to shut down after SIGTERM [default: 20].
    #[arg(long, value_name = "SECONDS")]
    shutdown_grace: Option<u64>,
    /// Give the guest a linear 32-bit framebuffer of this size, described to 64-bit
    /// Linux-entry guests in the zero page's screen_info (EFI framebuffer).
    #[arg(long, value_name = "WIDTHxHEIGHT")]
    display: Option<DisplayConfig>,
    /// Serve the display to VNC viewers (RFB 3.3-3.8) here, e.g. 127.0.0.1:5900.
    #[arg(long, value_name = "ADDR")]
    vnc: Option<String>,
    /// The file holding the password VNC viewers must give.
    #[arg(long, value_name = "FILE", conflicts_with = "vnc_no_auth")]
    vnc_password_file: Option<PathBuf>,
    /// The file holding a second password, which shows the desktop and takes no keys, pointer
    /// or clipboard (shadowing). Needs --vnc-password-file.
    #[arg(long, value_name = "FILE", requires = "vnc_password_file")]
    vnc_view_only_password_file: Option<PathBuf>,
    /// No VNC authentication at all: for local development only.
    #[arg(long)]
    vnc_no_auth: bool,
    /// Frames a second each VNC viewer gets at most, 1 to 60 [default: 30].
    #[arg(long, value_name = "N")]
    vnc_fps: Option<u32>,
    /// What a system call outside the launcher's seccomp profile does once setup is done.
    /// Capabilities are dropped in every mode.
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        env = SeccompMode::ENV,
        default_value_t = SeccompMode::Enforce
    )]
    seccomp: SeccompMode,
}

fn parse_config_json(text: &str) -> Result<LauncherConfig, String> {
    LauncherConfig::from_json(text).map_err(|e| e.to_string())
}

impl RunArgs {
    /// The config: the file, JSON or demo first, then each flag on top.
    fn config(self) -> Result<LauncherConfig, String> {
        let mut config = match (self.config, self.config_json, self.demo) {
            (Some(file), _, _) => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read --config {}: {e}", file.display()))?;
                LauncherConfig::from_json(&text).map_err(|e| format!("{}: {e}", file.display()))?
            }
            (None, Some(config), _) => config,
            (None, None, true) => launcher::demo::demo_config()?,
            // clap requires --kernel when none of the above is given.
            (None, None, false) => LauncherConfig::new(self.kernel.clone().unwrap_or_default()),
        };
        if let Some(kernel) = self.kernel {
            config.kernel = kernel;
        }
        if let Some(initrd) = self.initrd {
            config.initrd = Some(initrd);
        }
        if let Some(cmdline) = self.cmdline {
            config.cmdline = cmdline;
        }
        if let Some(memory) = self.memory {
            config.memory = memory;
        }
        if let Some(cpus) = self.cpus {
            config.cpus = cpus;
        }
        if let Some(http) = self.http {
            config.http = Some(http);
        }
        if let Some(grace) = self.shutdown_grace {
            config.shutdown_grace_seconds = grace;
        }
        if let Some(display) = self.display {
            config.display = Some(display);
        }
        if let Some(listen) = self.vnc {
            vnc(&mut config).listen = listen;
        }
        if let Some(fps) = self.vnc_fps {
            vnc(&mut config).max_fps = Some(fps);
        }
        if let Some(file) = self.vnc_password_file {
            vnc(&mut config).password_file = Some(file);
        }
        if let Some(file) = self.vnc_view_only_password_file {
            vnc(&mut config).view_only_password_file = Some(file);
        }
        if self.vnc_no_auth {
            vnc(&mut config).insecure_no_auth = true;
        }
        Ok(config)
    }
}

/// The VNC server of `config`, made listening on 127.0.0.1:5900 when a VNC flag asks for one.
fn vnc(config: &mut LauncherConfig) -> &mut VncConfig {
    config
        .vnc
        .get_or_insert_with(|| VncConfig::new("127.0.0.1:5900"))
}

/// How many times SIGTERM or SIGINT arrived: the first asks the guest to shut down, the second
/// stops it at once.
static STOP_REQUESTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP_REQUESTS.fetch_add(1, Ordering::AcqRel);
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version print and exit 0; usage errors name the flag and exit 2.
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Doctor { json } => doctor(json),
    }
}

fn doctor(json: bool) -> ExitCode {
    let report = launcher::doctor::diagnose();
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("verdant-launcher: cannot render the report: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", launcher::doctor::render(&report));
    }
    if report.can_run {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(args: RunArgs) -> ExitCode {
    let seccomp = args.seccomp;
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("verdant-launcher: {message}");
            return ExitCode::from(ExitStatus::Usage.code());
        }
    };
    let vm = match config.validate() {
        Ok(vm) => vm,
        Err(e) => return failed(&e),
    };
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t) };
    }
    let launcher = match Launcher::start_confined(&vm, LaunchOptions::default(), seccomp) {
        Ok(launcher) => launcher,
        Err(e) => return failed(&e),
    };
    let exit = match launcher.run(&STOP_REQUESTS) {
        Ok(exit) => exit,
        Err(e) => return failed(&e),
    };
    match &exit {
        VmExit::PowerOff => eprintln!("verdant-launcher: the guest powered off"),
        VmExit::Reset => eprintln!(
            "verdant-launcher: the guest asked for a reset; exiting so the pod restarts it"
        ),
        VmExit::ShutDown => eprintln!("verdant-launcher: the guest shut down on request"),
        VmExit::Stopped => eprintln!("verdant-launcher: stopped the VM hard"),
        VmExit::Crashed { reason, registers } => {
            eprintln!("verdant-launcher: the VM crashed: {reason}\n{registers}");
        }
    }
    ExitCode::from(exit.exit_status().code())
}

/// Reports a launcher error and exits with [`ExitStatus::LauncherError`].
fn failed(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("verdant-launcher: {error}");
    ExitCode::from(ExitStatus::LauncherError.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn run_args(list: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["verdant-launcher", "run"].iter().chain(list);
        match Cli::try_parse_from(argv)?.command {
            Command::Run(args) => Ok(*args),
            Command::Doctor { .. } => unreachable!("parsed run"),
        }
    }

    fn config(list: &[&str]) -> LauncherConfig {
        run_args(list).unwrap().config().unwrap()
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_build_a_config_and_override_json() {
        let cfg = config(&["--kernel", "/k", "--cpus", "2", "--memory", "64Mi"]);
        assert_eq!(
            (cfg.kernel.to_str(), cfg.cpus, cfg.memory.as_str()),
            (Some("/k"), 2, "64Mi")
        );
        let cfg = config(&[
            "--config-json",
            r#"{"kernel":"/a","cpus":4,"cmdline":"x"}"#,
            "--cpus",
            "1",
        ]);
        assert_eq!(
            (cfg.kernel.to_str(), cfg.cpus, cfg.cmdline.as_str()),
            (Some("/a"), 1, "x")
        );
    }

    #[test]
    fn what_the_operator_passes_is_what_the_launcher_runs() {
        let sent = LauncherConfig {
            cmdline: "console=ttyS0 quiet".into(),
            display: Some(DisplayConfig {
                width: 1280,
                height: 800,
            }),
            vnc: Some(VncConfig {
                password_file: Some("/verdant/secrets/display/password".into()),
                view_only_password_file: Some("/verdant/secrets/display/viewOnlyPassword".into()),
                ..VncConfig::new("0.0.0.0:5900")
            }),
            ..LauncherConfig::new("/verdant/boot/kernel/file")
        };
        let argv = launcher_api::argv::run_args(&sent).unwrap();
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        assert_eq!(argv[0], "run");
        assert_eq!(config(&args), sent);
    }

    #[test]
    fn vnc_flags_fill_the_vnc_config() {
        let cfg = config(&[
            "--kernel",
            "/k",
            "--vnc",
            "0.0.0.0:5901",
            "--vnc-password-file",
            "/pw",
            "--vnc-view-only-password-file",
            "/view",
            "--vnc-fps",
            "15",
        ]);
        let vnc = cfg.vnc.unwrap();
        assert_eq!(
            (vnc.listen.as_str(), vnc.max_fps),
            ("0.0.0.0:5901", Some(15))
        );
        assert_eq!(vnc.password_file.unwrap().to_str(), Some("/pw"));
        assert_eq!(vnc.view_only_password_file.unwrap().to_str(), Some("/view"));
        let err = run_args(&["--kernel", "/k", "--vnc-view-only-password-file", "/v"]).unwrap_err();
        assert!(err.to_string().contains("--vnc-password-file"), "{err}");
        let err = run_args(&["--kernel", "/k", "--vnc-fps", "fast"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(err.to_string().contains("--vnc-fps"), "{err}");
        let no_auth = config(&["--kernel", "/k", "--vnc-no-auth"]);
        assert!(no_auth.vnc.unwrap().insecure_no_auth);
    }

    #[test]
    fn seccomp_is_enforced_unless_the_flag_says_otherwise() {
        let mode = |list: &[&str]| run_args(list).map(|a| a.seccomp);
        if std::env::var_os(SeccompMode::ENV).is_none() {
            assert_eq!(mode(&["--kernel", "/k"]).unwrap(), SeccompMode::Enforce);
        }
        assert_eq!(
            mode(&["--kernel", "/k", "--seccomp", "log"]).unwrap(),
            SeccompMode::Log
        );
        assert_eq!(
            mode(&["--kernel", "/k", "--seccomp", "off"]).unwrap(),
            SeccompMode::Off
        );
        let err = mode(&["--kernel", "/k", "--seccomp", "lax"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert!(err.to_string().contains("--seccomp"), "{err}");
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let err = run_args(&["--cpus", "2"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert!(err.to_string().contains("--kernel"), "{err}");
        let err = run_args(&["--kernel"]).unwrap_err();
        assert!(err.to_string().contains("--kernel"), "{err}");
        let err = run_args(&["--kernel", "/k", "--cpus", "x"]).unwrap_err();
        assert!(err.to_string().contains("--cpus"), "{err}");
        let err = run_args(&["--bogus", "1"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
        assert!(err.to_string().contains("--bogus"), "{err}");
        let err = run_args(&["--config-json", "{\"kernel\":\"/k\",\"cpus\":true}"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--config-json") && text.contains("cpus"),
            "{text}"
        );
        let err = run_args(&["--demo", "--config-json", "{\"kernel\":\"/k\"}"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err = run_args(&[
            "--kernel",
            "/k",
            "--vnc-no-auth",
            "--vnc-password-file",
            "/p",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        // Help is generated, and asking for it is not an error of usage.
        let help = Cli::try_parse_from(["verdant-launcher", "run", "--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert!(help.to_string().contains("--config-json <JSON>"));
    }
}
