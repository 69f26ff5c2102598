//! What every request shares: the clients, caches, keys and metrics of one broker process.
//! Imports only leaf modules; the routes import it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use assignment::Assigner;
use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use crds::{Desktop, DesktopPool};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::activity::Activity;
use crate::cache::Cache;
use crate::identity::access::Access;
use crate::identity::limits::RateLimiter;
use crate::identity::oidc::{Oidc, http_client};
use crate::identity::provider::{Provider, Registration};
use crate::identity::review::Reviewer;
use crate::identity::session::Cookies;
use crate::identity::sessions::Sessions;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::relays::Relays;
use crate::token::ConnectTokens;

/// Rates at which callers may make the broker ask the apiserver something.
pub struct Limits {
    /// TokenReviews of bearer tokens not reviewed lately, per client address.
    pub reviews_per_client: RateLimiter<std::net::IpAddr>,
    /// The same, over all clients: many addresses still make a bounded number.
    pub reviews: RateLimiter<()>,
    /// Lookups of desktops that are not the caller's own (SubjectAccessReviews, GETs), per
    /// user.
    pub lookups_per_user: RateLimiter<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            reviews_per_client: RateLimiter::new(5, 20),
            reviews: RateLimiter::new(50, 100),
            lookups_per_user: RateLimiter::new(10, 30),
        }
    }
}

/// The key in the session Secret.
pub const SESSION_KEY: &str = "session-key";
/// Bytes of a generated session key (cookie encryption and signing keys, 32 each).
const SESSION_KEY_LEN: usize = 64;

/// Why the broker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No usable Kubernetes configuration.
    #[error("Kubernetes client: {0}")]
    Client(String),
    /// The session Secret is unusable.
    #[error("session Secret {namespace}/{name}: {message}")]
    SessionSecret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The OpenID client secret file cannot be read.
    #[error("--oidc-client-secret-file {path}: {message}")]
    ClientSecret {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Setting up the OpenID client failed.
    #[error("{0}")]
    Oidc(#[from] crate::identity::oidc::OidcError),
}

/// One broker process.
pub struct Broker {
    /// Its command line.
    pub options: Options,
    /// Kubernetes, as the broker's own service account.
    pub client: Client,
    /// Encrypts session cookies.
    pub key: Key,
    /// Seals what the broker keeps in readable objects (refresh tokens in session Leases).
    pub sealer: crate::identity::sealed::Sealer,
    /// Cookie settings.
    pub cookies: Cookies,
    /// Connect tokens.
    pub tokens: ConnectTokens,
    /// TokenReviews.
    pub reviewer: Reviewer,
    /// SubjectAccessReviews.
    pub access: Access,
    /// The OpenID provider, discovered and kept current.
    pub provider: Arc<Provider>,
    /// Every Desktop the broker serves, as last seen.
    pub desktops: Cache<Desktop>,
    /// Every DesktopPool the broker serves, as last seen.
    pub pools: Cache<DesktopPool>,
    assigners: Mutex<HashMap<String, Arc<Assigner>>>,
    /// Session state writer.
    pub activity: Arc<Activity>,
    /// The viewer relays open here, ended when their desktop changes hands.
    pub relays: Arc<Relays>,
    /// The server-side sessions (in the session Secret's namespace).
    pub sessions: Arc<Sessions>,
    /// What callers may cost the apiserver.
    pub limits: Limits,
    /// Metrics.
    pub metrics: Metrics,
    /// This process, in assignment claims (the pod name, else host and pid).
    pub holder: String,
    /// Turns true on shutdown; relays tell their browsers to reconnect.
    pub shutdown: watch::Sender<bool>,
}

/// The router's state: the broker, in a type of this crate so the cookie jar can find its key.
#[derive(Clone)]
pub struct App(pub Arc<Broker>);

impl FromRef<App> for Key {
    fn from_ref(app: &App) -> Self {
        app.0.key.clone()
    }
}

/// A Kubernetes client for `kubeconfig`, else the inferred configuration (in-cluster).
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<Client, StartError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let err = |e: &dyn std::fmt::Display| StartError::Client(e.to_string());
    let config = match kubeconfig {
        None => kube::Config::infer().await.map_err(|e| err(&e))?,
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| StartError::Client(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| err(&e))?
        }
    };
    Client::try_from(config).map_err(|e| err(&e))
}

