//! The container images, as `images/build.sh` makes them: built twice into two folders they
//! have the same digests (CI's check that the images are reproducible); their binaries are
//! static and run from the unpacked image alone; the launcher's and the operator's stay small.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tests::chart::{output, root};

/// The most an image's unpacked files may weigh: the launcher's is pulled onto every node
/// that runs desktops, the operator's wherever it fails over to.
const LIMITS: [(&str, u64); 3] = [
    ("launcher", 10 << 20),
    ("operator", 30 << 20),
    ("pause", 1 << 20),
];

/// One image, as `digests.txt` lists it.
#[derive(Debug, Clone, PartialEq)]
struct Image {
    /// The archive's file name in the output folder.
    archive: String,
    /// `ghcr.io/verdant-vdi/verdant-<name>:<version>`.
    reference: String,
    /// The manifest's digest, the one a registry shows after a push.
    digest: String,
    /// The archive's size in bytes.
    archive_bytes: u64,
}

/// What this machine lacks to build and unpack the images, if anything.
fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("building images needs root (buildah's private store, chroot)".into());
    }
    for tool in ["buildah", "skopeo", "umoci"] {
        if !testkit::runs(tool, &["--version"]) {
            return Some(format!("{tool} is not installed (Debian package {tool})"));
        }
    }
    if !root()
        .join("broker/web/node_modules/@novnc/novnc/core/rfb.js")
        .exists()
    {
        return Some("noVNC is not installed: run `npm ci` in broker/web".into());
    }
    None
}

/// Runs `images/build.sh` into `out` and reads the digests it wrote there.
fn build(out: &Path) -> Vec<Image> {
    let started = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("images/build.sh"))
        .arg(out)
        .current_dir(root());
    // Without the test's Cargo variables, the script's release build is the shell's, reused.
    tests::bins::without_test_environment(&mut cmd);
    // Output inherited, not captured: a cold build takes minutes, and its progress shows.
    let status = cmd.status().expect("bash runs");
    assert!(
        status.success(),
        "images/build.sh {}: {status}",
        out.display()
    );
    say(format!(
        "images/build.sh {} took {:.0} s",
        out.display(),
        started.elapsed().as_secs_f64()
    ));
    let digests = std::fs::read_to_string(out.join("digests.txt")).expect("digests.txt");
    digests
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 5, "digests.txt: {line:?}");
            Image {
                archive: fields[0].into(),
                reference: fields[1].into(),
                digest: fields[2].into(),
                archive_bytes: fields[3].parse().expect("a size in bytes"),
            }
        })
        .collect()
}

/// Unpacks the image in `archive` under `dir` (skopeo to an OCI layout, umoci from there);
/// returns its root file system.
fn unpack(archive: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("the folder to unpack into");
    let layout = format!("{}:image", dir.join("layout").display());
    output(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("oci:{layout}")),
    );
    let bundle = dir.join("bundle");
    output(
        Command::new("umoci")
            .args(["unpack", "--image", &layout])
            .arg(&bundle),
    );
    bundle.join("rootfs")
}

/// Whether the ELF executable at `path` names a program interpreter (the dynamic loader), as
/// every dynamically linked one does and no static one, static-pie included, does.
fn asks_for_a_loader(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(path).expect("the binary reads");
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "{} is not a 64-bit little-endian ELF file",
        path.display()
    );
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (entry_size, entries) = (u16_at(0x36), u16_at(0x38));
    (0..entries).any(|i| {
        let at = phoff + i * entry_size;
        u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) == PT_INTERP
    })
}

