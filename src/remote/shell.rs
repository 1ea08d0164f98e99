//! Quoting for POSIX `sh`. Every value that reaches a remote shell goes
//! through [`quote`], so the shell sees it literally.

/// Quotes `s` for `sh`: the result is one word that expands to exactly `s`.
///
/// Always quotes, even when not needed, so that no value is ever left to
/// chance (`$()`, backticks, spaces, newlines, globs are all literal inside
/// single quotes; a single quote is written as `'\''`).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes a path on a host for `sh` like [`quote`], except that a leading
/// `~/` is the login home of the user shipit connects as: it becomes
/// `"$HOME"` followed by the quoted rest, so `deploy_to: ~/app` is resolved
/// on each host by its own shell. Nothing else is ever expanded.
pub fn quote_path(s: &str) -> String {
    match s.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"{}", quote(&format!("/{rest}"))),
        None => quote(s),
    }
}

/// Joins `base` and a relative path with one `/`.
pub fn join(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        return base.to_string();
    }
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rel.trim_start_matches('/')
    )
}

/// The parent directory of a `/`-separated path (`.` for a bare name).
pub fn parent(path: &str) -> &str {
    match path.trim_end_matches('/').rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh_echo(word: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote(word)))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoted_values_reach_the_shell_literally() {
        for s in [
            "plain",
            "with space",
            "it's",
            "$(touch /tmp/shipit-canary)",
            "`id`",
            "a\nb",
            "'; rm -rf / #",
            "*",
            "",
            "\\",
        ] {
            assert_eq!(sh_echo(s), s, "value {s:?}");
        }
    }

    #[test]
    fn quote_forms() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn join_and_parent() {
        assert_eq!(join("/srv/app/", "shared/.env"), "/srv/app/shared/.env");
        assert_eq!(parent("/srv/app/shared/.env"), "/srv/app/shared");
        assert_eq!(parent("/srv"), "/");
        assert_eq!(parent("log"), ".");
    }

    #[test]
    fn a_path_under_the_login_home_expands_home_and_nothing_else() {
        assert_eq!(quote_path("/srv/app"), "'/srv/app'");
        assert_eq!(quote_path("~/app $(x)"), "\"$HOME\"'/app $(x)'");
        assert_eq!(quote_path("a~/b"), "'a~/b'");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote_path("~/a b/$(touch x)")))
            .env("HOME", "/home/me")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/home/me/a b/$(touch x)"
        );
    }
}