/// The shared session key from its Secret, creating the Secret with a random key when it is
/// missing (of replicas racing to create it, one wins and the others read it).
async fn session_key(client: &Client, namespace: &str, name: &str) -> Result<Vec<u8>, StartError> {
    let fail = |message: String| StartError::SessionSecret {
        namespace: namespace.into(),
        name: name.into(),
        message,
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        match secrets.get_opt(name).await {
            Ok(Some(secret)) => {
                let key = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(SESSION_KEY))
                    .map(|b| b.0.clone())
                    .ok_or_else(|| fail(format!("has no `{SESSION_KEY}` key; delete it to have one made, or add {SESSION_LEN_TEXT}")))?;
                if key.len() < SESSION_KEY_LEN {
                    return Err(fail(format!(
                        "`{SESSION_KEY}` has {} bytes; give {SESSION_LEN_TEXT}",
                        key.len()
                    )));
                }
                return Ok(key);
            }
            Ok(None) => {}
            Err(e) => return Err(fail(format!("cannot read it: {e}"))),
        }
        let mut key = vec![0u8; SESSION_KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| fail(format!("no randomness: {e}")))?;
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.metadata.labels = Some(
            [(
                "app.kubernetes.io/managed-by".to_owned(),
                "verdant-broker".to_owned(),
            )]
            .into(),
        );
        secret.data = Some([(SESSION_KEY.to_owned(), ByteString(key.clone()))].into());
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(%namespace, %name, "created the session key Secret");
                return Ok(key);
            }
            // Another replica made it first: read theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(fail(format!("cannot create it: {e}"))),
        }
    }
    Err(fail("it keeps changing; try again".into()))
}

/// The cookie key (64 bytes: signing and encryption halves), derived from the shared secret
/// apart from the connect-token key.
fn cookie_key(secret: &[u8]) -> Key {
    let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, secret);
    Key::from(ring::hmac::sign(&derive, b"verdant-broker session-cookie v1").as_ref())
}

const SESSION_LEN_TEXT: &str = "at least 64 random bytes (e.g. `head -c 64 /dev/urandom`)";

impl Broker {
    /// Connects to Kubernetes, reads (or makes) the session key, starts the watches and the
    /// OpenID discovery (retried until it works; `/readyz` waits for it).
    pub async fn start(options: Options) -> Result<Arc<Self>, StartError> {
        let client = kube_client(options.kubeconfig.as_deref()).await?;
        let (ns, name) = &options.session_secret;
        let secret = session_key(&client, ns, name).await?;
        let client_secret = match &options.oidc_client_secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map(|s| s.trim().to_owned())
                    .map_err(|e| StartError::ClientSecret {
                        path: path.clone(),
                        message: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let http = http_client(options.oidc_ca_file.as_deref())?;
        let relays = Arc::new(Relays::default());
        let watched = Arc::clone(&relays);
        let desktops = Cache::watch(
            &client,
            &options.namespaces,
            "Desktops",
            move |desktop: &Desktop, deleted| {
                if deleted {
                    watched.desktop_deleted(desktop);
                } else {
                    watched.desktop_changed(desktop);
                }
            },
        );
        let ended = Arc::clone(&relays);
        let sessions = Sessions::watch(client.clone(), ns, move |lease| {
            let closed = ended.session_ended(lease);
            if closed > 0 {
                tracing::info!(session = %lease, viewers = closed, "session ended: its viewers closed");
            }
        });
        let pools = Cache::watch(
            &client,
            &options.namespaces,
            "DesktopPools",
            |_: &DesktopPool, _| {},
        );
        let activity = Arc::new(Activity::new(client.clone()));
        tokio::spawn(Arc::clone(&activity).run());
        let broker = Arc::new(Self {
            cookies: Cookies {
                secure: options.secure(),
                ttl: options.session_ttl,
            },
            key: cookie_key(&secret),
            sealer: crate::identity::sealed::Sealer::new(&secret),
            tokens: ConnectTokens::new(&secret),
            reviewer: Reviewer::new(client.clone()),
            access: Access::new(client.clone()),
            provider: Arc::new(Provider::new(Registration {
                issuer: options.oidc_issuer.clone(),
                client_id: options.oidc_client_id.clone(),
                client_secret,
                redirect: options.redirect_uri(),
                scopes: options.oidc_scopes.clone(),
                http,
            })),
            desktops,
            pools,
            assigners: Mutex::new(HashMap::new()),
            activity,
            relays,
            sessions,
            limits: Limits::default(),
            metrics: Metrics::default(),
            shutdown: watch::channel(false).0,
            holder: std::env::var("HOSTNAME")
                .map(|h| format!("{h}-{}", std::process::id()))
                .unwrap_or_else(|_| format!("verdant-broker-{}", std::process::id())),
            options,
            client,
        });
        tokio::spawn(Arc::clone(&broker.provider).run());
        Ok(broker)
    }

    /// The provider, as last discovered.
    pub fn oidc(&self) -> Option<Arc<Oidc>> {
        self.provider.current()
    }

    /// Whether the broker can serve users: provider discovered, desktops and pools listed.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.oidc().is_none() {
            return Err("the OpenID provider is not discovered yet");
        }
        self.listed()
            .map_err(|_| "desktops and pools are not listed yet")
    }

