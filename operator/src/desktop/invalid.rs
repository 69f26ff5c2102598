//! Why a Desktop cannot be built, for its status: what the pure steps ([`super::build`],
//! [`super::boot`], [`super::support`]) answer instead of objects. Imports nothing.

/// Why a Desktop cannot be built, for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// CamelCase reason.
    pub reason: &'static str,
    /// What is wrong, naming the field, and how to fix it.
    pub message: String,
}
