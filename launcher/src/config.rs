//! The launcher's configuration: one serde type, read from a file or one JSON argument, or built
//! from `run` flags. The operator's pod builder writes the same type.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::arch::layout::CMDLINE_MAX_SIZE;

/// Most vCPUs a VM may have (the CRD's bound too).
pub const MAX_CPUS: u32 = 64;
/// Least guest memory: the kernel loads at 1 MiB and needs room above it.
pub const MIN_MEMORY: u64 = 2 << 20;
/// Most guest memory (the CRD's bound too).
pub const MAX_MEMORY: u64 = 1 << 40;
/// Guest memory is rounded up to a multiple of this.
pub const MEMORY_GRANULE: u64 = 2 << 20;

/// How to run one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LauncherConfig {
    /// The kernel: an ELF vmlinux (PVH or 64-bit entry) or a bzImage.
    pub kernel: PathBuf,
    /// The initrd, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    #[serde(default)]
    pub cmdline: String,
    /// Number of vCPUs, 1 to 64.
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// Guest memory as a quantity (`512Mi`, `4Gi`, `1G`, or bytes), 2Mi to 1Ti.
    #[serde(default = "default_memory")]
    pub memory: String,
    /// Where to serve `/healthz`, `/readyz` and `/console` (e.g. `0.0.0.0:8080`); none if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The guest display, a linear 32-bit framebuffer; none if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<DisplayConfig>,
    /// The VNC server that shows the display; none if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc: Option<VncConfig>,
    /// Seconds the guest gets to shut down after SIGTERM before it is stopped hard, 0 to 3600.
    /// Keep it below the pod's `terminationGracePeriodSeconds`.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
}

/// The VNC server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VncConfig {
    /// Where to listen, e.g. `0.0.0.0:5900`.
    pub listen: String,
    /// A file holding the password viewers must give (VNC authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// No authentication at all: for local development only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_no_auth: bool,
    /// Frames per second a viewer gets at most, 1 to 60 (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fps: Option<u32>,
}

/// A checked VNC configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncSettings {
    /// Where to listen.
    pub addr: std::net::SocketAddr,
    /// The password file; none means no authentication.
    pub password_file: Option<PathBuf>,
    /// Frames per second a viewer gets at most.
    pub max_fps: u32,
}

/// The size of the guest display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisplayConfig {
    /// Width in pixels, 16 to 7680.
    pub width: u32,
    /// Height in pixels, 16 to 4320.
    pub height: u32,
}

impl DisplayConfig {
    /// Parses `WIDTHxHEIGHT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (w, h) = text.split_once(['x', 'X']).ok_or_else(|| {
            format!("{text:?} is not a size: write WIDTHxHEIGHT, such as 1280x800")
        })?;
        let number = |s: &str| {
            s.trim().parse::<u32>().map_err(|_| {
                format!("{text:?} is not a size: write WIDTHxHEIGHT, such as 1280x800")
            })
        };
        Ok(Self {
            width: number(w)?,
            height: number(h)?,
        })
    }
}

fn default_grace() -> u64 {
    20
}

/// The longest shutdown grace period accepted.
pub const MAX_GRACE_SECONDS: u64 = 3600;

fn default_cpus() -> u32 {
    1
}

fn default_memory() -> String {
    "512Mi".to_owned()
}

/// A checked configuration, with memory in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// The kernel.
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: Option<PathBuf>,
    /// The command line.
    pub cmdline: String,
    /// vCPUs.
    pub cpus: u8,
    /// Guest memory in bytes, a multiple of 2 MiB.
    pub memory: u64,
    /// Where to serve the HTTP endpoints.
    pub http: Option<std::net::SocketAddr>,
    /// How long the guest gets to shut down when asked.
    pub shutdown_grace: std::time::Duration,
    /// The guest display.
    pub display: Option<DisplayConfig>,
    /// The VNC server.
    pub vnc: Option<VncSettings>,
}

