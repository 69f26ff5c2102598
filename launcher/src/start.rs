//! [`Launcher`]: one desktop's VM with everything around it wired up, the HTTP endpoints and
//! the VNC server, as `verdant-launcher run` and `verdant-dev` both run it; `run` also confines
//! itself ([`Launcher::start_confined`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use launcher_api::VmConfig;
use rfb::{FrameSource, InputSink, Security, ServerOptions};

use crate::Error;
use crate::display::Framebuffer;
use crate::http::{self, Health};
use crate::machine::{ConsoleOptions, Machine, VmExit};
use crate::sandbox::{self, Sandbox, SeccompMode};

/// How a [`Launcher`] presents itself, besides its config.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Where the guest's console goes.
    pub console: ConsoleOptions,
    /// The desktop name VNC viewers show.
    pub desktop_name: String,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            console: ConsoleOptions::default(),
            desktop_name: "verdant".into(),
        }
    }
}

/// A built VM whose endpoints are serving: call [`Launcher::run`] to run it.
pub struct Launcher {
    machine: Machine,
    health: Arc<Health>,
    http: Option<SocketAddr>,
    vnc: Option<SocketAddr>,
    shutdown_grace: Duration,
}

impl Launcher {
    /// Builds the VM `config` describes, serves `/healthz`, `/readyz` and `/console` where
    /// `config.http` says and the display over VNC where `config.vnc` says, and watches the
    /// display so that `/readyz` turns ready once the guest has drawn something. The VM does
    /// not run until [`Launcher::run`].
    pub fn start(config: &VmConfig, options: LaunchOptions) -> Result<Self, Error> {
        Self::start_with(config, options, None)
    }

    /// As [`Launcher::start`], and confines the process on the way ([`crate::sandbox`]): every
    /// capability is dropped once the VM is built and before the first server thread starts,
    /// and the seccomp profile goes on every thread once the servers run, so the vCPUs (started
    /// by [`Launcher::run`]) never enter the guest unconfined. Prints what it applied on one
    /// line. For a process that only runs this VM, as `verdant-launcher run`; a test or
    /// `verdant-dev`, which do more, use [`Launcher::start`].
    pub fn start_confined(
        config: &VmConfig,
        options: LaunchOptions,
        seccomp: SeccompMode,
    ) -> Result<Self, Error> {
        Self::start_with(config, options, Some(seccomp))
    }

