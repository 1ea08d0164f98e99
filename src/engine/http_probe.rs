//! The `http:` smoke test, checked as a load balancer's health checker
//! would: from the machine running shipit, a plain HTTP/1.1 `GET` over a
//! TCP connection (no TLS: `https://` URLs are refused by the config),
//! repeated until the answer's status is the expected one or the attempts
//! run out.
//!
//! Protocol, per attempt: connect, send `GET path HTTP/1.1` with `Host`
//! and `Connection: close`, read the answer until the server closes (at
//! most [`MAX_ANSWER`] bytes) within [`ATTEMPT_TIMEOUT`], and compare the
//! status line's code. Redirects are not followed: a load balancer does not
//! follow them either. What a failed check says: the last answer's status
//! (or why there was none) and the first lines of its body.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plan::http_check::{HttpCheck, ATTEMPT_TIMEOUT};

/// How much of an answer is read.
const MAX_ANSWER: usize = 64 * 1024;

/// How many lines of a failing answer's body are kept.
pub const BODY_LINES: usize = 8;

/// Where a `http://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// The path with its query, at least `/`.
    pub path: String,
}

/// Splits an `http://host[:port][/path]` URL.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = path.split('#').next().unwrap_or("/").to_string();
    if authority.contains('@') {
        return Err(format!("`{url}`: credentials in the URL are not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: `[` is not closed"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` is not a valid URL"));
    }
    let port = match port {
        None | Some("") => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{url}`: invalid port `{p}`"))?,
    };
    Ok(Target { host, port, path })
}

/// One answer: its status code and body (de-chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Reads an HTTP/1.x answer from its raw bytes.
pub fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = match text.split_once("\r\n\r\n") {
        Some((h, b)) => (h, b),
        None => text.split_once("\n\n").unwrap_or((text.as_ref(), "")),
    };
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        let shown: String = status_line.chars().take(80).collect();
        format!("not an HTTP answer: `{}`", shown.escape_debug())
    })?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Answer { status, body })
}

/// A chunked body's data (as far as it goes).
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or_default().trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        if n == 0 {
            break;
        }
        let n = n.min(rest.len());
        let Some(chunk) = rest.get(..n) else { break };
        out.push_str(chunk);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// One `GET`, within [`ATTEMPT_TIMEOUT`].
pub async fn get(url: &str) -> Result<Answer, String> {
    let t = parse_url(url)?;
    let attempt = async {
        let mut conn = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", t.host, t.port))?;
        let host_header = match (t.host.contains(':'), t.port) {
            (true, 80) => format!("[{}]", t.host),
            (true, p) => format!("[{}]:{p}", t.host),
            (false, 80) => t.host.clone(),
            (false, p) => format!("{}:{p}", t.host),
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: shipit/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            t.path,
            env!("CARGO_PKG_VERSION")
        );
        conn.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if raw.len() >= MAX_ANSWER {
                        break;
                    }
                }
                // A reset after a complete answer still is one.
                Err(_) if !raw.is_empty() => break,
                Err(e) => return Err(format!("no answer: {e}")),
            }
        }
        if raw.is_empty() {
            return Err("the connection closed without an answer".to_string());
        }
        parse_answer(&raw)
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs())),
    }
}

/// Checks until the expected status comes back or the attempts run out.
/// `Err` holds what a person needs to see: the last attempt's status (or
/// why it had none) and the first lines of its body.
pub async fn check(c: &HttpCheck) -> Result<(), Vec<String>> {
    let attempts = c.retries.saturating_add(1);
    let mut last = Vec::new();
    for n in 1..=attempts {
        match get(&c.url).await {
            Ok(a) if a.status == c.expect => return Ok(()),
            Ok(a) => {
                last = vec![format!(
                    "GET {} answered {}, expected {} (attempt {n} of {attempts})",
                    c.url, a.status, c.expect
                )];
                last.extend(body_head(&a.body));
            }
            Err(why) => {
                last = vec![format!("GET {}: {why} (attempt {n} of {attempts})", c.url)];
            }
        }
        if n < attempts {
            tokio::time::sleep(c.interval).await;
        }
    }
    Err(last)
}

/// The first non-blank lines of a body, each cut to a sane width.
fn body_head(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .take(BODY_LINES)
        .map(|l| l.chars().take(200).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpListener;

    #[test]
    fn urls_are_split() {
        let t = |url: &str| parse_url(url);
        assert_eq!(
            t("http://web-1:8080/up?x=1").unwrap(),
            Target {
                host: "web-1".into(),
                port: 8080,
                path: "/up?x=1".into()
            }
        );
        assert_eq!(t("http://a").unwrap().path, "/");
        assert_eq!(t("http://a").unwrap().port, 80);
        assert_eq!(t("http://a?q").unwrap().path, "/?q");
        assert_eq!(t("http://[::1]:81/h").unwrap().host, "::1");
        assert!(t("https://a/").is_err());
        assert!(t("http://u:p@a/").is_err());
        assert!(t("http://a:99999/").is_err());
        assert!(t("http://:80/").is_err());
    }

    #[test]
    fn answers_are_read_chunked_or_not() {
        let a =
            parse_answer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbusy\n")
                .unwrap();
        assert_eq!((a.status, a.body.as_str()), (503, "busy\n"));
        let c = parse_answer(
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nline1\n\r\n6\r\nline2\n\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(c.body, "line1\nline2\n");
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n").is_err());
    }

    /// A server answering each connection with the next of `answers`.
    async fn serve(answers: Vec<&'static str>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/up", l.local_addr().unwrap().port());
        tokio::spawn(async move {
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"GET /up HTTP/1.1\r\nHost: 127.0.0.1:"));
                s.write_all(a.as_bytes()).await.unwrap();
            }
        });
        url
    }

    #[tokio::test]
    async fn a_check_retries_until_the_expected_status() {
        let url = serve(vec![
            "HTTP/1.1 503 No\r\n\r\nstarting",
            "HTTP/1.0 200 OK\r\n\r\nup",
        ])
        .await;
        let c = HttpCheck {
            url,
            expect: 200,
            retries: 1,
            interval: Duration::from_millis(10),
        };
        assert_eq!(check(&c).await, Ok(()));
    }

    #[tokio::test]
    async fn a_failed_check_says_the_status_and_the_body_s_first_lines() {
        let body: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let answer: &'static str =
            Box::leak(format!("HTTP/1.1 500 Internal Server Error\r\n\r\n{body}").into_boxed_str());
        let url = serve(vec![answer, answer]).await;
        let c = HttpCheck {
            url: url.clone(),
            expect: 200,
            retries: 1,
            interval: Duration::from_millis(10),
        };
        let lines = check(&c).await.unwrap_err();
        assert_eq!(
            lines[0],
            format!("GET {url} answered 500, expected 200 (attempt 2 of 2)")
        );
        assert_eq!(
            lines[1..],
            (1..=BODY_LINES)
                .map(|i| format!("line {i}"))
                .collect::<Vec<_>>()[..]
        );
    }

    #[tokio::test]
    async fn nobody_listening_is_a_failure_that_says_so() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = HttpCheck {
            url: format!("http://127.0.0.1:{port}/"),
            expect: 200,
            retries: 0,
            interval: Duration::from_millis(10),
        };
        let lines = check(&c).await.unwrap_err();
        assert!(
            lines[0].contains("cannot connect to 127.0.0.1"),
            "{lines:?}"
        );
    }
}
