//! `verdant-launcher`: runs one desktop's VM. See `verdant-launcher --help`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Arc;

use launcher::display::vnc::{self, Security};
use launcher::http::{self, Health};
use launcher::machine::{ConsoleOptions, Machine, VmExit};
use launcher_api::{DisplayConfig, LauncherConfig, VncConfig};

const USAGE: &str = "\
usage: verdant-launcher run [--config FILE | --config-json JSON | --demo] [--kernel PATH] [--initrd PATH]
                            [--cmdline STR] [--memory SIZE] [--cpus N] [--http ADDR]
                            [--shutdown-grace SECONDS] [--display WIDTHxHEIGHT]
                            [--vnc ADDR (--vnc-password-file FILE | --vnc-no-auth) [--vnc-fps N]]

       verdant-launcher doctor [--json]

`run` runs one VM; --demo runs the built-in demo desktop guest (1280x800, 64 MiB), e.g.
  verdant-launcher run --demo --vnc 127.0.0.1:5900 --vnc-password-file FILE
Flags override the config file. SIZE is a quantity such as 512Mi or 4Gi.
Guest console output goes to stdout. With --http (e.g. 0.0.0.0:8080) the launcher serves
/healthz, /readyz (the VM runs) and /console (the last 64 KiB of console output).
--vnc serves the display to VNC viewers (RFB 3.3-3.8) with the password in FILE, or with no
authentication at all under --vnc-no-auth (local development only); each viewer gets at most
--vnc-fps frames a second (default 30).
--display gives the guest a linear 32-bit framebuffer, described to 64-bit Linux-entry guests
in the zero page's screen_info (EFI framebuffer); /readyz then waits for a non-blank frame.
SIGTERM or SIGINT asks the guest to shut down (Ctrl+Alt+Del) and stops it after the grace
period (default 20 s); a second signal stops it at once.

`doctor` checks /dev/kvm, the CPU KVM offers guests, and guest speed; it exits 0 when
Verdant can run VMs here, 1 when it cannot.

Exit status of `run`: 0 the guest powered off (or shut down when asked), 3 it reset, 4 it
crashed (the registers are printed), 5 it was stopped hard, 1 the launcher failed, 2 bad usage.";

/// How many times SIGTERM or SIGINT arrived: the first asks the guest to shut down, the second
/// stops it at once.
static STOP_REQUESTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP_REQUESTS.fetch_add(1, Ordering::AcqRel);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("doctor") => doctor(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
        None => usage_error("a command is needed"),
    }
}

