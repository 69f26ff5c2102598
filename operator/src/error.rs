//! What can go wrong in a reconcile or at start-up, and whether trying again can help.

use std::net::SocketAddr;

/// Whether an error goes away by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// A timeout, a conflict, an apiserver that is busy or restarting: retried with backoff.
    Transient,
    /// The apiserver refused the write as it is (invalid, forbidden): retrying the same write
    /// cannot help. Shown in the object's status; tried again when the object changes.
    Permanent,
}

/// What can go wrong in a reconcile or at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A write the operator needed was refused or failed.
    #[error("{what}: {}", describe(source))]
    Write {
        /// What was written, e.g. `creating launcher pod alice-0123456789`.
        what: String,
        /// The apiserver's answer.
        source: kube::Error,
    },
    /// The OS random generator failed.
    #[error("Random password generation failed: {0}")]
    Random(String),
    /// Leader election failed.
    #[error("Leader election: {0}")]
    Lease(String),
    /// Releasing a pool desktop failed.
    #[error("Releasing a desktop: {0}")]
    Release(#[from] assignment::AssignError),
    /// The HTTP endpoints could not start.
    #[error("Cannot serve HTTP on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// An apiserver error as people read it: its message, code and reason (kube's own text adds
/// the whole response, debug-printed).
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    }
}

/// Status codes of writes that fail the same way however often they are repeated.
const PERMANENT_CODES: [u16; 7] = [400, 403, 405, 406, 413, 415, 422];

impl Error {
    /// `source`, saying what the failed write was.
    pub fn write(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Write {
            what: what.into(),
            source,
        }
    }

    /// The apiserver's answer, when the error is one.
    fn api(&self) -> Option<&kube::core::Status> {
        match self {
            Error::Kube(kube::Error::Api(e))
            | Error::Write {
                source: kube::Error::Api(e),
                ..
            }
            | Error::Release(assignment::AssignError::Kube(kube::Error::Api(e))) => {
                Some(e.as_ref())
            }
            _ => None,
        }
    }

    /// Whether trying again can help: the apiserver refusing a write as invalid (422, 400) or
    /// forbidden (403: RBAC, an admission policy, a quota) is permanent; everything else
    /// (timeouts, conflicts, 404s of a cache that lags, 429, 5xx) is transient.
    pub fn category(&self) -> Category {
        match self.api() {
            Some(e) if PERMANENT_CODES.contains(&e.code) => Category::Permanent,
            _ => Category::Transient,
        }
    }

    /// A CamelCase reason for a status condition: the apiserver's (`Invalid`, `Forbidden`),
    /// else what kind of error it is.
    pub fn reason(&self) -> String {
        match self.api() {
            Some(e) if !e.reason.is_empty() => e.reason.clone(),
            Some(e) => format!("Http{}", e.code),
            None => "Error".into(),
        }
    }

    /// A short label for the errors metric.
    pub fn kind(&self) -> String {
        match (self.api(), self) {
            (Some(e), _) => format!("api_{}", e.code),
            (None, Error::Kube(_) | Error::Write { .. }) => "request".into(),
            (None, Error::Random(_)) => "random".into(),
            (None, Error::Lease(_)) => "lease".into(),
            (None, Error::Release(_)) => "release".into(),
            (None, Error::Http { .. }) => "http".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(&format!("refused with {code}"), reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_refused_write_is_permanent_and_a_timeout_is_not() {
        for (code, reason, category) in [
            (422, "Invalid", Category::Permanent),
            (403, "Forbidden", Category::Permanent),
            (400, "BadRequest", Category::Permanent),
            (409, "Conflict", Category::Transient),
            (404, "NotFound", Category::Transient),
            (429, "TooManyRequests", Category::Transient),
            (500, "InternalError", Category::Transient),
            (503, "ServiceUnavailable", Category::Transient),
        ] {
            let error = Error::write("creating launcher pod p", api(code, reason));
            assert_eq!(error.category(), category, "{code}");
            assert_eq!(error.reason(), reason);
            assert_eq!(error.kind(), format!("api_{code}"));
            assert_eq!(Error::Kube(api(code, reason)).category(), category);
        }
        assert_eq!(Error::Random("x".into()).category(), Category::Transient);
        let text = Error::write("creating launcher pod p", api(422, "Invalid")).to_string();
        assert_eq!(
            text,
            "creating launcher pod p: refused with 422 (422 Invalid)"
        );
    }
}
