//! What a node leaves on the machine outside its folder, and how it is removed: processes of its
//! cgroups and its containerd's shims, mounts under its folder, its cgroups, its bridge, the
//! kubelet's log links and libcni's cache entries. Each step works from what is on the machine,
//! so it also cleans up after a node whose test panicked half way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cgroup v1 controllers mounted here (the machine is v1 with a v2 hybrid mount).
const CGROUP_V1: &str = "/sys/fs/cgroup";

/// The controller hierarchies: every folder of /sys/fs/cgroup except the v2 `unified` mount.
fn hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(CGROUP_V1) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").is_file() && !p.ends_with("unified"))
        .collect();
    found.sort();
    found
}

/// Creates cgroup `name` under the root of every hierarchy, for the kubelet's `cgroupRoot`,
/// which must exist before it starts. cpuset needs its CPUs and memory nodes set before any
/// task may join, so they are copied from the root.
pub(super) fn create_cgroup(name: &str) -> std::io::Result<()> {
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(name);
        std::fs::create_dir_all(&dir)?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(value) = std::fs::read_to_string(hierarchy.join(file)) {
                std::fs::write(dir.join(file), value.trim())?;
            }
        }
    }
    Ok(())
}

/// Folders of the tree at `dir`, deepest first.
fn tree_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        all.push(d);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    all
}

/// Process ids in cgroup `name`'s tree, in any hierarchy.
pub(super) fn cgroup_pids(name: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = hierarchies()
        .iter()
        .flat_map(|h| tree_deepest_first(&h.join(name)))
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Kills every process of cgroup `name`'s tree and removes the tree, in every hierarchy.
pub(super) fn remove_cgroup(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = cgroup_pids(name);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        kill_all(&pids);
        std::thread::sleep(Duration::from_millis(50));
    }
    for hierarchy in hierarchies() {
        for dir in tree_deepest_first(&hierarchy.join(name)) {
            // A cgroup folder goes with rmdir once its tasks are gone; its files are not real.
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

fn kill_all(pids: &[u32]) {
    for &pid in pids {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill() takes any pid and signal number; a pid that has gone since it was
            // read fails with ESRCH, which is ignored.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Process ids whose command line mentions `needle` (containerd's shims name its socket).
pub(super) fn pids_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|&b| b == 0)
                    .any(|arg| arg.windows(needle.len()).any(|w| w == needle.as_bytes()))
            })
        })
        .collect()
}

/// Kills the processes whose command line mentions `needle`.
pub(super) fn kill_mentioning(needle: &str) {
    kill_all(&pids_mentioning(needle));
}

/// Mount points at or under `dir`, deepest first, from /proc/self/mountinfo.
pub(super) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        // Field 5 is the mount point, with spaces and the like octal-escaped.
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount at or under `dir` (network namespaces, container root file systems,
/// volumes, the kubelet's bind mount of its root folder).
pub(super) fn unmount_under(dir: &Path) {
    // A mount can hide another on the same point: go round until none is left.
    for _ in 0..5 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for mount in mounts {
            let Ok(path) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: umount2 with a NUL-terminated path that lives across the call.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Deletes network link `name` (the node's bridge); veths went with their namespaces.
pub(super) fn delete_link(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", name])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Removes the kubelet's `/var/log/containers` links into `dir` and libcni's cached results of
/// `network`: the two places outside the node's folder that the kubelet and containerd write.
pub(super) fn remove_host_files(dir: &Path, network: &str) {
    if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
        for entry in entries.flatten() {
            if std::fs::read_link(entry.path()).is_ok_and(|target| target.starts_with(dir)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/var/lib/cni/results") {
        let prefix = format!("{network}-");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/odd\04"), r"/odd\04");
    }

    #[test]
    fn trees_are_listed_deepest_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        let tree = tree_deepest_first(dir.path());
        assert_eq!(tree.first().unwrap(), &dir.path().join("a/b/c"));
        assert_eq!(tree.last().unwrap(), dir.path());
    }
}
