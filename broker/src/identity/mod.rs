//! Who the user is and what they may do: OpenID Connect login, TokenReview of the ID token or
//! a bearer token, the session cookie, and SubjectAccessReviews.

pub mod access;
pub mod limits;
pub mod oidc;
pub mod provider;
pub mod review;
pub mod sealed;
pub mod session;
pub mod sessions;

pub use review::Identity;