    /// Whether the desktop and pool caches have their first list (before that, a desktop
    /// missing from them may just not be listed yet).
    pub fn listed(&self) -> Result<(), String> {
        if self.desktops.listed() && self.pools.listed() {
            Ok(())
        } else {
            Err("The broker is starting; try again in a moment.".into())
        }
    }

    /// The Desktop `namespace`/`name`, as last seen.
    pub fn desktop(&self, namespace: &str, name: &str) -> Option<Arc<Desktop>> {
        self.desktops.get(namespace, name)
    }

    /// The Desktop `namespace`/`name` as it is now: the cached copy when `fresh_enough` says it
    /// will do, else read from the apiserver. The cache lags writes by a watch event; a page
    /// asked for right after Connect assigned the desktop (this replica or another) must not
    /// see the copy from before the assignment and answer "not yours".
    pub async fn desktop_now(
        &self,
        namespace: &str,
        name: &str,
        fresh_enough: impl Fn(&Desktop) -> bool,
    ) -> Result<Option<Arc<Desktop>>, kube::Error> {
        // Nothing outside the namespaces served: the broker has no rights there, and a name
        // there costs the apiserver nothing.
        if !self.options.serves(namespace) {
            return Ok(None);
        }
        if let Some(cached) = self.desktop(namespace, name)
            && fresh_enough(&cached)
        {
            return Ok(Some(cached));
        }
        let api: Api<Desktop> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?.map(Arc::new))
    }

    /// Whether `identity`, whose desktop `desktop` is (`spec.user`), may still open it: a pool's
    /// desktop only while RBAC lets them `use` the pool (an entitlement revoked takes their
    /// desktop from them, not only new ones); a desktop of no pool, always.
    pub async fn owner_entitled(
        &self,
        identity: &crate::identity::Identity,
        desktop: &Desktop,
    ) -> Result<bool, kube::Error> {
        let Some(pool) = desktop.labels().get(crds::labels::POOL_LABEL) else {
            return Ok(true);
        };
        let namespace = desktop.namespace().unwrap_or_default();
        use crate::identity::access::{POOLS, USE};
        self.access
            .allowed(identity, USE, POOLS, &namespace, pool)
            .await
    }

    /// The assigner of `namespace`'s pools (one watch per namespace, made on first use).
    pub fn assigner(&self, namespace: &str) -> Arc<Assigner> {
        let mut assigners = self.assigners.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(assigners.entry(namespace.to_owned()).or_insert_with(|| {
            Arc::new(Assigner::new(Api::namespaced(
                self.client.clone(),
                namespace,
            )))
        }))
    }

    /// Reads the display password of `desktop` from its Secret, the view-only one for a
    /// viewer that may only watch (the launcher then sends it no clipboard and takes no input
    /// from it): `Err` when the Secret of that name is not the desktop's own (its controller
    /// is not this Desktop), so a Secret someone else stood up under the name is never used,
    /// and when a view-only password is wanted and the Secret has none.
    pub async fn display_password(
        &self,
        desktop: &Desktop,
        view_only: bool,
    ) -> Result<Option<Vec<u8>>, String> {
        let namespace = desktop.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let name = crds::labels::display_secret_name(&desktop.name_any());
        let secret = secrets
            .get_opt(&name)
            .await
            .map_err(|e| format!("cannot read Secret {name}: {e}"))?;
        let Some(secret) = secret else {
            return Ok(None);
        };
        if !controlled_by(&secret.metadata, desktop) {
            tracing::warn!(%namespace, secret = %name, desktop = %desktop.name_any(), "a Secret not made for the desktop has its display Secret's name; not using it");
            return Err(format!(
                "Secret {name} is not the desktop's own (its controller is not Desktop {})",
                desktop.name_any()
            ));
        }
        if !view_only {
            return Ok(secret
                .data
                .and_then(|mut d| d.remove(crds::labels::DISPLAY_PASSWORD_KEY))
                .map(|b| b.0));
        }
        match secret
            .data
            .and_then(|mut d| d.remove(crds::labels::DISPLAY_VIEW_ONLY_PASSWORD_KEY))
        {
            Some(password) => Ok(Some(password.0)),
            // Never the full password for a watcher: it would get the user's clipboard.
            None => Err(format!(
                "Secret {name} has no view-only password (it was made before there were any), so the desktop cannot be watched; an administrator can delete the Secret and restart the desktop"
            )),
        }
    }
}

/// Whether `meta`'s controller is `owner` itself (its uid, not only its name: a desktop
/// deleted and made again is another owner).
pub fn controlled_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    owner: &Desktop,
) -> bool {
    let Some(uid) = owner.metadata.uid.as_deref() else {
        return false;
    };
    meta.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true)
            && r.uid == uid
            && r.kind == "Desktop"
            && r.api_version.split_once('/') == Some((crds::GROUP, crds::VERSION))
    })
}
