//! Finds the control-plane binaries that `tests/controlplane/build.sh` builds, building them
//! first when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::Error;

/// The pinned versions, read from the same file the build script reads.
const VERSIONS_ENV: &str = include_str!("../../controlplane/versions.env");

/// The pinned version of each tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// `k8s.io/kubernetes`, e.g. `v1.36.3`.
    pub kubernetes: String,
    /// `go.etcd.io/etcd/server/v3`, e.g. `v3.6.16`.
    pub etcd: String,
    /// `helm.sh/helm/v3`.
    pub helm: String,
    /// `github.com/yannh/kubeconform`.
    pub kubeconform: String,
    /// `github.com/zitadel/oidc/v3`, which the tests' OpenID provider wraps.
    pub zitadel_oidc: String,
    /// `sigs.k8s.io/cli-utils`, whose kstatus the tests' `verdant-kstatus` wraps.
    pub cli_utils: String,
}

impl Versions {
    /// The versions pinned in `tests/controlplane/versions.env`.
    pub fn pinned() -> Self {
        Self::parse(VERSIONS_ENV)
    }

    fn parse(text: &str) -> Self {
        let get = |key: &str| {
            text.lines()
                .filter_map(|line| line.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        Self {
            kubernetes: get("KUBERNETES_VERSION"),
            etcd: get("ETCD_VERSION"),
            helm: get("HELM_VERSION"),
            kubeconform: get("KUBECONFORM_VERSION"),
            zitadel_oidc: get("ZITADEL_OIDC_VERSION"),
            cli_utils: get("CLI_UTILS_VERSION"),
        }
    }
}

/// Verdant's cache folder: `$VERDANT_CACHE_DIR`, else `$XDG_CACHE_HOME/verdant`, else
/// `~/.cache/verdant` (the same rule as build.sh).
pub fn cache_dir() -> PathBuf {
    let env = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("VERDANT_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("verdant")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("verdant")))
        .unwrap_or_else(|| PathBuf::from("/tmp/verdant-cache"))
}

/// Paths of the built tools.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
    /// kube-scheduler (for a node).
    pub kube_scheduler: PathBuf,
    /// kubelet (for a node).
    pub kubelet: PathBuf,
    /// kube-proxy, built with the node's parts.
    pub kube_proxy: PathBuf,
    /// kubectl, the same version as the apiserver.
    pub kubectl: PathBuf,
    /// helm.
    pub helm: PathBuf,
    /// kubeconform.
    pub kubeconform: PathBuf,
    /// verdant-oidc-provider, the tests' OpenID provider (see [`super::OidcProvider`]).
    pub oidc_provider: PathBuf,
    /// verdant-kstatus: kstatus (sigs.k8s.io/cli-utils) on objects as JSON lines, see
    /// tests/controlplane/kstatus.
    pub kstatus: PathBuf,
}

impl Binaries {
    /// Where build.sh puts each pinned tool; they may not exist yet.
    pub fn expected() -> Self {
        let v = Versions::pinned();
        let dir = cache_dir().join("controlplane");
        let k8s = dir.join(format!("kubernetes-{}", v.kubernetes));
        Self {
            etcd: dir.join(format!("etcd-{}", v.etcd)).join("etcd"),
            kube_apiserver: k8s.join("kube-apiserver"),
            kube_controller_manager: k8s.join("kube-controller-manager"),
            kube_scheduler: k8s.join("kube-scheduler"),
            kubelet: k8s.join("kubelet"),
            kube_proxy: k8s.join("kube-proxy"),
            kubectl: k8s.join("kubectl"),
            helm: dir.join(format!("helm-{}", v.helm)).join("helm"),
            kubeconform: dir
                .join(format!("kubeconform-{}", v.kubeconform))
                .join("kubeconform"),
            oidc_provider: dir
                .join(format!("oidc-provider-{}", v.zitadel_oidc))
                .join("verdant-oidc-provider"),
            kstatus: dir
                .join(format!("kstatus-{}", v.cli_utils))
                .join("verdant-kstatus"),
        }
    }

    /// The pinned tools. When one is missing, runs build.sh (its progress goes straight to the
    /// terminal; a cold build takes minutes) and looks again.
    pub fn locate() -> Result<Self, Error> {
        let bins = Self::expected();
        if bins.missing().is_none() {
            return Ok(bins);
        }
        // One build at a time in this process (and across processes, by run_build_script's
        // lock); build.sh itself skips what another run finished.
        let _one_build = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if bins.missing().is_some() {
            run_build_script()?;
        }
        match bins.missing() {
            None => Ok(bins),
            Some(path) => Err(Error::MissingBinary(path.to_owned())),
        }
    }

    fn missing(&self) -> Option<&Path> {
        [
            &self.etcd,
            &self.kube_apiserver,
            &self.kube_controller_manager,
            &self.kube_scheduler,
            &self.kubelet,
            &self.kube_proxy,
            &self.kubectl,
            &self.helm,
            &self.kubeconform,
            &self.oidc_provider,
            &self.kstatus,
        ]
        .into_iter()
        .find(|p| !p.is_file())
        .map(PathBuf::as_path)
    }
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The build script, where this crate was compiled from.
const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/controlplane/build.sh");

fn run_build_script() -> Result<(), Error> {
    let script = Path::new(BUILD_SCRIPT);
    eprintln!(
        "control-plane tools missing: running {BUILD_SCRIPT} (a cold build takes several minutes)"
    );
    // Test binaries run side by side (`verdant-dev test`'s lanes): flock(1) lets one process
    // build while the others wait, and build.sh then skips what it finished.
    let lock = std::env::temp_dir().join("verdant-controlplane-build.lock");
    let status = Command::new("flock")
        .arg(&lock)
        .arg("bash")
        .arg(script)
        .status()
        .map_err(|e| Error::io(script, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::BuildFailed(status.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_versions_are_all_set() {
        let v = Versions::pinned();
        assert!(v.kubernetes.starts_with("v1.36.") || v.kubernetes.starts_with("v1.37."));
        assert!(v.etcd.starts_with("v3.6."), "{v:?}");
        assert!(!v.helm.is_empty() && !v.kubeconform.is_empty(), "{v:?}");
        assert!(v.zitadel_oidc.starts_with("v3."), "{v:?}");
    }

    #[test]
    fn parse_ignores_comments_and_spaces() {
        let v = Versions::parse("# c\nKUBERNETES_VERSION = v1.37.2\nETCD_VERSION=v3.6.1\n");
        assert_eq!(v.kubernetes, "v1.37.2");
        assert_eq!(v.etcd, "v3.6.1");
        assert_eq!(v.helm, "");
    }
}
