//! End-to-end tests on a real node: a control plane with a node ([`crate::node`]), Verdant's
//! images loaded into it, the operator running the launcher image, and the demo guest on the
//! host for Desktops to boot from a hostPath. Also the third-party viewer the tests look with.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;

use crate::controlplane::Options as CpOptions;
use crate::env::Env;
use testkit::eventually;

/// How long a real node may take to start a desktop's pod and boot its guest.
pub const LIMIT: Duration = Duration::from_secs(180);

/// An [`Env`] whose pods a real node runs.
pub struct NodeEnv {
    /// The control plane (with the node), the operator and the test namespace.
    pub env: Env,
    /// The demo guest on the host, for a Desktop's hostPath kernel.
    pub kernel: PathBuf,
}

impl NodeEnv {
    /// Starts it in namespace `ns`, or says loudly why it cannot run here and returns `None`
    /// (a failure where the parts are required, as in CI).
    pub async fn start(ns: &str) -> Option<Self> {
        if !demo_guest_runs() {
            return None;
        }
        if let Some(why) = crate::node::missing() {
            testkit::skip(testkit::NODE, why);
            return None;
        }
        let env = Env::start_with_options(
            ns,
            CpOptions {
                node: true,
                ..CpOptions::default()
            },
        )
        .await;
        // On the host, where the node's kubelet mounts it from: the control plane's folder.
        let kernel = crate::env::boot_dir(&env.cp).join("demo.elf");
        std::fs::write(&kernel, launcher::demo::DEMO_GUEST).expect("the demo guest written");
        Some(Self { env, kernel })
    }

    /// A Desktop named `name` running the demo guest, as YAML for `kubectl apply`.
    pub fn demo_desktop(&self, name: &str) -> String {
        format!(
            "apiVersion: vdi.verdant.dev/v1alpha1
kind: Desktop
metadata:
  name: {name}
  namespace: {ns}
spec:
{spec}",
            ns = self.env.ns,
            spec = self.demo_spec(2)
        )
    }

    /// The spec of a desktop running the demo guest, as YAML indented by `indent` spaces.
    pub fn demo_spec(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        format!(
            "{pad}resources: {{cpus: 1, memory: 128Mi}}\n{pad}boot:\n{pad}  kernel: {{hostPath: {}}}\n{pad}display: {{width: 1280, height: 800}}\n",
            self.kernel.display()
        )
    }

    /// `kubectl apply -f -` of `yaml`; panics with kubectl's output when it fails.
    pub fn apply(&self, yaml: &str) {
        let mut child = self
            .env
            .cp
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("kubectl's stdin");
            stdin.write_all(yaml.as_bytes()).expect("YAML to kubectl");
        }
        let out = child.wait_with_output().expect("kubectl finishes");
        assert!(out.status.success(), "kubectl apply: {}", text(&out));
    }

    /// `kubectl` with `args` against the test's namespace: its output, stdout then stderr.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.env
            .cp
            .kubectl()
            .args(["--namespace", &self.env.ns])
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// The launcher pod of Desktop `desktop`, once it exists.
    pub async fn pod_of(&self, desktop: &str) -> Pod {
        let desktops = self.env.desktops();
        let pods = self.env.pods();
        eventually(&format!("a launcher pod for {desktop}"), LIMIT, || async {
            let name = desktops.get(desktop).await.ok()?.status?.pod_name?;
            pods.get_opt(&name).await.ok()?
        })
        .await
    }

    /// The display password of Desktop `desktop`, from its Secret.
    pub async fn display_password(&self, desktop: &str) -> Vec<u8> {
        let secrets: Api<Secret> = Api::namespaced(self.env.client.clone(), &self.env.ns);
        let secret = secrets
            .get(&crds::labels::display_secret_name(desktop))
            .await
            .expect("the display Secret");
        secret
            .data
            .and_then(|mut d| d.remove(crds::labels::DISPLAY_PASSWORD_KEY))
            .expect("the Secret holds the password")
            .0
    }
}

/// Why the demo guest cannot run here, if it cannot: `/dev/kvm` is not usable, or the
/// launcher was built without it.
pub fn demo_guest_missing() -> Option<String> {
    if let Err(why) = testkit::kvm_usable() {
        return Some(why);
    }
    launcher::demo::DEMO_GUEST
        .is_empty()
        .then(|| "the launcher was built without its demo guest (no gcc/ld)".to_owned())
}

/// Whether the demo guest can run here; when not, says so loudly (a failure where KVM is
/// required, as in CI).
pub fn demo_guest_runs() -> bool {
    match demo_guest_missing() {
        None => true,
        Some(why) => {
            testkit::skip(testkit::KVM, why);
            false
        }
    }
}

/// A capture of a VNC desktop by vncsnapshot (a viewer we did not write), decoded: RGB bytes,
/// width and height. `Ok(None)` when vncsnapshot is not installed.
pub fn vncsnapshot(
    addr: std::net::SocketAddr,
    password: &[u8],
    dir: &Path,
) -> Result<Option<(Vec<u8>, u16, u16)>, String> {
    let passwd = dir.join("vnc.passwd");
    std::fs::write(&passwd, rfb::auth::obfuscated_password_file(password))
        .map_err(|e| e.to_string())?;
    let out = dir.join("capture.jpg");
    let result = Command::new("vncsnapshot")
        .args(["-quiet", "-quality", "100", "-nojpeg", "-encodings", "raw"])
        .arg("-passwd")
        .arg(&passwd)
        .arg(format!("{}::{}", addr.ip(), addr.port()))
        .arg(&out)
        .output();
    let result = match result {
        Ok(result) => result,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if !result.status.success() {
        return Err(format!("vncsnapshot failed: {}", text(&result)));
    }
    let file = std::fs::File::open(&out).map_err(|e| e.to_string())?;
    let mut decoder = jpeg_decoder::Decoder::new(std::io::BufReader::new(file));
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let info = decoder.info().ok_or("no JPEG info")?;
    Ok(Some((pixels, info.width, info.height)))
}

/// Whether RGB `actual` is within JPEG's error of `expected` (0xRRGGBB).
pub fn close(actual: &[u8], expected: u32) -> bool {
    let want = expected.to_be_bytes();
    actual
        .iter()
        .zip(&want[1..])
        .all(|(&a, &w)| a.abs_diff(w) <= 12)
}

/// A command's stdout and stderr, for messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