fn doctor(args: &[String]) -> ExitCode {
    let json = match args {
        [] => false,
        [flag] if flag == "--json" => true,
        _ => return usage_error("doctor takes only --json"),
    };
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

fn usage_error(message: &str) -> ExitCode {
    eprintln!("verdant-launcher: {message}\n\n{USAGE}");
    ExitCode::from(2)
}

/// Parses `run`'s flags into a config: the file or JSON first, then each flag on top.
fn parse_run_flags(args: &[String]) -> Result<LauncherConfig, String> {
    let mut base: Option<LauncherConfig> = None;
    let mut overrides: Vec<(&str, &str)> = Vec::new();
    let mut no_auth = false;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        if flag == "--vnc-no-auth" {
            no_auth = true;
            continue;
        }
        if flag == "--demo" {
            base = Some(launcher::demo::demo_config()?);
            continue;
        }
        let value = iter
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        match flag.as_str() {
            "--config" => {
                let text = std::fs::read_to_string(value)
                    .map_err(|e| format!("cannot read --config {value}: {e}"))?;
                base = Some(LauncherConfig::from_json(&text).map_err(|e| format!("{value}: {e}"))?);
            }
            "--config-json" => {
                base = Some(LauncherConfig::from_json(value).map_err(|e| e.to_string())?);
            }
            "--kernel"
            | "--initrd"
            | "--cmdline"
            | "--memory"
            | "--cpus"
            | "--http"
            | "--shutdown-grace"
            | "--display"
            | "--vnc"
            | "--vnc-password-file"
            | "--vnc-fps" => {
                overrides.push((flag.as_str(), value));
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    let mut config = match base {
        Some(config) => config,
        None => {
            let kernel = overrides
                .iter()
                .find(|(f, _)| *f == "--kernel")
                .map(|(_, v)| *v)
                .ok_or("--kernel (or --config, or --demo) is needed")?;
            LauncherConfig::new(kernel)
        }
    };
    for (flag, value) in overrides {
        match flag {
            "--kernel" => config.kernel = value.into(),
            "--initrd" => config.initrd = Some(value.into()),
            "--cmdline" => config.cmdline = value.into(),
            "--memory" => config.memory = value.into(),
            "--http" => config.http = Some(value.into()),
            "--display" => config.display = Some(DisplayConfig::parse(value)?),
            "--vnc" => config.vnc.get_or_insert_with(vnc_default).listen = value.into(),
            "--vnc-fps" => {
                let fps = value.parse().map_err(|_| {
                    format!("--vnc-fps {value:?} is not a number of frames per second (1 to 60)")
                })?;
                config.vnc.get_or_insert_with(vnc_default).max_fps = Some(fps);
            }
            "--vnc-password-file" => {
                config.vnc.get_or_insert_with(vnc_default).password_file = Some(value.into());
            }
            "--shutdown-grace" => {
                config.shutdown_grace_seconds = value.parse().map_err(|_| {
                    format!("--shutdown-grace {value:?} is not a number of seconds")
                })?;
            }
            "--cpus" => {
                config.cpus = value
                    .parse()
                    .map_err(|_| format!("--cpus {value:?} is not a number of vCPUs (1 to 64)"))?;
            }
            _ => unreachable!("only the flags matched above are collected"),
        }
    }
    if no_auth {
        config.vnc.get_or_insert_with(vnc_default).insecure_no_auth = true;
    }
    Ok(config)
}

fn vnc_default() -> VncConfig {
    VncConfig {
        listen: "127.0.0.1:5900".into(),
        password_file: None,
        insecure_no_auth: false,
        max_fps: None,
    }
}

fn run(args: &[String]) -> ExitCode {
    let config = match parse_run_flags(args) {
        Ok(config) => config,
        Err(message) => return usage_error(&message),
    };
    let vm = match config.validate() {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("verdant-launcher: {e}");
            return ExitCode::from(1);
        }
    };
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t) };
    }
    let machine = Machine::build(&vm, ConsoleOptions::default());
    if launcher::demo::is_demo_file(&vm.kernel) {
        // The loader has read it; the temporary copy of the demo guest is no longer needed.
        let _ = std::fs::remove_file(&vm.kernel);
    }
    let machine = match machine {
        Ok(machine) => machine,
        Err(e) => {
            eprintln!("verdant-launcher: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "verdant-launcher: VM built in {:.1} ms ({} vCPU, {} MiB); running",
        machine.started().elapsed().as_secs_f64() * 1000.0,
        vm.cpus,
        vm.memory >> 20
    );
    let health = Arc::new(Health::new(machine.console()));
    if let Some(addr) = vm.http {
        match http::serve(addr, Arc::clone(&health)) {
            Ok((bound, _thread)) => {
                eprintln!("verdant-launcher: serving /healthz /readyz /console on http://{bound}");
            }
            Err(e) => {
                eprintln!("verdant-launcher: cannot serve HTTP on {addr}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if let (Some(settings), Some(framebuffer)) = (&vm.vnc, machine.framebuffer()) {
        let security = match &settings.password_file {
            None => Security::None,
            Some(file) => match read_password(file) {
                Ok(password) => Security::Password(password),
                Err(message) => {
                    eprintln!("verdant-launcher: {message}");
                    return ExitCode::from(1);
                }
            },
        };
        let options = vnc::ServerOptions {
            name: "verdant".into(),
            security,
            max_fps: settings.max_fps,
            input: Some(machine.devices()),
            stats: Default::default(),
        };
        let changes = if framebuffer.has_dirty_log() {
            "KVM's dirty-page log"
        } else {
            "comparing frames"
        };
        match vnc::serve(settings.addr, framebuffer, options) {
            Ok((bound, _thread)) => {
                eprintln!("verdant-launcher: serving VNC on {bound} (changes found by {changes})")
            }
            Err(e) => {
                eprintln!(
                    "verdant-launcher: cannot serve VNC on {}: {e}",
                    settings.addr
                );
                return ExitCode::from(1);
            }
        }
    }
    if let Some(framebuffer) = machine.framebuffer() {
        watch_display(framebuffer, Arc::clone(&health));
    } else {
        health.set_display_live(true);
    }
    health.set_running(true);
    let result = machine.run(&STOP_REQUESTS, vm.shutdown_grace);
    health.set_running(false);
    match result {
        Ok(exit) => {
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
        Err(e) => {
            eprintln!("verdant-launcher: {e}");
            ExitCode::from(1)
        }
    }
}

/// The VNC password from its file: the first line, which must not be empty.
fn read_password(file: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read(file).map_err(|e| {
        format!(
            "Config vnc.passwordFile: cannot read {}: {e}",
            file.display()
        )
    })?;
    let line: Vec<u8> = text
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default()
        .to_vec();
    let line = line.strip_suffix(b"\r").map(<[u8]>::to_vec).unwrap_or(line);
    if line.is_empty() {
        return Err(format!(
            "Config vnc.passwordFile: {} is empty",
            file.display()
        ));
    }
    Ok(line)
}

/// Marks the display live once the guest has drawn something: "session ready" for a desktop.
fn watch_display(framebuffer: launcher::display::Framebuffer, health: Arc<Health>) {
    let spawned = std::thread::Builder::new()
        .name("display-watch".into())
        .spawn(move || {
            while framebuffer.is_blank() {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            eprintln!("verdant-launcher: the guest display is live");
            health.set_display_live(true);
        });
    if let Err(e) = spawned {
        eprintln!("verdant-launcher: cannot watch the display ({e}); /readyz will not turn ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_build_a_config_and_override_json() {
        let cfg = parse_run_flags(&args(&[
            "--kernel", "/k", "--cpus", "2", "--memory", "64Mi",
        ]))
        .unwrap();
        assert_eq!(
            (cfg.kernel.to_str(), cfg.cpus, cfg.memory.as_str()),
            (Some("/k"), 2, "64Mi")
        );
        let cfg = parse_run_flags(&args(&[
            "--config-json",
            r#"{"kernel":"/a","cpus":4,"cmdline":"x"}"#,
            "--cpus",
            "1",
        ]))
        .unwrap();
        assert_eq!(
            (cfg.kernel.to_str(), cfg.cpus, cfg.cmdline.as_str()),
            (Some("/a"), 1, "x")
        );
    }

    #[test]
    fn vnc_flags_fill_the_vnc_config() {
        let cfg = parse_run_flags(&args(&[
            "--kernel",
            "/k",
            "--vnc",
            "0.0.0.0:5901",
            "--vnc-password-file",
            "/pw",
            "--vnc-fps",
            "15",
        ]))
        .unwrap();
        let vnc = cfg.vnc.unwrap();
        assert_eq!(
            (vnc.listen.as_str(), vnc.max_fps),
            ("0.0.0.0:5901", Some(15))
        );
        assert_eq!(vnc.password_file.unwrap().to_str(), Some("/pw"));
        assert!(
            parse_run_flags(&args(&["--kernel", "/k", "--vnc-fps", "fast"]))
                .unwrap_err()
                .contains("--vnc-fps")
        );
        let no_auth = parse_run_flags(&args(&["--kernel", "/k", "--vnc-no-auth"])).unwrap();
        assert!(no_auth.vnc.unwrap().insecure_no_auth);
    }

    #[test]
    fn flag_errors_say_what_is_wrong() {
        assert!(
            parse_run_flags(&args(&["--cpus", "2"]))
                .unwrap_err()
                .contains("--kernel")
        );
        assert!(
            parse_run_flags(&args(&["--kernel"]))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse_run_flags(&args(&["--kernel", "/k", "--cpus", "x"]))
                .unwrap_err()
                .contains("--cpus")
        );
        assert!(
            parse_run_flags(&args(&["--bogus", "1"]))
                .unwrap_err()
                .contains("unknown flag")
        );
        let err = parse_run_flags(&args(&[
            "--config-json",
            "{\"kernel\":\"/k\",\"cpus\":true}",
        ]))
        .unwrap_err();
        assert!(err.contains("cpus"), "{err}");
    }
}
