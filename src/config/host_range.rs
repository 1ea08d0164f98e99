//! Host name ranges: `web-[01:12].acme.internal` is twelve hosts.

/// Most hosts one range may expand to; a typo like `[1:100000]` should fail
/// rather than plan a hundred thousand hosts.
pub const MAX_RANGE_HOSTS: u64 = 10_000;

/// Expands the one `[start:end]` range in `host`, keeping the zero padding
/// of `start` (`[01:12]` gives `01`..`12`, `[1:12]` gives `1`..`12`). A
/// name without brackets is returned as is. The error says what is wrong
/// with the range.
pub fn expand(host: &str) -> Result<Vec<String>, String> {
    let Some(open) = host.find('[') else {
        if host.contains(']') {
            return Err("`]` without `[`".into());
        }
        return Ok(vec![host.to_owned()]);
    };
    let Some(close) = host[open..].find(']').map(|i| open + i) else {
        return Err("`[` is not closed".into());
    };
    let (prefix, inner, suffix) = (&host[..open], &host[open + 1..close], &host[close + 1..]);
    if prefix.contains(']') || suffix.contains(['[', ']']) || inner.contains('[') {
        return Err("only one range per host name is supported".into());
    }
    let bad_form = || "expected `[start:end]` with numbers like `[01:12]`".to_string();
    let (start, end) = inner.split_once(':').ok_or_else(bad_form)?;
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (Some(first), Some(last)) = (number(start), number(end)) else {
        return Err(bad_form());
    };
    if first > last {
        return Err(format!("start `{start}` is greater than end `{end}`"));
    }
    if last - first + 1 > MAX_RANGE_HOSTS {
        return Err(format!("expands to more than {MAX_RANGE_HOSTS} hosts"));
    }
    let width = start.len();
    Ok((first..=last)
        .map(|n| format!("{prefix}{n:0width$}{suffix}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_ranges() {
        let cases: &[(&str, &[&str])] = &[
            ("db-1.acme.internal", &["db-1.acme.internal"]),
            ("web-[1:3]", &["web-1", "web-2", "web-3"]),
            ("[8:10].x", &["8.x", "9.x", "10.x"]),
            ("web-[09:11].a", &["web-09.a", "web-10.a", "web-11.a"]),
            ("n[001:002]", &["n001", "n002"]),
            ("one[4:4]", &["one4"]),
        ];
        for (host, want) in cases {
            assert_eq!(expand(host).unwrap(), *want, "{host}");
        }
        let web = expand("web-[01:12].acme.internal").unwrap();
        assert_eq!(web.len(), 12);
        assert_eq!(web[0], "web-01.acme.internal");
        assert_eq!(web[11], "web-12.acme.internal");
    }

    #[test]
    fn rejects_bad_ranges() {
        let cases = [
            ("web-[5:1]", "start `5` is greater than end `1`"),
            (
                "web-[a:b]",
                "expected `[start:end]` with numbers like `[01:12]`",
            ),
            (
                "web-[1-3]",
                "expected `[start:end]` with numbers like `[01:12]`",
            ),
            (
                "web-[:3]",
                "expected `[start:end]` with numbers like `[01:12]`",
            ),
            ("web-[1:3", "`[` is not closed"),
            ("web-1:3]", "`]` without `[`"),
            ("w[1:2]-[1:2]", "only one range per host name is supported"),
            ("w[[1:2]]", "only one range per host name is supported"),
            ("w[0:10000]", "expands to more than 10000 hosts"),
        ];
        for (host, want) in cases {
            assert_eq!(expand(host).unwrap_err(), want, "{host}");
        }
    }
}