    fn start_with(
        config: &VmConfig,
        options: LaunchOptions,
        seccomp: Option<SeccompMode>,
    ) -> Result<Self, Error> {
        let machine = Machine::build(config, options.console);
        if crate::demo::is_demo_file(&config.kernel) {
            // The loader has read it; the temporary copy of the demo guest is no longer needed.
            let _ = std::fs::remove_file(&config.kernel);
        }
        let machine = machine?;
        eprintln!(
            "verdant-launcher: VM built in {:.1} ms ({} vCPU, {} MiB); running",
            machine.started().elapsed().as_secs_f64() * 1000.0,
            config.cpus,
            config.memory >> 20
        );
        let health = Arc::new(Health::new(machine.console()));
        // Read while capabilities last: a secret volume's file may be root's alone.
        let vnc_security = match (&config.vnc, machine.framebuffer()) {
            (Some(settings), Some(_)) => Some(match &settings.password_file {
                None => Security::None,
                Some(file) => passwords(file, settings.view_only_password_file.as_deref())?,
            }),
            _ => None,
        };
        let sandbox = match seccomp {
            None => None,
            Some(mode) => {
                let addrs = config
                    .http
                    .into_iter()
                    .chain(config.vnc.iter().map(|v| v.addr));
                let keep_bind = sandbox::needs_bind_capability(addrs);
                Some((Sandbox::drop_capabilities(keep_bind)?, mode))
            }
        };
        let http = match config.http {
            None => None,
            Some(addr) => {
                let (bound, _thread) = http::serve(addr, Arc::clone(&health))
                    .map_err(|e| Error::Io("serving HTTP", with_addr(e, addr)))?;
                eprintln!("verdant-launcher: serving /healthz /readyz /console on http://{bound}");
                Some(bound)
            }
        };
        let vnc = match (&config.vnc, machine.framebuffer(), vnc_security) {
            (Some(settings), Some(framebuffer), Some(security)) => {
                let changes = if framebuffer.has_dirty_log() {
                    "KVM's dirty-page log"
                } else {
                    "comparing frames"
                };
                let input: Arc<dyn InputSink> = machine.devices();
                let server = ServerOptions {
                    max_fps: settings.max_fps,
                    input: Some(input),
                    log_prefix: "verdant-launcher".into(),
                    ..ServerOptions::new(options.desktop_name.clone(), security)
                };
                let frame: Arc<dyn FrameSource> = Arc::new(framebuffer);
                let (bound, _thread) = rfb::serve(settings.addr, frame, server)
                    .map_err(|e| Error::Io("serving VNC", with_addr(e, settings.addr)))?;
                eprintln!("verdant-launcher: serving VNC on {bound} (changes found by {changes})");
                Some(bound)
            }
            _ => None,
        };
        match machine.framebuffer() {
            Some(framebuffer) => watch_display(framebuffer, Arc::clone(&health)),
            None => health.set_display_live(true),
        }
        if let Some((sandbox, mode)) = sandbox {
            let confinement = sandbox.apply_seccomp(mode)?;
            eprintln!("verdant-launcher: {confinement}");
        }
        Ok(Self {
            machine,
            health,
            http,
            vnc,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// Where the HTTP endpoints listen, if they do.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Where the VNC server listens, if it does.
    pub fn vnc_addr(&self) -> Option<SocketAddr> {
        self.vnc
    }

    /// The VM, for what the wiring does not cover (its console, framebuffer, devices).
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Runs the VM until it ends (see [`Machine::run`]): `stop_requests` counts requests to
    /// stop; the first asks the guest to shut down within the config's grace period.
    pub fn run(self, stop_requests: &AtomicUsize) -> Result<VmExit, Error> {
        self.health.set_running(true);
        let result = self.machine.run(stop_requests, self.shutdown_grace);
        self.health.set_running(false);
        result
    }
}

/// `error`, saying which address it was about.
fn with_addr(error: std::io::Error, addr: SocketAddr) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{addr}: {error}"))
}

/// VNC authentication with the password in `full`, and the view-only one in `view_only`.
fn passwords(full: &Path, view_only: Option<&Path>) -> Result<Security, Error> {
    let full = read_password(full, "vnc.passwordFile")?;
    let Some(view_only) = view_only else {
        return Ok(Security::Password(full));
    };
    // A display Secret made before view-only passwords has none: the desktop runs, and
    // nobody can shadow it (fail closed), rather than not run at all.
    if !view_only.exists() {
        eprintln!(
            "verdant-launcher: no view-only password at {} (vnc.viewOnlyPasswordFile): only the full password opens the display",
            view_only.display()
        );
        return Ok(Security::Password(full));
    }
    let view_only = read_password(view_only, "vnc.viewOnlyPasswordFile")?;
    // VNC authentication reads 8 bytes: the same 8 would make every viewer a full one.
    let key = |p: &[u8]| p.iter().copied().take(8).collect::<Vec<u8>>();
    if key(&full) == key(&view_only) {
        return Err(launcher_api::ConfigError::new(
            "vnc.viewOnlyPasswordFile",
            "its password's first 8 bytes are the full password's: VNC authentication could not tell them apart; use another",
        )
        .into());
    }
    Ok(Security::Passwords { full, view_only })
}

/// A VNC password from its file: the first line, which must not be empty.
fn read_password(file: &Path, field: &str) -> Result<Vec<u8>, Error> {
    let bad = |message: String| launcher_api::ConfigError::new(field, message);
    let text =
        std::fs::read(file).map_err(|e| bad(format!("cannot read {}: {e}", file.display())))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(bad(format!("{} is empty", file.display())).into());
    }
    Ok(line.to_vec())
}

/// Marks the display live once the guest has drawn something: "session ready" for a desktop.
fn watch_display(framebuffer: Framebuffer, health: Arc<Health>) {
    let spawned = std::thread::Builder::new()
        .name("display-watch".into())
        .spawn(move || {
            while framebuffer.is_blank() {
                std::thread::sleep(Duration::from_millis(200));
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

    #[test]
    fn the_password_is_the_first_line_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("verdant-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\r\nignored\n").unwrap();
        assert_eq!(read_password(&file, "vnc.passwordFile").unwrap(), b"s3cret");
        std::fs::write(&file, "\nsecond line\n").unwrap();
        let err = read_password(&file, "vnc.passwordFile")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vnc.passwordFile") && err.contains("empty"),
            "{err}"
        );
        let err = read_password(&dir.join("missing"), "vnc.passwordFile")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_view_only_password_must_differ_in_its_first_8_bytes() {
        let dir = std::env::temp_dir().join(format!("verdant-pw2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (full, view) = (dir.join("full"), dir.join("view"));
        std::fs::write(&full, "abcdefgh-full\n").unwrap();
        std::fs::write(&view, "abcdefgh-view\n").unwrap();
        let err = passwords(&full, Some(&view)).unwrap_err().to_string();
        assert!(
            err.contains("vnc.viewOnlyPasswordFile") && err.contains("first 8 bytes"),
            "{err}"
        );
        std::fs::write(&view, "watching\n").unwrap();
        assert!(matches!(
            passwords(&full, Some(&view)).unwrap(),
            Security::Passwords { .. }
        ));
        assert!(matches!(
            passwords(&full, None).unwrap(),
            Security::Password(_)
        ));
        // A Secret from before view-only passwords: the full one alone.
        assert!(matches!(
            passwords(&full, Some(&dir.join("absent"))).unwrap(),
            Security::Password(_)
        ));
        std::fs::write(&view, "").unwrap();
        let err = passwords(&full, Some(&view)).unwrap_err().to_string();
        assert!(
            err.contains("vnc.viewOnlyPasswordFile") && err.contains("empty"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
