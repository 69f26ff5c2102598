//! Checking a [`LauncherConfig`]: every field against the launcher's [`limits`](crate::limits),
//! naming the field of any error, into a [`VmConfig`] the VMM can build from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, DisplayConfig, LauncherConfig};
use crate::limits::{
    CMDLINE_MAX_SIZE, DEFAULT_MAX_FPS, MAX_CPUS, MAX_DISPLAY_HEIGHT, MAX_DISPLAY_WIDTH, MAX_FPS,
    MAX_MEMORY, MAX_SHUTDOWN_GRACE_SECONDS, MEMORY_GRANULE, MIN_CPUS, MIN_DISPLAY_SIDE, MIN_MEMORY,
};
use crate::size::parse_size;

/// A checked VNC configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncSettings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The password file; none means no authentication.
    pub password_file: Option<PathBuf>,
    /// The view-only password file, if any.
    pub view_only_password_file: Option<PathBuf>,
    /// Frames per second a viewer gets at most.
    pub max_fps: u32,
}

/// A checked configuration, with memory in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// The kernel.
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: Option<PathBuf>,
    /// The directory the kernel must stay inside (see [`LauncherConfig::kernel_root`]).
    pub kernel_root: Option<PathBuf>,
    /// The directory the initrd must stay inside.
    pub initrd_root: Option<PathBuf>,
    /// The command line.
    pub cmdline: String,
    /// vCPUs.
    pub cpus: u8,
    /// Guest memory in bytes, a multiple of 2 MiB.
    pub memory: u64,
    /// Where to serve the HTTP endpoints.
    pub http: Option<SocketAddr>,
    /// How long the guest gets to shut down when asked.
    pub shutdown_grace: Duration,
    /// The guest display.
    pub display: Option<DisplayConfig>,
    /// The VNC server.
    pub vnc: Option<VncSettings>,
}

