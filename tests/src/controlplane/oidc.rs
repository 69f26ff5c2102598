//! The tests' OpenID provider and the control plane's trust in it.
//!
//! `verdant-oidc-provider` (tests/controlplane/oidc, zitadel's example provider, built by
//! build.sh) serves HTTPS on a free loopback port with the apiserver's serving certificate, so
//! the control plane's CA vouches for it. Its issuer is `https://127.0.0.1:<port>`, without a
//! trailing slash, in the provider, in its tokens and in the apiserver's configuration alike. Its
//! one client is the confidential web client [`OIDC_CLIENT_ID`] with a random secret, allowed to
//! redirect to [`REDIRECT_GLOBS`]. Every ID token names the user in `sub` (the plain user name)
//! and, when scope `groups` was asked for, lists the user's groups in `groups`.
//!
//! kube-apiserver trusts the provider through `--authentication-config` (a structured
//! `AuthenticationConfiguration`, apiserver.config.k8s.io/v1): audience [`OIDC_CLIENT_ID`], user
//! name from `sub` and groups from `groups`, both without prefix. It fetches the provider's
//! discovery document and keys in the background, so `/readyz` can answer before it accepts
//! tokens; the harness waits until a token of [`PROBE_USER`] passes a TokenReview.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::{Deserialize, Serialize};

use super::{Binaries, ControlPlane, Error, Options, PORT_ATTEMPTS, Pki, Process, port_clash};

/// The id of the provider's one client, the audience of its ID tokens.
pub const OIDC_CLIENT_ID: &str = "verdant-broker";
/// Where the client may redirect to after a login: a callback on any loopback port.
pub const REDIRECT_GLOBS: [&str; 4] = [
    "http://127.0.0.1:*/auth/callback",
    "https://127.0.0.1:*/auth/callback",
    "http://localhost:*/auth/callback",
    "https://localhost:*/auth/callback",
];
/// A user the harness adds (random password, no groups) to check that the apiserver accepts
/// the provider's tokens before the control plane is handed out.
pub const PROBE_USER: &str = "verdant-readiness-probe";
/// The redirect URI of the probe's login; nothing listens there, and nothing needs to.
const PROBE_REDIRECT: &str = "http://127.0.0.1:1/auth/callback";
/// How long the provider may take to serve its discovery document.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the apiserver may take to accept the provider's tokens. It retries a failed
/// discovery every 10 s, so this leaves room for a few tries.
const TRUST_TIMEOUT: Duration = Duration::from_secs(60);

/// A user of the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OidcUser {
    /// The user name, also the `sub` of the user's tokens and the Kubernetes user name.
    #[serde(rename = "id")]
    pub name: String,
    /// The password the login form takes.
    pub password: String,
    /// The `groups` claim of the user's ID tokens.
    pub groups: Vec<String>,
}

