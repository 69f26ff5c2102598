//! What `/proc` says about another process: the CPU time and memory that benchmarks and tests
//! measure. Each reader is an error when the process is gone or its file says something else
//! than expected, so a measurement of a dead process fails instead of reading as zero (which
//! would pass any "at most" target).

use std::io;
use std::time::Duration;

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The CPU time (user and system) process `pid` has used, from `/proc/PID/stat`, in clock
/// ticks (10 ms on Linux).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)?;
    // The fields after the command (which may hold spaces and parentheses): state is the
    // first; utime and stime (fields 14 and 15 of the whole line) the 12th and 13th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| invalid(format!("{path}: no command field")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid(format!("{path}: field {} is not a number", i + 3)))
    };
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf reads a configuration value; no memory of ours is involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return Err(io::Error::other("sysconf(_SC_CLK_TCK) failed"));
    }
    Ok(Duration::from_secs_f64(total as f64 / hz as f64))
}

/// A field of `/proc/PID/status` given in kB (`VmRSS`, `VmHWM`), in KiB.
pub fn memory_kib(pid: u32, field: &str) -> io::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)?;
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| invalid(format!("{path}: no {field} line")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_a_dead_one_is_an_error() {
        let me = std::process::id();
        assert!(memory_kib(me, "VmRSS").unwrap() > 0);
        assert!(cpu_time(me).is_ok());
        assert!(memory_kib(me, "VmNoSuchField").is_err());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // Reaped: its /proc entry is gone.
        assert_eq!(
            memory_kib(pid, "VmRSS").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(cpu_time(pid).is_err());
    }
}
