//! Durations as written in `deploy.yml`: `500ms`, `10s`, `30m`, `2h`, `1d`,
//! combinations like `1h30m`, or a bare number of seconds.

use std::time::Duration;

use super::raw::IntOrStr;

/// A duration as written in YAML (an integer is seconds), or `None` when it
/// is not one.
pub(crate) fn from_yaml(value: &IntOrStr) -> Option<Duration> {
    match value {
        IntOrStr::Int(n) => u64::try_from(*n).ok().map(Duration::from_secs),
        IntOrStr::Str(s) => parse_duration(s),
    }
}

/// Parses `500ms`, `10s`, `30m`, `2h`, `1d`, sums like `1h30m`, or bare
/// seconds like `15`; `None` when `s` is not one of those (negative, empty,
/// an unknown unit, a fraction, spaces, or too large). Also for command-line
/// flags such as `--wait-lock 5m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(Duration::from_secs);
    }
    let mut rest = s;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || unit_len == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        let part = match &rest[digits..digits + unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86_400)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = &rest[digits + unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Option<Duration> {
        from_yaml(&IntOrStr::Str(text.into()))
    }

    #[test]
    fn valid_durations() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("30m", Duration::from_secs(1800)),
            ("2h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86_400)),
            ("1h30m", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
            ("15", Duration::from_secs(15)),
        ];
        for (text, want) in cases {
            assert_eq!(s(text), Some(want), "{text}");
        }
        assert_eq!(from_yaml(&IntOrStr::Int(7)), Some(Duration::from_secs(7)));
    }

    #[test]
    fn invalid_durations() {
        for text in [
            "",
            "10x",
            "-1s",
            "s",
            "1.5h",
            "10 s",
            " 10s",
            "99999999999999999999d",
        ] {
            assert_eq!(s(text), None, "{text:?}");
        }
        assert_eq!(from_yaml(&IntOrStr::Int(-1)), None);
    }
}