impl LauncherConfig {
    /// A config for `kernel` with every other field at its default.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initrd: None,
            cmdline: String::new(),
            cpus: default_cpus(),
            memory: default_memory(),
            http: None,
            display: None,
            vnc: None,
            shutdown_grace_seconds: default_grace(),
        }
    }

    /// Parses JSON, naming the field of any error.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::Config {
                field: if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                message: inner.to_string(),
            }
        })
    }

    /// Checks every field and resolves the memory size.
    pub fn validate(&self) -> Result<VmConfig, Error> {
        let bad = |field: &str, message: String| Error::Config {
            field: field.into(),
            message,
        };
        if self.kernel.as_os_str().is_empty() {
            return Err(bad("kernel", "must name the kernel image file".into()));
        }
        if self
            .initrd
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(bad("initrd", "must name a file, or be left out".into()));
        }
        let cpus = u8::try_from(self.cpus)
            .ok()
            .filter(|&c| (1..=MAX_CPUS as u8).contains(&c))
            .ok_or_else(|| {
                bad(
                    "cpus",
                    format!("{} is not allowed: use 1 to {MAX_CPUS}", self.cpus),
                )
            })?;
        let memory = parse_size(&self.memory).map_err(|m| bad("memory", m))?;
        if memory < MIN_MEMORY {
            return Err(bad(
                "memory",
                format!("{:?} is below the 2Mi minimum", self.memory),
            ));
        }
        if memory > MAX_MEMORY {
            return Err(bad(
                "memory",
                format!("{:?} is above the 1Ti maximum", self.memory),
            ));
        }
        if self.cmdline.len() >= CMDLINE_MAX_SIZE {
            return Err(bad(
                "cmdline",
                format!(
                    "{} bytes is longer than the {} bytes x86 kernels accept",
                    self.cmdline.len(),
                    CMDLINE_MAX_SIZE - 1
                ),
            ));
        }
        if self.cmdline.contains('\0') {
            return Err(bad("cmdline", "must not contain NUL bytes".into()));
        }
        if self.shutdown_grace_seconds > MAX_GRACE_SECONDS {
            return Err(bad(
                "shutdownGraceSeconds",
                format!(
                    "{} is not allowed: use 0 to {MAX_GRACE_SECONDS}",
                    self.shutdown_grace_seconds
                ),
            ));
        }
        if let Some(display) = self.display
            && !((16..=7680).contains(&display.width) && (16..=4320).contains(&display.height))
        {
            return Err(bad(
                "display",
                format!(
                    "{}x{} is not allowed: use 16x16 to 7680x4320",
                    display.width, display.height
                ),
            ));
        }
        let vnc = match &self.vnc {
            None => None,
            Some(vnc) => {
                let addr = vnc.listen.parse().map_err(|_| {
                    bad(
                        "vnc.listen",
                        format!(
                            "{:?} is not an address: write IP:PORT, such as 0.0.0.0:5900",
                            vnc.listen
                        ),
                    )
                })?;
                if self.display.is_none() {
                    return Err(bad(
                        "display",
                        "must be set when vnc is: the VNC server shows the display".into(),
                    ));
                }
                match (&vnc.password_file, vnc.insecure_no_auth) {
                    (Some(_), true) => {
                        return Err(bad(
                            "vnc.insecureNoAuth",
                            "cannot be combined with vnc.passwordFile".into(),
                        ));
                    }
                    (None, false) => {
                        return Err(bad(
                            "vnc.passwordFile",
                            "must name the password file (or set vnc.insecureNoAuth for local development)".into(),
                        ));
                    }
                    (file, _) => {
                        let max_fps = vnc.max_fps.unwrap_or(30);
                        if !(1..=60).contains(&max_fps) {
                            return Err(bad(
                                "vnc.maxFps",
                                format!("{max_fps} is not allowed: use 1 to 60"),
                            ));
                        }
                        Some(VncSettings {
                            addr,
                            password_file: file.clone(),
                            max_fps,
                        })
                    }
                }
            }
        };
        let http = match &self.http {
            None => None,
            Some(addr) => Some(addr.parse().map_err(|_| {
                bad(
                    "http",
                    format!("{addr:?} is not an address: write IP:PORT, such as 0.0.0.0:8080"),
                )
            })?),
        };
        Ok(VmConfig {
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline.clone(),
            cpus,
            memory: memory.div_ceil(MEMORY_GRANULE) * MEMORY_GRANULE,
            http,
            shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_seconds),
            display: self.display,
            vnc,
        })
    }
}

