//! A child process that is stopped, and reaped, when its handle drops.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Error;

/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running control-plane process whose output goes to a log file.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr written to `log`.
    ///
    /// The kernel kills the process when the thread that started it ends, so a test (or a
    /// `verdant-dev` environment) that is killed outright leaves nothing running. Start it from a
    /// thread that outlives it: a test's own thread, or the main thread.
    pub fn spawn(name: &'static str, command: Command, log: &Path) -> Result<Self, Error> {
        let out = File::create(log).map_err(|e| Error::io(log, e))?;
        Self::spawn_into(name, command, log, out)
    }

    /// Like [`Process::spawn`], but appends to `log`: for a process started again.
    pub fn spawn_appending(
        name: &'static str,
        command: Command,
        log: &Path,
    ) -> Result<Self, Error> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(log, e))?;
        Self::spawn_into(name, command, log, out)
    }

    fn spawn_into(
        name: &'static str,
        mut command: Command,
        log: &Path,
        out: File,
    ) -> Result<Self, Error> {
        let err = out.try_clone().map_err(|e| Error::io(log, e))?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe; it touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let program = command.get_program().to_owned();
        let child = command
            .spawn()
            .map_err(|e| Error::io(Path::new(&program), e))?;
        Ok(Self {
            name,
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails with the end of the log if the process has already exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.exited("was stopped"));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(&status.to_string())),
            Err(e) => Err(Error::io(&self.log, e)),
        }
    }

    fn exited(&self, status: &str) -> Error {
        Error::Exited {
            name: self.name,
            status: status.to_owned(),
            log_tail: log_tail(&self.log, 30),
        }
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Sends SIGTERM, waits for the process to exit, and kills it after a grace period.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill() with a pid we own (our unreaped child) and a valid signal number.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Whether `pid` is a live process: it exists and is not a zombie (state `Z` in
/// `/proc/<pid>/stat`).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}