impl OidcUser {
    /// A user `name` with `password` in `groups`.
    pub fn new(name: &str, password: &str, groups: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            password: password.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

/// The endpoints of the provider's discovery document that a login uses.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Discovery {
    pub(super) issuer: String,
    pub(super) authorization_endpoint: String,
    pub(super) token_endpoint: String,
}

/// A running `verdant-oidc-provider`. Dropping it stops the process.
pub struct OidcProvider {
    process: Process,
    issuer: String,
    client_secret: String,
    ca_pem: String,
    ca_path: PathBuf,
    pub(super) discovery: Discovery,
    probe_password: String,
    /// Every user, as the users file has them now.
    users: std::sync::Mutex<Vec<OidcUser>>,
    users_file: PathBuf,
}

impl OidcProvider {
    /// Starts the provider with `users` (and [`PROBE_USER`]) on a free port, serving the
    /// apiserver certificate of `pki`, its log in `dir`, and waits until it serves its discovery
    /// document.
    pub async fn start(
        binaries: &Binaries,
        dir: &Path,
        pki: &Pki,
        users: &[OidcUser],
    ) -> Result<Self, Error> {
        let probe_password = random_hex()?;
        let mut all = users.to_vec();
        all.push(OidcUser::new(PROBE_USER, &probe_password, &[]));
        let users_file = dir.join("oidc-users.json");
        let json = serde_json::to_string_pretty(&all).map_err(|e| Error::Oidc(e.to_string()))?;
        std::fs::write(&users_file, json).map_err(|e| Error::io(&users_file, e))?;
        let ca_pem =
            std::fs::read_to_string(&pki.ca_cert).map_err(|e| Error::io(&pki.ca_cert, e))?;
        let client_secret = random_hex()?;

        let mut attempt = 1;
        loop {
            let [port] =
                testkit::net::free_ports().map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
            let issuer = format!("https://127.0.0.1:{port}");
            let mut cmd = Command::new(&binaries.oidc_provider);
            cmd.args([
                format!("--addr=127.0.0.1:{port}"),
                format!("--issuer={issuer}"),
                format!("--tls-cert={}", pki.serving_cert.display()),
                format!("--tls-key={}", pki.serving_key.display()),
                format!("--users={}", users_file.display()),
                format!("--client-id={OIDC_CLIENT_ID}"),
                format!("--client-secret={client_secret}"),
            ]);
            cmd.args(REDIRECT_GLOBS.map(|glob| format!("--redirect-glob={glob}")));
            let log = dir.join("oidc-provider.log");
            let mut process = Process::spawn("verdant-oidc-provider", cmd, &log)?;
            match wait_discovery(&mut process, &issuer, &ca_pem).await {
                Ok(discovery) => {
                    return Ok(Self {
                        process,
                        issuer,
                        client_secret,
                        ca_pem,
                        ca_path: pki.ca_cert.clone(),
                        discovery,
                        probe_password,
                        users: std::sync::Mutex::new(all),
                        users_file,
                    });
                }
                Err(e) if attempt < PORT_ATTEMPTS && port_clash(&e) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The issuer, `https://127.0.0.1:<port>` (no trailing slash): the `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client id, [`OIDC_CLIENT_ID`].
    pub fn client_id(&self) -> &str {
        OIDC_CLIENT_ID
    }

    /// The client secret (random for each provider).
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// The CA (PEM) that signed the provider's serving certificate: the control plane's CA.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The file holding [`Self::ca_pem`].
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Rotates the provider's signing key (SIGHUP): ID tokens are signed with a new key from
    /// now on, and the key set lists only that one. Returns once the provider says so.
    pub async fn rotate_key(&self) -> Result<(), String> {
        self.signal(libc::SIGHUP, "rotated the signing key").await
    }

    /// Gives `user` these groups at the provider (the users file, read again on SIGUSR1): the
    /// tokens it issues from now on, refreshed ones included, say so. Returns once the
    /// provider has read them.
    pub async fn set_groups(&self, user: &str, groups: &[&str]) -> Result<(), String> {
        let json = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let entry = users
                .iter_mut()
                .find(|u| u.name == user)
                .ok_or_else(|| format!("no user {user} at the provider"))?;
            entry.groups = groups.iter().map(|g| (*g).to_owned()).collect();
            serde_json::to_string_pretty(&*users).map_err(|e| e.to_string())?
        };
        std::fs::write(&self.users_file, json)
            .map_err(|e| format!("{}: {e}", self.users_file.display()))?;
        self.signal(libc::SIGUSR1, "reloaded the users' groups")
            .await
    }

    /// Sends the provider `signal` and waits for one more log line with `done` in it.
    async fn signal(&self, signal: i32, done: &str) -> Result<(), String> {
        let seen = || self.process.log_tail(10_000).matches(done).count();
        let before = seen();
        let pid = self.process.pid().ok_or("the provider is not running")?;
        // SAFETY: kill(2) on our own child's pid with a valid signal; no memory is involved.
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            return Err(format!(
                "signal {signal}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let logged = || std::future::ready((seen() != before).then_some(()));
        testkit::within(Duration::from_secs(30), logged)
            .await
            .ok_or_else(|| {
                format!(
                    "the provider did not log {done:?}: {}",
                    self.process.log_tail(20)
                )
            })
    }

    /// The provider's process.
    pub fn process(&self) -> &Process {
        &self.process
    }

    pub(super) fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    /// An HTTP client as a fresh browser would be: its own cookie store, trusting only the
    /// control plane's CA, following no redirects (the login follows them itself).
    pub fn http_client(&self) -> Result<reqwest::Client, String> {
        http_client(&self.ca_pem)
    }

    /// kube-apiserver's `AuthenticationConfiguration` trusting this provider (JSON, which the
    /// apiserver reads as YAML).
    pub fn authentication_config(&self) -> String {
        let config = serde_json::json!({
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AuthenticationConfiguration",
            "jwt": [{
                "issuer": {
                    "url": self.issuer,
                    "audiences": [OIDC_CLIENT_ID],
                    "certificateAuthority": self.ca_pem,
                },
                "claimMappings": {
                    "username": {"claim": "sub", "prefix": ""},
                    "groups": {"claim": "groups", "prefix": ""},
                },
            }],
        });
        serde_json::to_string_pretty(&config).expect("a JSON value serializes")
    }

    /// Writes [`Self::authentication_config`] into `dir` and returns the apiserver flag naming
    /// it (which excludes every `--oidc-*` flag).
    pub(super) fn apiserver_args(&self, dir: &Path) -> Result<Vec<String>, Error> {
        let path = dir.join("authentication-config.json");
        std::fs::write(&path, self.authentication_config()).map_err(|e| Error::io(&path, e))?;
        Ok(vec![format!("--authentication-config={}", path.display())])
    }

    /// Waits until the apiserver behind `client` authenticates an ID token of [`PROBE_USER`].
    pub(super) async fn wait_trusted(
        &self,
        client: &Client,
        apiserver: &mut Process,
    ) -> Result<(), Error> {
        let tokens = self
            .login(PROBE_USER, &self.probe_password, PROBE_REDIRECT)
            .await
            .map_err(Error::Oidc)?;
        let start = Instant::now();
        loop {
            apiserver.check_running()?;
            let status = token_review(client, &tokens.id_token).await?;
            if status.authenticated == Some(true) {
                return Ok(());
            }
            if start.elapsed() > TRUST_TIMEOUT {
                return Err(Error::Oidc(format!(
                    "kube-apiserver did not accept ID tokens of {} within {} s (TokenReview error: {}); the end of its log:\n{}",
                    self.issuer,
                    TRUST_TIMEOUT.as_secs(),
                    status.error.unwrap_or_default(),
                    apiserver.log_tail(30)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer)
            .field("pid", &self.process.pid())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, the apiserver accepting ID tokens of a new OpenID
    /// provider with `users` (see [`ControlPlane::oidc`]).
    pub async fn start_with_oidc(users: Vec<OidcUser>) -> Result<Self, Error> {
        Self::start_with(Options {
            oidc: Some(users),
            ..Options::default()
        })
        .await
    }

    /// The OpenID provider, when started with [`Options::oidc`].
    pub fn oidc(&self) -> Option<&OidcProvider> {
        self.oidc.as_ref()
    }

    /// A client that authenticates with the bearer `token` (an ID token, say) and trusts this
    /// control plane's CA.
    pub async fn client_with_token(&self, token: &str) -> Result<Client, Error> {
        let path = self.dir.join("kubeconfig (token, in memory)");
        let kube_err = |message: String| Error::Kubeconfig {
            path: path.clone(),
            message,
        };
        let ca = std::fs::read(&self.pki.ca_cert).map_err(|e| Error::io(&self.pki.ca_cert, e))?;
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "verdant", "cluster": {
                "server": self.server,
                "certificate-authority-data": base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD, ca),
            }}],
            "users": [{"name": "bearer", "user": {"token": token}}],
            "contexts": [{"name": "verdant", "context": {"cluster": "verdant", "user": "bearer"}}],
            "current-context": "verdant",
        });
        let kubeconfig =
            Kubeconfig::from_yaml(&config.to_string()).map_err(|e| kube_err(e.to_string()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| kube_err(e.to_string()))?;
        Client::try_from(config).map_err(Error::Kube)
    }
}

/// Asks the apiserver behind `client` (which may create TokenReviews) who `token` is.
pub async fn token_review(client: &Client, token: &str) -> Result<TokenReviewStatus, Error> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(reviewed.status.unwrap_or_default())
}

fn http_client(ca_pem: &str) -> Result<reqwest::Client, String> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
        .map_err(|e| format!("the control plane's CA is not a PEM certificate: {e}"))?;
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Waits until the provider serves its discovery document for `issuer`.
async fn wait_discovery(
    process: &mut Process,
    issuer: &str,
    ca_pem: &str,
) -> Result<Discovery, Error> {
    let http = http_client(ca_pem).map_err(Error::Oidc)?;
    let url = format!("{issuer}/.well-known/openid-configuration");
    let start = Instant::now();
    loop {
        process.check_running()?;
        let last_error = match http.get(&url).send().await {
            Ok(response) if response.status().is_success() => {
                let discovery: Discovery = response
                    .json()
                    .await
                    .map_err(|e| Error::Oidc(format!("{url}: not a discovery document: {e}")))?;
                if discovery.issuer != issuer {
                    return Err(Error::Oidc(format!(
                        "{url} names issuer {:?}, not {issuer:?}",
                        discovery.issuer
                    )));
                }
                return Ok(discovery);
            }
            Ok(response) => format!("{url} answered {}", response.status()),
            Err(e) => format!("{url}: {e}"),
        };
        if start.elapsed() > START_TIMEOUT {
            return Err(Error::Oidc(format!(
                "verdant-oidc-provider did not serve within {} s ({last_error}); the end of its log:\n{}",
                START_TIMEOUT.as_secs(),
                process.log_tail(30)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 16 random bytes in hex.
fn random_hex() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Oidc(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
