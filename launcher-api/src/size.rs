//! Sizes as Kubernetes writes them (`512Mi`, `4Gi`, `1G`, or plain bytes).

/// Parses a size: a whole number with an optional Kubernetes suffix (`Ki`, `Mi`, `Gi`, `Ti`
/// binary; `K`/`k`, `M`, `G`, `T` decimal).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a size: write a number with an optional suffix, such as 512Mi or 4Gi"
        ));
    }
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{other:?} is not a size suffix: use Ki, Mi, Gi, Ti (or K, M, G, T)"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_kubernetes_suffixes() {
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("4GB").unwrap_err().contains("not a size suffix"));
        assert!(
            parse_size("99999999999999999999Ti")
                .unwrap_err()
                .contains("too large")
        );
    }
}
