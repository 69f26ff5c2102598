//! Why an assignment or a release failed.

/// Why a user got no desktop.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// Every desktop of the pool is taken or not Ready yet.
    #[error(
        "no desktop available in pool {pool}: every desktop is assigned or still starting; the pool grows by spec.spare up to spec.maxReplicas, so try again shortly or raise them"
    )]
    NoDesktopAvailable {
        /// The pool.
        pool: String,
    },
    /// The user name cannot go into `spec.user`.
    #[error("user {0:?} cannot have a desktop: a user name (spec.user) is {help}", help = crds::desktop::USER_NAME_HELP)]
    InvalidUser(String),
    /// The pool does not exist (in the assigner's namespace).
    #[error(
        "desktop pool {pool} not found in namespace {namespace}: check the pool's name and namespace (kubectl get desktoppools -n {namespace})"
    )]
    NoPool {
        /// The pool asked for.
        pool: String,
        /// Where it was looked for.
        namespace: String,
    },
    /// The desktop to release does not exist.
    #[error("desktop {0} not found")]
    NotFound(String),
    /// A user asked to give back a desktop that is not theirs (or not a pool's).
    #[error("desktop {0} is not yours to give back")]
    NotYours(String),
    /// A user asked to give back a desktop of a Dedicated pool, which stays theirs.
    #[error(
        "desktop {desktop} stays yours: pool {pool} is Dedicated, so its desktops are kept by their users; an administrator can release it (verdant-operator release {desktop}), which resets it"
    )]
    Dedicated {
        /// The desktop.
        desktop: String,
        /// Its pool.
        pool: String,
    },
    /// The pool desktops could not be listed (no permission, or no apiserver).
    #[error("cannot list the pool's desktops: {0}")]
    NoList(String),
    /// Another process kept the user's claim too long.
    #[error("another request of user {0:?} is still being served; try again")]
    Busy(String),
    /// The assigner watches every namespace, so it cannot tell where a claim goes.
    #[error("an assigner over every namespace cannot claim; use one per namespace")]
    NoNamespace,
    /// The API server failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// Whether `e` is a 409 Conflict: the object changed since it was read.
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether `e` is a 404 Not Found.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
