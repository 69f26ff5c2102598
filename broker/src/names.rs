//! Checks on the names in a request path, before anything is looked up: a name Kubernetes
//! could not have is refused the same way whether or not something by that name exists.

/// Whether `name` is a DNS-1123 label (namespaces): 1-63 of `[a-z0-9-]`, alphanumeric at both
/// ends.
pub fn is_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Whether `name` is a DNS-1123 subdomain (object names): dot-separated labels, at most 253.
pub fn is_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_label)
}

/// A namespace and an object name from a path, both checked.
pub fn object(namespace: &str, name: &str) -> Option<(String, String)> {
    (is_label(namespace) && is_subdomain(name)).then(|| (namespace.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names_pass_and_path_tricks_do_not() {
        assert!(is_label("team-a"));
        assert!(is_subdomain("pool.v2"));
        assert!(object("team-a", "alice-dev").is_some());
        for bad in [
            "",
            "..",
            "../secrets",
            "a/b",
            "A",
            "-a",
            "a-",
            "a%2Fb",
            "a\0",
            "a b",
            "é",
        ] {
            assert!(object("team-a", bad).is_none(), "{bad:?}");
            assert!(object(bad, "x").is_none(), "{bad:?}");
        }
        assert!(!is_label(&"a".repeat(64)));
        assert!(!is_subdomain(&format!("{}.b", "a".repeat(64))));
    }
}
