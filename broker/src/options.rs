//! The broker's command line (clap): every flag has an environment variable, for the chart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the broker runs.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Address to listen on.
    #[arg(long, env = "VERDANT_BROKER_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address to serve `/metrics` on, apart from the users' listener (which an Ingress
    /// exposes), plain HTTP; `off` serves none.
    #[arg(
        long,
        env = "VERDANT_BROKER_METRICS_LISTEN",
        default_value = "0.0.0.0:9090",
        value_parser = parse_optional_addr
    )]
    pub metrics_listen: OptionalAddr,
    /// The URL users reach the broker at. Its origin is the only one a WebSocket or a form may
    /// come from; the OpenID callback is `<url>/auth/callback`.
    #[arg(long, env = "VERDANT_BROKER_URL", value_parser = parse_public_url)]
    pub public_url: url::Url,
    /// TLS certificate chain (PEM). Without it the broker serves plain HTTP, for a
    /// TLS-terminating Ingress in front of it.
    #[arg(long, env = "VERDANT_BROKER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "VERDANT_BROKER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The OpenID issuer URL, exactly as the provider and the apiserver's authentication config
    /// spell it (a trailing slash matters).
    #[arg(long, env = "VERDANT_OIDC_ISSUER", value_parser = parse_issuer)]
    pub oidc_issuer: String,
    /// The broker's OpenID client id (also the ID token audience the apiserver expects).
    #[arg(long, env = "VERDANT_OIDC_CLIENT_ID", default_value = "verdant-broker")]
    pub oidc_client_id: String,
    /// A file holding the OpenID client secret (a mounted Secret). Without it, the broker is
    /// a public client and relies on PKCE alone.
    #[arg(long, env = "VERDANT_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// CA bundle (PEM) to trust for the OpenID provider, besides the system's.
    #[arg(long, env = "VERDANT_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<PathBuf>,
    /// Scopes to ask for (`openid` is always asked for); the groups claim needs its scope.
    #[arg(
        long,
        env = "VERDANT_OIDC_SCOPES",
        value_delimiter = ',',
        default_value = "openid,profile,email,groups"
    )]
    pub oidc_scopes: Vec<String>,
    /// The Secret (`namespace/name`) with the session key, key `session-key`; created with a
    /// random key if missing, so every replica shares it.
    #[arg(
        long,
        env = "VERDANT_BROKER_SESSION_SECRET",
        default_value = "verdant-system/verdant-broker-session",
        value_parser = parse_secret_ref
    )]
    pub session_secret: (String, String),
    /// How long a login lasts.
    #[arg(long, env = "VERDANT_BROKER_SESSION_TTL", default_value = "8h", value_parser = parse_ttl)]
    pub session_ttl: Duration,
    /// How old a session's groups may grow before the broker reads them again from the
    /// provider with the login's refresh token (where the provider gives one: scope
    /// `offline_access`). A user the provider no longer knows, or whose grant it revoked, is
    /// logged out everywhere; one who left a group loses what it allowed, open viewers
    /// included.
    #[arg(long, env = "VERDANT_BROKER_GROUPS_REFRESH", default_value = "5m", value_parser = parse_ttl)]
    pub groups_refresh: Duration,
    /// The noVNC folder (the npm package's root, with `core/`), served at `/novnc/`.
    #[arg(
        long,
        env = "VERDANT_BROKER_NOVNC",
        default_value = "/usr/share/verdant/novnc"
    )]
    pub novnc: PathBuf,
    /// How long to wait for viewers to go after telling them to reconnect on shutdown.
    #[arg(long, env = "VERDANT_BROKER_DRAIN", default_value = "5s", value_parser = parse_ttl)]
    pub drain: Duration,
    /// A namespace where desktops live (repeat it, or separate with commas): the broker
    /// serves desktops and pools there only, and needs its Role there (desktops, pools, their
    /// launcher pods, display Secrets and assignment claims). Without it, every namespace,
    /// which needs those rights cluster-wide.
    #[arg(
        long = "namespace",
        env = "VERDANT_BROKER_NAMESPACES",
        value_delimiter = ',',
        value_parser = parse_namespace
    )]
    pub namespaces: Vec<String>,
    /// A kubeconfig file; in a pod, the service account is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