/// Parses a size: a whole number with an optional Kubernetes suffix (`Ki`, `Mi`, `Gi`, `Ti`
/// binary; `K`/`k`, `M`, `G`, `T` decimal).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a size: write a number with an optional suffix, such as 512Mi or 4Gi"
        ));
    }
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{other:?} is not a size suffix: use Ki, Mi, Gi, Ti (or K, M, G, T)"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: Error) -> (String, String) {
        match err {
            Error::Config { field, message } => (field, message),
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn minimal_json_takes_defaults() {
        let cfg = LauncherConfig::from_json(r#"{"kernel": "/k"}"#).unwrap();
        assert_eq!(cfg, LauncherConfig::new("/k"));
        let vm = cfg.validate().unwrap();
        assert_eq!((vm.cpus, vm.memory), (1, 512 << 20));
    }

    #[test]
    fn json_errors_name_the_field() {
        let cases = [
            (r#"{}"#, "(top level)", "missing field `kernel`"),
            (r#"{"kernel": "/k", "cpus": "two"}"#, "cpus", "invalid type"),
            (r#"{"kernel": "/k", "cpus": -1}"#, "cpus", "invalid value"),
            (
                r#"{"kernel": "/k", "memroy": "1Gi"}"#,
                "memroy",
                "unknown field",
            ),
            (r#"{"kernel": 7}"#, "kernel", "invalid type"),
        ];
        for (json, field, says) in cases {
            let (f, m) = field_of(LauncherConfig::from_json(json).unwrap_err());
            assert_eq!(f, field, "{json}: {m}");
            assert!(m.contains(says), "{json}: {m}");
        }
    }

    fn vnc(listen: &str, password_file: Option<&str>, insecure_no_auth: bool) -> VncConfig {
        VncConfig {
            listen: listen.into(),
            password_file: password_file.map(Into::into),
            insecure_no_auth,
            max_fps: None,
        }
    }

    #[test]
    fn validation_errors_name_the_field_and_the_bound() {
        let base = LauncherConfig::new("/k");
        let cases: Vec<(LauncherConfig, &str, &str)> = vec![
            (
                LauncherConfig {
                    cpus: 0,
                    ..base.clone()
                },
                "cpus",
                "use 1 to 64",
            ),
            (
                LauncherConfig {
                    cpus: 65,
                    ..base.clone()
                },
                "cpus",
                "use 1 to 64",
            ),
            (
                LauncherConfig {
                    cpus: 300,
                    ..base.clone()
                },
                "cpus",
                "use 1 to 64",
            ),
            (
                LauncherConfig {
                    memory: "1Mi".into(),
                    ..base.clone()
                },
                "memory",
                "2Mi minimum",
            ),
            (
                LauncherConfig {
                    memory: "2Ti".into(),
                    ..base.clone()
                },
                "memory",
                "1Ti maximum",
            ),
            (
                LauncherConfig {
                    memory: "lots".into(),
                    ..base.clone()
                },
                "memory",
                "not a size",
            ),
            (
                LauncherConfig {
                    memory: "4GB".into(),
                    ..base.clone()
                },
                "memory",
                "not a size suffix",
            ),
            (
                LauncherConfig {
                    memory: "99999999999999999999Ti".into(),
                    ..base.clone()
                },
                "memory",
                "too large",
            ),
            (
                LauncherConfig {
                    kernel: "".into(),
                    ..base.clone()
                },
                "kernel",
                "must name",
            ),
            (
                LauncherConfig {
                    initrd: Some("".into()),
                    ..base.clone()
                },
                "initrd",
                "must name a file",
            ),
            (
                LauncherConfig {
                    cmdline: "x".repeat(2048),
                    ..base.clone()
                },
                "cmdline",
                "2047 bytes",
            ),
            (
                LauncherConfig {
                    cmdline: "a\0b".into(),
                    ..base.clone()
                },
                "cmdline",
                "NUL",
            ),
            (
                LauncherConfig {
                    shutdown_grace_seconds: 3601,
                    ..base.clone()
                },
                "shutdownGraceSeconds",
                "0 to 3600",
            ),
            (
                LauncherConfig {
                    display: Some(DisplayConfig {
                        width: 8000,
                        height: 600,
                    }),
                    ..base.clone()
                },
                "display",
                "16x16 to 7680x4320",
            ),
            (
                LauncherConfig {
                    vnc: Some(vnc("0.0.0.0:5900", None, false)),
                    display: Some(DisplayConfig {
                        width: 640,
                        height: 480,
                    }),
                    ..base.clone()
                },
                "vnc.passwordFile",
                "must name",
            ),
            (
                LauncherConfig {
                    vnc: Some(vnc("0.0.0.0:5900", Some("/p"), true)),
                    display: Some(DisplayConfig {
                        width: 640,
                        height: 480,
                    }),
                    ..base.clone()
                },
                "vnc.insecureNoAuth",
                "cannot be combined",
            ),
            (
                LauncherConfig {
                    vnc: Some(vnc("5900", Some("/p"), false)),
                    display: Some(DisplayConfig {
                        width: 640,
                        height: 480,
                    }),
                    ..base.clone()
                },
                "vnc.listen",
                "IP:PORT",
            ),
            (
                LauncherConfig {
                    vnc: Some(vnc("0.0.0.0:5900", Some("/p"), false)),
                    ..base.clone()
                },
                "display",
                "must be set when vnc is",
            ),
            (
                LauncherConfig {
                    vnc: Some(VncConfig {
                        max_fps: Some(0),
                        ..vnc("0.0.0.0:5900", Some("/p"), false)
                    }),
                    display: Some(DisplayConfig {
                        width: 640,
                        height: 480,
                    }),
                    ..base.clone()
                },
                "vnc.maxFps",
                "use 1 to 60",
            ),
        ];
        for (cfg, field, says) in cases {
            let (f, m) = field_of(cfg.validate().unwrap_err());
            assert_eq!(f, field, "{m}");
            assert!(m.contains(says), "{field}: {m}");
        }
    }

    #[test]
    fn sizes_follow_kubernetes_suffixes_and_round_to_2mib() {
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        let vm = LauncherConfig {
            memory: "1G".into(),
            ..LauncherConfig::new("/k")
        }
        .validate()
        .unwrap();
        assert_eq!(vm.memory % (2 << 20), 0);
        assert!(vm.memory >= 1_000_000_000 && vm.memory - 1_000_000_000 < 2 << 20);
    }

    #[test]
    fn display_sizes_parse() {
        assert_eq!(
            DisplayConfig::parse("1280x800"),
            Ok(DisplayConfig {
                width: 1280,
                height: 800
            })
        );
        assert!(
            DisplayConfig::parse("1280")
                .unwrap_err()
                .contains("WIDTHxHEIGHT")
        );
        assert!(DisplayConfig::parse("ax b").is_err());
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = LauncherConfig {
            initrd: Some("/i".into()),
            cmdline: "console=ttyS0".into(),
            cpus: 4,
            memory: "4Gi".into(),
            ..LauncherConfig::new("/k")
        };
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(LauncherConfig::from_json(&json).unwrap(), cfg);
    }
}
