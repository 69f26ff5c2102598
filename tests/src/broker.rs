//! `verdant-broker` for tests: a real broker process against a control plane that trusts the
//! tests' OpenID provider, running as its own user with exactly the RBAC rules of
//! `charts/verdant/rbac/`, and browserless users that log in through it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use reqwest::StatusCode;
use url::Url;

use crate::controlplane::{ControlPlane, Process};

/// The broker's own Kubernetes user in tests.
pub const BROKER_USER: &str = "verdant-broker";

/// Binds the broker's ClusterRole (cluster-wide), its desktop Role (in each of
/// `desktop_namespaces`) and session Role (in `session_ns`), with the chart's rules
/// (`charts/verdant/rbac/`), to `user`. Idempotent, so several brokers may share one user.
pub async fn grant(client: &Client, user: &str, session_ns: &str, desktop_namespaces: &[&str]) {
    use crate::chart::grant;
    grant(client, user, "verdant-broker", "broker", None).await;
    let session = Some(session_ns);
    grant(
        client,
        user,
        "verdant-broker-session",
        "broker-session",
        session,
    )
    .await;
    for &ns in desktop_namespaces {
        grant(client, user, "verdant-broker", "broker-desktops", Some(ns)).await;
    }
}

/// noVNC from `broker/web` (installed with `npm ci` there when missing).
pub fn novnc_dir() -> PathBuf {
    let web = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../broker/web"));
    let dir = web.join("node_modules/@novnc/novnc");
    if !dir.join("core/rfb.js").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(web)
            .status()
            .expect("npm runs (install Node.js and npm)");
        assert!(status.success(), "npm ci in {} failed", web.display());
    }
    dir
}

/// The portal's browser-test scripts (`tests/browser`), with playwright-core installed there
/// (`npm ci` when missing) and Chromium present; `None` after a loud skip when either cannot be
/// had.
pub fn browser_scripts() -> Option<&'static Path> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/browser"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        testkit::skip(
            testkit::VIEWERS,
            format!("no Chromium at {chromium} (Debian package chromium)"),
        );
        return None;
    }
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            testkit::skip(
                testkit::VIEWERS,
                "npm ci in tests/browser failed (Node.js and npm needed)",
            );
            return None;
        }
    }
    Some(dir)
}

/// A running `verdant-broker`. Dropping it stops it.
pub struct BrokerProcess {
    /// The process.
    pub process: Process,
    /// Its public URL, `https://127.0.0.1:<port>`.
    pub url: Url,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves `/metrics` (plain HTTP, apart from the users' listener).
    pub metrics: SocketAddr,
    /// The CA its certificate chains to.
    pub ca: PathBuf,
    /// Its log file.
    pub log: PathBuf,
}

impl BrokerProcess {
    /// Starts a broker on `port` as the user of `kubeconfig`, keeping its session key in
    /// namespace `session_ns` and serving desktops in `desktop_namespaces`; waits until
    /// `/readyz` answers 200.
    pub async fn start(
        cp: &ControlPlane,
        kubeconfig: &Path,
        session_ns: &str,
        desktop_namespaces: &[&str],
        port: u16,
        name: &str,
    ) -> Self {
        Self::start_with(
            cp,
            kubeconfig,
            session_ns,
            desktop_namespaces,
            port,
            name,
            &[],
        )
        .await
    }

