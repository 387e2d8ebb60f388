//! One syntax for durations and sizes in every flag of every binary.

use std::time::Duration;

/// A flag value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(String);

/// Parses `500ms`, `3s`, `10m`, `1h` (jiff's friendly duration format); a
/// bare number or a negative duration is refused. Zero is allowed.
pub fn parse_duration(s: &str) -> Result<Duration, FlagError> {
    let d: jiff::SignedDuration = s.parse().map_err(|e| {
        FlagError(format!(
            "{s:?} is not a duration like 500ms, 3s or 10m: {e}"
        ))
    })?;
    Duration::try_from(d).map_err(|_| FlagError(format!("{s:?}: a duration cannot be negative")))
}

/// [`parse_duration`], refusing zero (timeouts, intervals).
pub fn parse_positive_duration(s: &str) -> Result<Duration, FlagError> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(FlagError(format!(
            "{s:?}: the duration must be greater than zero"
        ))),
        d => Ok(d),
    }
}

/// Parses a byte size: `134217728`, `128Mi`, `1Gi`, `500M`, `64k`.
pub fn parse_bytes(s: &str) -> Result<u64, FlagError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| FlagError(format!("{s:?} is not a size like 134217728, 128Mi or 1Gi")))?;
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        _ => {
            return Err(FlagError(format!(
                "{s:?}: unknown unit {unit:?} (use Ki, Mi, Gi, k, M or G)"
            )));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| FlagError(format!("{s:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err(), "a bare number");
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_positive_duration("0s").is_err());
        assert_eq!(parse_bytes("128Mi"), Ok(128 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("99999999999Gi").is_err());
    }
}