impl LauncherConfig {
    /// Checks every field and resolves the memory size.
    pub fn validate(&self) -> Result<VmConfig, ConfigError> {
        if self.kernel.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "kernel",
                "must name the kernel image file",
            ));
        }
        if self
            .initrd
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::new(
                "initrd",
                "must name a file, or be left out",
            ));
        }
        let inside =
            |field: &str, file: Option<&PathBuf>, root: &Option<PathBuf>| match (file, root) {
                (Some(file), Some(root)) if !file.starts_with(root) || file == root => {
                    Err(ConfigError::new(
                        field,
                        format!(
                            "{} is not inside {}Root {}",
                            file.display(),
                            field,
                            root.display()
                        ),
                    ))
                }
                (None, Some(_)) => Err(ConfigError::new(
                    format!("{field}Root"),
                    format!("is set without a {field}"),
                )),
                _ => Ok(()),
            };
        inside("kernel", Some(&self.kernel), &self.kernel_root)?;
        inside("initrd", self.initrd.as_ref(), &self.initrd_root)?;
        let cpus = u8::try_from(self.cpus)
            .ok()
            .filter(|&c| (MIN_CPUS..=MAX_CPUS).contains(&u32::from(c)))
            .ok_or_else(|| {
                ConfigError::new(
                    "cpus",
                    format!("{} is not allowed: use {MIN_CPUS} to {MAX_CPUS}", self.cpus),
                )
            })?;
        let memory = parse_size(&self.memory).map_err(|m| ConfigError::new("memory", m))?;
        if memory < MIN_MEMORY {
            return Err(ConfigError::new(
                "memory",
                format!("{:?} is below the 2Mi minimum", self.memory),
            ));
        }
        if memory > MAX_MEMORY {
            return Err(ConfigError::new(
                "memory",
                format!("{:?} is above the 1Ti maximum", self.memory),
            ));
        }
        if self.cmdline.len() >= CMDLINE_MAX_SIZE {
            return Err(ConfigError::new(
                "cmdline",
                format!(
                    "{} bytes is longer than the {} bytes x86 kernels accept",
                    self.cmdline.len(),
                    CMDLINE_MAX_SIZE - 1
                ),
            ));
        }
        if self.cmdline.contains('\0') {
            return Err(ConfigError::new("cmdline", "must not contain NUL bytes"));
        }
        if self.shutdown_grace_seconds > MAX_SHUTDOWN_GRACE_SECONDS {
            return Err(ConfigError::new(
                "shutdownGraceSeconds",
                format!(
                    "{} is not allowed: use 0 to {MAX_SHUTDOWN_GRACE_SECONDS}",
                    self.shutdown_grace_seconds
                ),
            ));
        }
        if let Some(display) = self.display
            && !((MIN_DISPLAY_SIDE..=MAX_DISPLAY_WIDTH).contains(&display.width)
                && (MIN_DISPLAY_SIDE..=MAX_DISPLAY_HEIGHT).contains(&display.height))
        {
            return Err(ConfigError::new(
                "display",
                format!(
                    "{}x{} is not allowed: use {MIN_DISPLAY_SIDE}x{MIN_DISPLAY_SIDE} to {MAX_DISPLAY_WIDTH}x{MAX_DISPLAY_HEIGHT}",
                    display.width, display.height
                ),
            ));
        }
        let vnc = self.validate_vnc()?;
        let http = match &self.http {
            None => None,
            Some(addr) => Some(addr.parse().map_err(|_| {
                ConfigError::new(
                    "http",
                    format!("{addr:?} is not an address: write IP:PORT, such as 0.0.0.0:8080"),
                )
            })?),
        };
        Ok(VmConfig {
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            kernel_root: self.kernel_root.clone(),
            initrd_root: self.initrd_root.clone(),
            cmdline: self.cmdline.clone(),
            cpus,
            memory: memory.div_ceil(MEMORY_GRANULE) * MEMORY_GRANULE,
            http,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            display: self.display,
            vnc,
        })
    }

    fn validate_vnc(&self) -> Result<Option<VncSettings>, ConfigError> {
        let Some(vnc) = &self.vnc else {
            return Ok(None);
        };
        let addr = vnc.listen.parse().map_err(|_| {
            ConfigError::new(
                "vnc.listen",
                format!(
                    "{:?} is not an address: write IP:PORT, such as 0.0.0.0:5900",
                    vnc.listen
                ),
            )
        })?;
        if self.display.is_none() {
            return Err(ConfigError::new(
                "display",
                "must be set when vnc is: the VNC server shows the display",
            ));
        }
        match (&vnc.password_file, vnc.insecure_no_auth) {
            (Some(_), true) => Err(ConfigError::new(
                "vnc.insecureNoAuth",
                "cannot be combined with vnc.passwordFile",
            )),
            (None, false) => Err(ConfigError::new(
                "vnc.passwordFile",
                "must name the password file (or set vnc.insecureNoAuth for local development)",
            )),
            (file, _) => {
                if file.is_none() && vnc.view_only_password_file.is_some() {
                    return Err(ConfigError::new(
                        "vnc.viewOnlyPasswordFile",
                        "needs vnc.passwordFile: a view-only password without a full one would leave the desktop open to anyone",
                    ));
                }
                let max_fps = vnc.max_fps.unwrap_or(DEFAULT_MAX_FPS);
                if !(1..=MAX_FPS).contains(&max_fps) {
                    return Err(ConfigError::new(
                        "vnc.maxFps",
                        format!("{max_fps} is not allowed: use 1 to {MAX_FPS}"),
                    ));
                }
                Ok(Some(VncSettings {
                    addr,
                    password_file: file.clone(),
                    view_only_password_file: vnc.view_only_password_file.clone(),
                    max_fps,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VncConfig;

    fn vnc(listen: &str, password_file: Option<&str>, insecure_no_auth: bool) -> VncConfig {
        VncConfig {
            password_file: password_file.map(Into::into),
            insecure_no_auth,
            ..VncConfig::new(listen)
        }
    }

    fn with_display(cfg: LauncherConfig) -> LauncherConfig {
        LauncherConfig {
            display: Some(DisplayConfig {
                width: 640,
                height: 480,
            }),
            ..cfg
        }
    }

    #[test]
    fn validation_errors_name_the_field_and_the_bound() {
        let base = LauncherConfig::new("/k");
        let with = |f: &dyn Fn(&mut LauncherConfig)| {
            let mut cfg = base.clone();
            f(&mut cfg);
            cfg
        };
        let cases: Vec<(LauncherConfig, &str, &str)> = vec![
            (with(&|c| c.cpus = 0), "cpus", "use 1 to 64"),
            (with(&|c| c.cpus = 65), "cpus", "use 1 to 64"),
            (with(&|c| c.cpus = 300), "cpus", "use 1 to 64"),
            (with(&|c| c.memory = "1Mi".into()), "memory", "2Mi minimum"),
            (with(&|c| c.memory = "2Ti".into()), "memory", "1Ti maximum"),
            (with(&|c| c.memory = "lots".into()), "memory", "not a size"),
            (
                with(&|c| c.memory = "4GB".into()),
                "memory",
                "not a size suffix",
            ),
            (
                with(&|c| c.memory = "99999999999999999999Ti".into()),
                "memory",
                "too large",
            ),
            (with(&|c| c.kernel = "".into()), "kernel", "must name"),
            (
                with(&|c| c.initrd = Some("".into())),
                "initrd",
                "must name a file",
            ),
            (
                with(&|c| c.cmdline = "x".repeat(2048)),
                "cmdline",
                "2047 bytes",
            ),
            (with(&|c| c.cmdline = "a\0b".into()), "cmdline", "NUL"),
            (
                with(&|c| c.shutdown_grace_seconds = 3601),
                "shutdownGraceSeconds",
                "0 to 3600",
            ),
            (
                with(&|c| {
                    c.display = Some(DisplayConfig {
                        width: 8000,
                        height: 600,
                    })
                }),
                "display",
                "16x16 to 7680x4320",
            ),
            (
                with_display(with(&|c| c.vnc = Some(vnc("0.0.0.0:5900", None, false)))),
                "vnc.passwordFile",
                "must name",
            ),
            (
                with_display(with(&|c| {
                    c.vnc = Some(vnc("0.0.0.0:5900", Some("/p"), true))
                })),
                "vnc.insecureNoAuth",
                "cannot be combined",
            ),
            (
                with_display(with(&|c| c.vnc = Some(vnc("5900", Some("/p"), false)))),
                "vnc.listen",
                "IP:PORT",
            ),
            (
                with(&|c| c.vnc = Some(vnc("0.0.0.0:5900", Some("/p"), false))),
                "display",
                "must be set when vnc is",
            ),
            (
                with_display(with(&|c| {
                    c.vnc = Some(VncConfig {
                        max_fps: Some(0),
                        ..vnc("0.0.0.0:5900", Some("/p"), false)
                    })
                })),
                "vnc.maxFps",
                "use 1 to 60",
            ),
            (
                with_display(with(&|c| {
                    c.vnc = Some(VncConfig {
                        view_only_password_file: Some("/v".into()),
                        ..vnc("0.0.0.0:5900", None, true)
                    })
                })),
                "vnc.viewOnlyPasswordFile",
                "needs vnc.passwordFile",
            ),
        ];
        for (cfg, field, says) in cases {
            let e = cfg.validate().unwrap_err();
            assert_eq!(e.field, field, "{}", e.message);
            assert!(e.message.contains(says), "{field}: {}", e.message);
        }
    }

    #[test]
    fn memory_rounds_up_to_2mib() {
        let vm = LauncherConfig {
            memory: "1G".into(),
            ..LauncherConfig::new("/k")
        }
        .validate()
        .unwrap();
        assert_eq!(vm.memory % (2 << 20), 0);
        assert!(vm.memory >= 1_000_000_000 && vm.memory - 1_000_000_000 < 2 << 20);
    }
}
