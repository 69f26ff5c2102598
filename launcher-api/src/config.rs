//! The launcher's configuration: one serde type, read from a file or one JSON argument, or built
//! from `run` flags. The operator's pod builder writes the same type; [`LauncherConfig::validate`]
//! checks it into a [`VmConfig`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::limits::{DEFAULT_SHUTDOWN_GRACE_SECONDS, TERMINATION_GRACE_MARGIN_SECONDS};

/// A field of the config that is not acceptable: which one, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Config {field}: {message}")]
pub struct ConfigError {
    /// The field, as written in the config (e.g. `memory`, `vnc.listen`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// An error of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How to run one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LauncherConfig {
    /// The kernel: an ELF vmlinux (PVH or 64-bit entry) or a bzImage.
    pub kernel: PathBuf,
    /// The initrd, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    /// A directory `kernel` must stay inside: it is opened relative to it, and a `..` or a
    /// symbolic link that leads out of it is refused (a host directory an administrator
    /// allowed, mounted whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_root: Option<PathBuf>,
    /// The same for `initrd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_root: Option<PathBuf>,
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
    /// Keep it below the pod's `terminationGracePeriodSeconds`
    /// ([`LauncherConfig::termination_grace_period_seconds`]).
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
    /// A file holding a second password, which gives the picture alone: no keys, no pointer,
    /// no clipboard (shadowing). Needs `passwordFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_only_password_file: Option<PathBuf>,
    /// No authentication at all: for local development only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_no_auth: bool,
    /// Frames per second a viewer gets at most, 1 to 60 (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fps: Option<u32>,
}

impl VncConfig {
    /// Listening on `listen`, with no password file yet and every other field at its default.
    pub fn new(listen: impl Into<String>) -> Self {
        Self {
            listen: listen.into(),
            password_file: None,
            view_only_password_file: None,
            insecure_no_auth: false,
            max_fps: None,
        }
    }
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
        let bad = || format!("{text:?} is not a size: write WIDTHxHEIGHT, such as 1280x800");
        let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
        let number = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
        Ok(Self {
            width: number(w)?,
            height: number(h)?,
        })
    }
}

impl std::str::FromStr for DisplayConfig {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

fn default_grace() -> u64 {
    DEFAULT_SHUTDOWN_GRACE_SECONDS
}

fn default_cpus() -> u32 {
    1
}

fn default_memory() -> String {
    "512Mi".to_owned()
}

impl LauncherConfig {
    /// A config for `kernel` with every other field at its default.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initrd: None,
            kernel_root: None,
            initrd_root: None,
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
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::new(
                if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                inner.to_string(),
            )
        })
    }

    /// The `terminationGracePeriodSeconds` a pod running this config needs: the guest's
    /// shutdown grace, and time for the launcher to stop it hard after that.
    pub fn termination_grace_period_seconds(&self) -> u64 {
        self.shutdown_grace_seconds + TERMINATION_GRACE_MARGIN_SECONDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_json_takes_defaults() {
        let cfg = LauncherConfig::from_json(r#"{"kernel": "/k"}"#).unwrap();
        assert_eq!(cfg, LauncherConfig::new("/k"));
        let vm = cfg.validate().unwrap();
        assert_eq!((vm.cpus, vm.memory), (1, 512 << 20));
        assert_eq!(cfg.termination_grace_period_seconds(), 30);
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
            // A config asking for something this launcher cannot provide is refused, not
            // silently run without it.
            (
                r#"{"kernel": "/k", "disks": [{"name": "root"}]}"#,
                "disks",
                "unknown field",
            ),
        ];
        for (json, field, says) in cases {
            let e = LauncherConfig::from_json(json).unwrap_err();
            assert_eq!(e.field, field, "{json}: {}", e.message);
            assert!(e.message.contains(says), "{json}: {}", e.message);
        }
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
