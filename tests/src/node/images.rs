//! Verdant's container images for a node that has no registry: `images/build.sh` builds them as
//! OCI archives, and each node's containerd imports them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::controlplane::Error;

/// The images of this checkout, as OCI archives with their references.
#[derive(Debug, Clone)]
pub struct Images {
    /// The folder holding the archives and `digests.txt`.
    pub dir: PathBuf,
    /// `(archive file, image reference)`, as `digests.txt` lists them.
    pub archives: Vec<(PathBuf, String)>,
}

/// One build per test process: every node of a test binary loads the same images.
static BUILT: Mutex<Option<Images>> = Mutex::new(None);

impl Images {
    /// Builds the images of this checkout with `images/build.sh` into `target/images` (the
    /// release build it needs is incremental, so a second call costs seconds), once per process.
    /// With `VERDANT_IMAGES_DIR` set, takes the archives already built there instead.
    pub fn build() -> Result<Self, Error> {
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(images) = built.as_ref() {
            return Ok(images.clone());
        }
        if let Some(dir) = std::env::var_os("VERDANT_IMAGES_DIR").filter(|d| !d.is_empty()) {
            let images = Self::read(Path::new(&dir))?;
            *built = Some(images.clone());
            return Ok(images);
        }
        let root = crate::chart::root();
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("images");
        eprintln!(
            "node: building Verdant's images with images/build.sh into {} (a cold static release \
             build takes 10-15 min)",
            dir.display()
        );
        // Test binaries run side by side (`verdant-dev test`'s lanes): flock(1) keeps two from
        // writing the same archives at once; the second then rebuilds from a warm build.
        let mut cmd = Command::new("flock");
        cmd.arg(dir.with_extension("lock"))
            .arg("bash")
            .arg(root.join("images/build.sh"))
            .arg(&dir);
        crate::bins::without_test_environment(&mut cmd);
        let status = cmd
            .status()
            .map_err(|e| Error::io(&root.join("images/build.sh"), e))?;
        if !status.success() {
            return Err(Error::Node(format!(
                "images/build.sh {status}; its output is above"
            )));
        }
        let images = Self::read(&dir)?;
        *built = Some(images.clone());
        Ok(images)
    }

    /// The images `images/build.sh` wrote into `dir` earlier, from its `digests.txt`.
    pub fn read(dir: &Path) -> Result<Self, Error> {
        let list = dir.join("digests.txt");
        let text = std::fs::read_to_string(&list).map_err(|e| Error::io(&list, e))?;
        let archives = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let mut fields = l.split_whitespace();
                match (fields.next(), fields.next()) {
                    (Some(file), Some(reference)) => Ok((dir.join(file), reference.to_owned())),
                    _ => Err(Error::Node(format!("{}: bad line {l:?}", list.display()))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            dir: dir.to_owned(),
            archives,
        })
    }

    /// The reference of image `verdant-<name>` (`launcher`, `operator`, `broker`, `pause`).
    pub fn reference(&self, name: &str) -> Result<&str, Error> {
        let file = format!("verdant-{name}.oci.tar");
        self.archives
            .iter()
            .find(|(archive, _)| archive.file_name().is_some_and(|f| f == file.as_str()))
            .map(|(_, reference)| reference.as_str())
            .ok_or_else(|| Error::Node(format!("{} lists no {file}", self.dir.display())))
    }
}

/// The reference of the tests' client image ([`client_image`]).
pub const CLIENT_IMAGE: &str = "ghcr.io/verdant-vdi/verdant-test-client:test";

/// A test-only image holding Debian's static busybox (`wget`, `nc`, a shell), for pods that
/// play another workload of the cluster: an attacker reaching a launcher's ports. Built once
/// per test process with buildah (as `images/build.sh` builds Verdant's) into `dir`; the OCI
/// archive's path. Never part of a release.
pub fn client_image(dir: &Path) -> Result<PathBuf, Error> {
    static CLIENT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(archive) = built.as_ref() {
        return Ok(archive.clone());
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        return Err(Error::Node(
            "the tests' client image needs /bin/busybox (Debian package busybox-static)".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let archive = dir.join("verdant-test-client.oci.tar");
    let script = format!(
        r#"set -eu
work=$(mktemp -d)
trap 'buildah --root "$work/s" --runroot "$work/r" --storage-driver vfs rm --all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bah() {{ buildah --root "$work/s" --runroot "$work/r" --storage-driver vfs "$@"; }}
c=$(bah from --quiet scratch)
bah copy --quiet --chown 0:0 "$c" /bin/busybox /bin/busybox
bah config --os linux --arch amd64 --user 65532:65532 --entrypoint '["/bin/busybox"]' "$c"
rm -f "{archive}"
bah commit --quiet --format oci "$c" "oci-archive:{archive}:{CLIENT_IMAGE}" >/dev/null
"#,
        archive = archive.display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .map_err(|e| Error::Node(format!("bash for the client image: {e}")))?;
    if !out.status.success() {
        return Err(Error::Node(format!(
            "building the tests' client image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    *built = Some(archive.clone());
    Ok(archive)
}