/// Checks that verdant-broker, run from its image's `rootfs`, resolves a host name: statically
/// linked glibc looks names up itself, with no NSS module to load, as a pod with cluster DNS
/// and /etc/hosts mounted needs. The name is the apiserver's, in a kubeconfig (the broker's
/// first connection); a listener here stands in for it, and a connection to it means the
/// lookup worked.
fn resolves_host_names(rootfs: &Path) {
    use std::io::{ErrorKind, Read};
    use std::time::Duration;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let port = listener.local_addr().expect("its address").port();
    let host = "apiserver.verdant.test";
    std::fs::write(
        rootfs.join("etc/hosts"),
        format!("127.0.0.1 localhost {host}\n"),
    )
    .expect("/etc/hosts writes");
    // A CA, as every in-cluster client has (the service account's): without one, kube's
    // client would look for the system's roots, which the image leaves out.
    let ca = rcgen::generate_simple_self_signed(vec![host.to_owned()]).expect("a certificate");
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca.cert.pem());
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "clusters": [{"name": "c", "cluster": {
            "server": format!("https://{host}:{port}"),
            "certificate-authority-data": ca,
        }}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    });
    std::fs::write(rootfs.join("tmp/kubeconfig"), kubeconfig.to_string())
        .expect("the kubeconfig writes");
    let mut broker = Command::new("chroot")
        .arg(rootfs)
        .arg("/usr/bin/verdant-broker")
        .args(["--listen", "127.0.0.1:0", "--kubeconfig", "/tmp/kubeconfig"])
        .args(["--public-url", "https://vdi.verdant.test"])
        .args(["--oidc-issuer", "https://issuer.verdant.test/"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chroot runs");
    // Whether it connected, once it did or exited; `None` when it did neither in time.
    let connected = testkit::within_blocking(Duration::from_secs(30), || {
        // Whether it exited is asked first: a connection made just before is still accepted.
        let exited = broker.try_wait().expect("the broker's status").is_some();
        match listener.accept() {
            Ok(_) => Some(true),
            Err(e) if e.kind() == ErrorKind::WouldBlock => exited.then_some(false),
            Err(e) => panic!("accept: {e}"),
        }
    })
    .unwrap_or(false);
    let _ = broker.kill();
    let _ = broker.wait();
    let mut stderr = String::new();
    if let Some(mut pipe) = broker.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(
        connected,
        "verdant-broker in its image never connected to {host} \
         (127.0.0.1:{port} in /etc/hosts):\n{stderr}"
    );
}

/// The bytes of the regular files under `dir`.
fn file_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("the folder reads").flatten() {
        let meta = entry.metadata().expect("its metadata reads");
        if meta.is_dir() {
            total += file_bytes(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

/// Prints `line` on the process's stderr directly, which the test harness does not capture:
/// the figures show in CI's log even when the test passes.
fn say(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[test]
fn the_images_are_reproducible_static_and_small() {
    if let Some(why) = missing() {
        testkit::skip(testkit::IMAGES, format!("{why}: the images are not built"));
        return;
    }
    let version = env!("CARGO_PKG_VERSION");
    let scratch = tempfile::tempdir().expect("a temporary folder");
    let (first_out, second_out) = (scratch.path().join("first"), scratch.path().join("second"));
    let first = build(&first_out);
    // Into a fresh folder, with a fresh buildah store: only the Cargo build is shared.
    let second = build(&second_out);
    assert_eq!(
        first, second,
        "two builds of the same tree gave different images"
    );

    let names = ["operator", "launcher", "broker", "pause"];
    assert_eq!(first.len(), names.len(), "digests.txt lists {first:?}");
    for (image, name) in first.iter().zip(names) {
        let binary = format!("/usr/bin/verdant-{name}");
        let archive = first_out.join(&image.archive);
        assert_eq!(
            image.reference,
            format!("ghcr.io/verdant-vdi/verdant-{name}:{version}")
        );

        // The configuration: entrypoint, user and the OCI labels.
        let config: serde_json::Value = serde_json::from_str(&output(
            Command::new("skopeo")
                .args(["inspect", "--config"])
                .arg(format!("oci-archive:{}", archive.display())),
        ))
        .expect("skopeo prints the image's configuration as JSON");
        let config = &config["config"];
        assert_eq!(config["Entrypoint"], serde_json::json!([binary]), "{name}");
        let user = match name {
            "launcher" => "0:0",
            // Upstream's pause runs as 65535 too.
            "pause" => "65535:65535",
            _ => "65532:65532",
        };
        assert_eq!(config["User"], user, "{name}'s user");
        let labels = &config["Labels"];
        assert_eq!(
            labels["org.opencontainers.image.title"],
            format!("verdant-{name}")
        );
        assert_eq!(labels["org.opencontainers.image.version"], version);
        for label in ["description", "revision", "source", "licenses", "created"] {
            let value = &labels[format!("org.opencontainers.image.{label}")];
            assert!(
                value.as_str().is_some_and(|v| !v.is_empty()),
                "{name} lacks label {label}: {labels}"
            );
        }

        // The binary needs nothing but the image: no loader, no libraries, no shell.
        let unpacked = scratch.path().join(format!("unpacked-{name}"));
        let rootfs = unpack(&archive, &unpacked);
        let path = rootfs.join(&binary[1..]);
        assert!(
            !asks_for_a_loader(&path),
            "{binary} in {} is dynamically linked",
            image.archive
        );
        let printed = output(
            Command::new("chroot")
                .arg(&rootfs)
                .args([&binary, "--version"]),
        );
        assert_eq!(printed, format!("verdant-{name} {version}\n"));
        if name == "launcher" {
            // The hardened mode's device plugin ships in the launcher's image.
            let plugin = rootfs.join("usr/bin/verdant-kvm-plugin");
            assert!(!asks_for_a_loader(&plugin), "verdant-kvm-plugin is dynamic");
            let printed = output(
                Command::new("chroot")
                    .arg(&rootfs)
                    .args(["/usr/bin/verdant-kvm-plugin", "--version"]),
            );
            assert_eq!(printed, format!("verdant-kvm-plugin {version}\n"));
        }
        if name == "broker" {
            let rfb = rootfs.join("usr/share/verdant/novnc/core/rfb.js");
            assert!(rfb.is_file(), "the broker image has no noVNC: {rfb:?}");
        }

        let unpacked_bytes = file_bytes(&rootfs);
        if name == "broker" {
            resolves_host_names(&rootfs);
        }
        say(format!(
            "{:<45} {}  {:5.1} MiB archive, {:5.1} MiB unpacked",
            image.reference,
            image.digest,
            mib(image.archive_bytes),
            mib(unpacked_bytes)
        ));
        if let Some((_, limit)) = LIMITS.iter().find(|(n, _)| *n == name) {
            assert!(
                unpacked_bytes < *limit,
                "verdant-{name}'s image unpacks to {:.1} MiB, over its {:.0} MiB",
                mib(unpacked_bytes),
                mib(*limit)
            );
        }
    }
}