impl Options {
    /// The public origin (`scheme://host[:port]`), for Origin checks.
    pub fn origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    /// The OpenID redirect URI.
    pub fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.origin())
    }

    /// Whether the broker serves desktops in `namespace` (its `--namespace` list, or every
    /// namespace without one).
    pub fn serves(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }

    /// Whether cookies are Secure (the public URL is HTTPS).
    pub fn secure(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

/// An address, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(text: &str) -> Result<OptionalAddr, String> {
    if text == "off" {
        return Ok(OptionalAddr(None));
    }
    text.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|e| format!("{e}: give IP:PORT, such as 0.0.0.0:9090, or off"))
}

fn parse_public_url(text: &str) -> Result<url::Url, String> {
    let url =
        url::Url::parse(text).map_err(|e| format!("{e}; give e.g. https://vdi.example.com"))?;
    match url.scheme() {
        "https" | "http" if url.host().is_some() => Ok(url),
        _ => Err("give an http(s) URL with a host, e.g. https://vdi.example.com".into()),
    }
}

fn parse_issuer(text: &str) -> Result<String, String> {
    let url =
        url::Url::parse(text).map_err(|e| format!("{e}; give e.g. https://idp.example.com"))?;
    if url.scheme() != "https"
        && url.host_str() != Some("127.0.0.1")
        && url.host_str() != Some("localhost")
    {
        return Err("an issuer must be https (plain http only on localhost)".into());
    }
    Ok(text.to_owned())
}

fn parse_namespace(text: &str) -> Result<String, String> {
    if crate::names::is_label(text) {
        Ok(text.to_owned())
    } else {
        Err("give a namespace name (lowercase letters, digits and '-'), e.g. team-a".into())
    }
}

fn parse_secret_ref(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if crate::names::is_label(ns) && crate::names::is_subdomain(name) => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err("give namespace/name, e.g. verdant-system/verdant-broker-session".into()),
    }
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let d = assignment::session::parse_duration(text)?;
    if d.is_zero() {
        return Err("give a positive duration, e.g. 8h".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    #[test]
    fn flags_parse_and_bad_values_name_the_flag() {
        let ok = Cli::try_parse_from([
            "b",
            "--public-url=https://vdi.example.com/",
            "--oidc-issuer=https://idp.example.com/",
        ])
        .unwrap();
        assert_eq!(ok.options.origin(), "https://vdi.example.com");
        assert_eq!(
            ok.options.redirect_uri(),
            "https://vdi.example.com/auth/callback"
        );
        assert!(ok.options.secure());
        assert_eq!(
            ok.options.session_secret,
            ("verdant-system".into(), "verdant-broker-session".into())
        );
        assert!(ok.options.serves("anything"), "no list: every namespace");
        let listed = Cli::try_parse_from([
            "b",
            "--public-url=https://vdi.example.com/",
            "--oidc-issuer=https://idp.example.com/",
            "--namespace=team-a,team-b",
            "--namespace=team-c",
        ])
        .unwrap();
        assert_eq!(listed.options.namespaces, ["team-a", "team-b", "team-c"]);
        assert!(listed.options.serves("team-c") && !listed.options.serves("kube-system"));
        for (flag, value) in [
            ("--public-url", "vdi.example.com"),
            ("--session-secret", "no-slash"),
            ("--session-ttl", "0s"),
            ("--listen", "nowhere"),
            ("--namespace", "Team_A"),
        ] {
            let mut args = vec![
                "b".to_owned(),
                "--public-url=https://vdi.example.com/".into(),
                "--oidc-issuer=https://idp.example.com/".into(),
            ];
            args.retain(|a| !a.starts_with(flag));
            args.push(format!("{flag}={value}"));
            let err = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{flag}: {err}");
        }
        let err = Cli::try_parse_from([
            "b",
            "--public-url=https://x/",
            "--oidc-issuer=https://y/",
            "--tls-cert=/c",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
