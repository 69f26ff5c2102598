//! Opening boot files: a file that must stay inside a directory (a host directory an
//! administrator allowed, mounted whole into the launcher pod) is opened relative to it with
//! `openat2(RESOLVE_BENEATH)`, so no `..` and no symbolic link can lead out of it, to the
//! node's other files.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use crate::Error;

/// A boot file, open, and the path it was named by (for messages).
#[derive(Debug)]
pub struct BootFile {
    /// As named in the config.
    pub path: PathBuf,
    /// Open for reading.
    pub file: File,
}

/// Opens `path` (the config's `what`), staying inside `root` when one is given.
pub fn open(what: &'static str, path: &Path, root: Option<&Path>) -> Result<BootFile, Error> {
    let file = match root {
        None => File::open(path),
        Some(root) => open_beneath(root, path),
    }
    .map_err(|e| Error::file(what, path, e))?;
    Ok(BootFile {
        path: path.to_owned(),
        file,
    })
}

/// Opens `path` for reading as a path inside `root`, refusing any way out of it.
fn open_beneath(root: &Path, path: &Path) -> std::io::Result<File> {
    use std::io::{Error, ErrorKind};
    let inside = path
        .strip_prefix(root)
        .map_err(|_| Error::new(ErrorKind::PermissionDenied, "not inside its root"))?;
    let dir = File::open(root)?;
    let name = std::ffi::CString::new(inside.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: open_how is a plain C struct; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads `name` (NUL-terminated, alive for the call) and `how` (of the
    // size passed); `dir` is an open directory descriptor for the call's duration.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EXDEV) => Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "it leads out of {} (a `..` or a symbolic link), which the administrator's list of host directories does not allow",
                    root.display()
                ),
            ),
            _ => e,
        });
    }
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_inside_opens_and_no_way_out_does() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("allowed");
        std::fs::create_dir_all(root.join("kernels")).unwrap();
        std::fs::write(root.join("kernels/vmlinuz"), b"kernel").unwrap();
        std::fs::write(dir.path().join("secret.pem"), b"node key").unwrap();
        // A link inside to a file inside is fine.
        std::os::unix::fs::symlink("vmlinuz", root.join("kernels/current")).unwrap();
        // Links out, relative and absolute, and a `..`.
        std::os::unix::fs::symlink("../../secret.pem", root.join("kernels/escape")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.pem"), root.join("absolute")).unwrap();
        let ok = |rel: &str| open("kernel", &root.join(rel), Some(&root));
        use std::io::Read;
        let mut text = String::new();
        ok("kernels/current")
            .unwrap()
            .file
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "kernel");
        for out in ["kernels/escape", "absolute", "kernels/../../secret.pem"] {
            let err = ok(out).unwrap_err().to_string();
            assert!(err.contains("kernel"), "{out}: {err}");
            assert!(!err.contains("node key"));
        }
        let err = ok("kernels/escape").unwrap_err().to_string();
        assert!(err.contains("leads out of"), "{err}");
        // A path not under its root at all.
        assert!(open("kernel", &dir.path().join("secret.pem"), Some(&root)).is_err());
        // Without a root, as before.
        assert!(open("kernel", &dir.path().join("secret.pem"), None).is_ok());
    }
}