    /// [`BrokerProcess::start`] with `extra` command-line arguments.
    pub async fn start_with(
        cp: &ControlPlane,
        kubeconfig: &Path,
        session_ns: &str,
        desktop_namespaces: &[&str],
        port: u16,
        name: &str,
        extra: &[&str],
    ) -> Self {
        let oidc = cp
            .oidc()
            .expect("a control plane started with the OpenID provider");
        let secret = cp.dir().join("oidc-client-secret");
        std::fs::write(&secret, oidc.client_secret()).expect("client secret file");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let url = Url::parse(&format!("https://{addr}")).expect("URL");
        let metrics = SocketAddr::from(([127, 0, 0, 1], testkit::net::free_port()));
        let log = cp.dir().join(format!("{name}.log"));
        let mut cmd = Command::new(crate::bins::binary("verdant-broker"));
        cmd.args([
            format!("--listen={addr}"),
            format!("--metrics-listen={metrics}"),
            format!("--public-url={url}"),
            format!("--tls-cert={}", cp.pki().serving_cert.display()),
            format!("--tls-key={}", cp.pki().serving_key.display()),
            format!("--oidc-issuer={}", oidc.issuer()),
            format!("--oidc-client-id={}", oidc.client_id()),
            format!("--oidc-client-secret-file={}", secret.display()),
            format!("--oidc-ca-file={}", oidc.ca_path().display()),
            format!("--session-secret={session_ns}/verdant-broker-session"),
            format!("--namespace={}", desktop_namespaces.join(",")),
            format!("--novnc={}", novnc_dir().display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            "--drain=3s".to_owned(),
        ]);
        cmd.args(extra);
        cmd.env("RUST_LOG", "info,broker=debug");
        let process = Process::spawn("verdant-broker", cmd, &log).expect("verdant-broker starts");
        let broker = Self {
            process,
            url,
            addr,
            metrics,
            ca: cp.pki().ca_cert.clone(),
            log,
        };
        broker.wait_ready().await;
        broker
    }

    async fn wait_ready(&self) {
        let http = self.http();
        let start = Instant::now();
        loop {
            let ready = http
                .get(self.at("/readyz"))
                .send()
                .await
                .map(|r| r.status());
            if matches!(ready, Ok(StatusCode::OK)) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the broker was not ready after 60 s ({ready:?}); its log:\n{}",
                crate::controlplane::log_tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The URL of `path` on this broker.
    pub fn at(&self, path: &str) -> Url {
        self.url.join(path).expect("URL")
    }

    /// The URL of its `/metrics`, on the metrics listener.
    pub fn metrics_url(&self) -> Url {
        Url::parse(&format!("http://{}/metrics", self.metrics)).expect("URL")
    }

    /// An HTTP client trusting this broker's CA, following no redirects, without cookies.
    pub fn http(&self) -> reqwest::Client {
        self.session().http
    }

    /// A browser without JavaScript: a cookie jar, this CA, no redirects followed (tests look
    /// at each).
    pub fn session(&self) -> Session {
        let pem = std::fs::read(&self.ca).expect("CA");
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .redirect(reqwest::redirect::Policy::none())
            // Under the broker's idle limit, so a reused connection is never one the broker
            // is closing at that instant (as browsers do).
            .pool_idle_timeout(Duration::from_secs(10))
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"))
            .build()
            .expect("HTTP client");
        Session { http, jar }
    }

    /// Logs `user` in through this broker with `http` (whose cookie jar then holds the
    /// session): the broker's `/login`, the provider's form, the broker's callback.
    pub async fn login(
        &self,
        cp: &ControlPlane,
        session: &Session,
        user: &str,
        password: &str,
    ) -> Result<(), String> {
        self.login_to(cp, session, user, password, None)
            .await
            .map(drop)
    }

    /// [`Self::login`], starting at `/login?next=<next>` (percent-encoded here): where the
    /// callback then sends the browser, resolved as a browser resolves a Location.
    pub async fn login_to(
        &self,
        cp: &ControlPlane,
        session: &Session,
        user: &str,
        password: &str,
        next: Option<&str>,
    ) -> Result<Url, String> {
        let http = &session.http;
        let oidc = cp.oidc().ok_or("no OpenID provider")?;
        let mut login = self.at("/login");
        if let Some(next) = next {
            login.query_pairs_mut().append_pair("next", next);
        }
        let start = http.get(login).send().await.map_err(|e| e.to_string())?;
        let authorize = location(&start)
            .ok_or_else(|| format!("/login answered {} without a Location", start.status()))?;
        let provider_http = oidc.http_client()?;
        let callback = oidc
            .authorize_as(
                &provider_http,
                authorize,
                user,
                password,
                &self.at("/auth/callback"),
            )
            .await?;
        let done = http.get(callback).send().await.map_err(|e| e.to_string())?;
        if !done.status().is_redirection() {
            let status = done.status();
            return Err(format!(
                "the callback answered {status}: {}",
                done.text().await.unwrap_or_default()
            ));
        }
        location(&done).ok_or_else(|| "the callback sent no Location".to_owned())
    }

    /// The session's CSRF token, as the portal page carries it in its forms.
    pub async fn csrf(&self, session: &Session) -> Result<String, String> {
        let page = session
            .http
            .get(self.at("/"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body = page.text().await.map_err(|e| e.to_string())?;
        let at = body
            .find("name=\"csrf\" value=\"")
            .ok_or("no CSRF field on the portal")?
            + 19;
        let end = body[at..].find('"').ok_or("unterminated CSRF field")?;
        Ok(body[at..at + end].to_owned())
    }

    /// Sends SIGKILL (a crash, no drain).
    pub fn kill(&mut self) {
        if let Some(pid) = self.process.pid() {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        self.process.stop();
    }
}

/// A browser session with a broker: an HTTP client and its cookie jar.
#[derive(Clone)]
pub struct Session {
    /// The client (cookies in `jar`).
    pub http: reqwest::Client,
    /// Its cookies.
    pub jar: Arc<reqwest::cookie::Jar>,
}

impl Session {
    /// The Cookie header this session sends to `url` (empty without cookies).
    pub fn cookie(&self, url: &Url) -> String {
        use reqwest::cookie::CookieStore;
        self.jar
            .cookies(url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// The Location of a redirect, resolved against its URL.
pub fn location(response: &reqwest::Response) -> Option<Url> {
    let value = response
        .headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()?;
    response.url().join(value).ok()
}
