//! The files of one environment, under its state folder.

use std::path::{Path, PathBuf};

use tests::controlplane;

pub fn default_state_dir() -> PathBuf {
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
pub struct State {
    /// The state folder.
    pub dir: PathBuf,
}

impl State {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("verdant-dev.pid")
    }
    pub fn ready_file(&self) -> PathBuf {
        self.dir.join("ready")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("verdant-dev.log")
    }
    pub fn controlplane_dir(&self) -> PathBuf {
        self.dir.join("controlplane")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.controlplane_dir().join("kubeconfig")
    }
    pub fn demo_password_file(&self) -> PathBuf {
        self.dir.join("demo-vnc-password")
    }
    pub fn demo_passwd_file(&self) -> PathBuf {
        self.dir.join("demo-vnc.passwd")
    }
    /// The portal's URL, when the whole product runs.
    pub fn portal(&self) -> Option<String> {
        self.ready_line(3)
    }
    /// Where the demo desktop's VNC server listens, if it runs.
    pub fn demo_address(&self) -> Option<String> {
        self.ready_line(2)
    }
    /// Line `n` (from 0) of the ready file, unless empty (see `write_ready`).
    fn ready_line(&self, n: usize) -> Option<String> {
        let ready = std::fs::read_to_string(self.ready_file()).ok()?;
        ready
            .lines()
            .nth(n)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    }

    /// The pid of the background process, if it runs.
    pub fn running_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }

    pub fn clear(&self) {
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

/// Writes `text` to `path` through a temporary file, so readers see all of it or nothing.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Whether process `pid` lives.
pub fn alive(pid: i32) -> bool {
    u32::try_from(pid).is_ok_and(controlplane::process_alive)
}
