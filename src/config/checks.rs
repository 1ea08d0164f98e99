//! Pure checks on the strings of `deploy.yml`: names, host names, paths.
//!
//! Host names, users and paths end up on ssh and shell command lines, so
//! what is accepted here is deliberately narrow.

use std::path::{Component, Path, PathBuf};

use super::model::RelPath;

/// Characters besides ASCII letters and digits allowed in a host name or
/// ssh alias (`user@host`, IPv6 `fe80::1%eth0`).
pub const HOST_EXTRA: &str = "._-:@%";
/// Characters besides ASCII letters and digits allowed in a user name.
pub const USER_EXTRA: &str = "._-@";
/// `proxy_jump` is a comma-separated list of `[user@]host[:port]`.
pub const JUMP_EXTRA: &str = "._-:@%,";

/// Says why `s` is not a safe token made of ASCII letters, digits and
/// `extra`, or `None` when it is: a fragment like "begins with `-`".
pub fn unsafe_token(s: &str, extra: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.starts_with('-') {
        return Some("begins with `-`".into());
    }
    let bad = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(*c)))?;
    Some(if bad.is_whitespace() {
        "contains whitespace".into()
    } else if bad.is_control() {
        "contains a control character".into()
    } else {
        format!("contains `{bad}`")
    })
}

/// Task, stage and role names: `[A-Za-z0-9_-]+`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Var names: `[A-Za-z_][A-Za-z0-9_]*`, usable as template identifiers.
pub fn is_var_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// `s` for a message: control characters escaped so hostile input cannot
/// drive the terminal.
pub fn show(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Where `text` opens a flow collection (`[` or `{`) nested deeper than
/// `limit`, as a 1-based line and column; `None` when it does not. The
/// YAML parser takes time quadratic in that depth, so a hostile file of
/// brackets could keep it busy for minutes. Brackets are counted as they
/// come, quotes and all: a real config holds nothing near `limit`
/// unclosed brackets, in strings or out.
pub fn flow_nesting_over(text: &str, limit: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for (i, line) in text.split('\n').enumerate() {
        for (j, c) in line.chars().enumerate() {
            match c {
                '[' | '{' => {
                    depth += 1;
                    if depth > limit {
                        return Some((i + 1, j + 1));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    None
}

/// Why a string is not a [`RelPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelPathError {
    Empty,
    Absolute,
    DotDot,
    Control,
}

/// Validates and normalises a relative path: `./a//b/` becomes `a/b`.
pub fn rel_path(s: &str) -> Result<RelPath, RelPathError> {
    if has_control(s) {
        return Err(RelPathError::Control);
    }
    if s.starts_with('/') {
        return Err(RelPathError::Absolute);
    }
    let mut parts = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(RelPathError::DotDot),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(RelPathError::Empty);
    }
    Ok(RelPath(parts.join("/")))
}

/// Why a `deploy_to` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployToError {
    Empty,
    /// ssh hosts need an absolute path.
    Relative,
    DotDot,
    Control,
    /// Normalises to `/`.
    Root,
    /// Normalises to `~/`, the login home itself.
    Home,
    /// `~/` with no `HOME` to expand it.
    NoHome,
}

/// An ssh host's `deploy_to`: absolute, or under the login home (`~/app`,
/// resolved by each host's shell), no `..`, normalised (`/a//b/` becomes
/// `/a/b`).
pub fn ssh_deploy_to(s: &str) -> Result<String, DeployToError> {
    if s.is_empty() {
        return Err(DeployToError::Empty);
    }
    if has_control(s) {
        return Err(DeployToError::Control);
    }
    let (root, rest) = match s.strip_prefix("~/") {
        Some(rest) => ("~/", rest),
        None if s.starts_with('/') => ("/", s),
        None => return Err(DeployToError::Relative),
    };
    let mut parts = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(DeployToError::DotDot),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(if root == "/" {
            DeployToError::Root
        } else {
            DeployToError::Home
        });
    }
    Ok(format!("{root}{}", parts.join("/")))
}

/// A local host's `deploy_to`: `~/` expanded, a relative path resolved
/// against `base_dir`, `.` and `..` resolved lexically.
pub fn local_deploy_to(
    s: &str,
    base_dir: &Path,
    home: Option<&Path>,
) -> Result<String, DeployToError> {
    if s.is_empty() {
        return Err(DeployToError::Empty);
    }
    if has_control(s) {
        return Err(DeployToError::Control);
    }
    let expanded = expand_tilde(s, home).ok_or(DeployToError::NoHome)?;
    let mut out = PathBuf::new();
    for component in base_dir.join(expanded).components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.parent().is_none() {
        return Err(DeployToError::Root);
    }
    Ok(out.to_string_lossy().into_owned())
}

/// Expands a leading `~` or `~/` with `home`; `None` when it is needed but
/// there is no home. Other paths are returned unchanged.
pub fn expand_tilde(s: &str, home: Option<&Path>) -> Option<PathBuf> {
    let rest = if s == "~" {
        ""
    } else if let Some(rest) = s.strip_prefix("~/") {
        rest
    } else {
        return Some(PathBuf::from(s));
    };
    Some(home?.join(rest))
}

/// `path` made absolute against `base` with `.` components removed.
pub fn absolute(base: &Path, path: &Path) -> PathBuf {
    base.join(path).components().collect()
}

/// Whether a `repository` is a URL (`scheme://...` or scp-like
/// `[user@]host:path`, which git recognises by a `:` before any `/`) rather
/// than a local path.
pub fn is_url(s: &str) -> bool {
    if s.contains("://") {
        return true;
    }
    match s.find(':') {
        Some(colon) => colon > 0 && !s[..colon].contains('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let cases = [
            ("web-01.acme.internal", None),
            ("deploy@web-1", None),
            ("fe80::1%eth0", None),
            ("", Some("is empty")),
            ("-oProxyCommand=x", Some("begins with `-`")),
            ("web 1", Some("contains whitespace")),
            ("web\t1", Some("contains whitespace")),
            ("web\u{1b}1", Some("contains a control character")),
            ("web;rm", Some("contains `;`")),
            ("a|b", Some("contains `|`")),
            ("a&b", Some("contains `&`")),
            ("a$b", Some("contains `$`")),
            ("a`b", Some("contains ```")),
            ("a'b", Some("contains `'`")),
            ("a\"b", Some("contains `\"`")),
        ];
        for (s, want) in cases {
            assert_eq!(unsafe_token(s, HOST_EXTRA).as_deref(), want, "{s:?}");
        }
    }

    #[test]
    fn names() {
        assert!(is_name("smoke_test-2"));
        assert!(!is_name(""));
        assert!(!is_name("a b"));
        assert!(!is_name("a.b"));
        assert!(is_var_name("_port2"));
        assert!(!is_var_name("2port"));
        assert!(!is_var_name("my-var"));
        assert!(!is_var_name(""));
    }

    #[test]
    fn flow_nesting() {
        assert_eq!(flow_nesting_over("a: [[1], {b: [2]}]", 3), None);
        assert_eq!(flow_nesting_over("a: [[1], {b: [2]}]", 2), Some((1, 14)));
        assert_eq!(flow_nesting_over("a: [[1], {b: [2]}]", 1), Some((1, 5)));
        assert_eq!(flow_nesting_over("x:\n  - [[[", 2), Some((2, 7)));
        assert_eq!(flow_nesting_over("]]]][[", 2), None);
    }

    #[test]
    fn rel_paths() {
        assert_eq!(rel_path("./a//b/").unwrap().as_str(), "a/b");
        assert_eq!(rel_path(".env").unwrap().as_str(), ".env");
        assert_eq!(rel_path(""), Err(RelPathError::Empty));
        assert_eq!(rel_path("./"), Err(RelPathError::Empty));
        assert_eq!(rel_path("/etc/passwd"), Err(RelPathError::Absolute));
        assert_eq!(rel_path("a/../../b"), Err(RelPathError::DotDot));
        assert_eq!(rel_path("a\nb"), Err(RelPathError::Control));
    }

    #[test]
    fn deploy_to() {
        assert_eq!(ssh_deploy_to("/var//www/./shop/").unwrap(), "/var/www/shop");
        assert_eq!(ssh_deploy_to("var/www"), Err(DeployToError::Relative));
        assert_eq!(ssh_deploy_to("/var/../etc"), Err(DeployToError::DotDot));
        assert_eq!(ssh_deploy_to("/"), Err(DeployToError::Root));
        assert_eq!(ssh_deploy_to("~//apps/./shop/").unwrap(), "~/apps/shop");
        assert_eq!(ssh_deploy_to("~/"), Err(DeployToError::Home));
        assert_eq!(ssh_deploy_to("~/a/../b"), Err(DeployToError::DotDot));
        assert_eq!(ssh_deploy_to("~app"), Err(DeployToError::Relative));
        assert_eq!(ssh_deploy_to(""), Err(DeployToError::Empty));
        let base = Path::new("/home/me/app");
        let home = Some(Path::new("/home/me"));
        assert_eq!(
            local_deploy_to("./.demo", base, home).unwrap(),
            "/home/me/app/.demo"
        );
        assert_eq!(
            local_deploy_to("../demo", base, home).unwrap(),
            "/home/me/demo"
        );
        assert_eq!(local_deploy_to("/srv/x", base, home).unwrap(), "/srv/x");
        assert_eq!(local_deploy_to("~/d", base, home).unwrap(), "/home/me/d");
        assert_eq!(
            local_deploy_to("~/d", base, None),
            Err(DeployToError::NoHome)
        );
        assert_eq!(
            local_deploy_to("../../../..", base, home),
            Err(DeployToError::Root)
        );
    }

    #[test]
    fn urls() {
        for url in [
            "git@github.com:acme/shop.git",
            "github.com:acme/shop.git",
            "https://github.com/acme/shop.git",
            "file:///srv/git/shop.git",
            "ssh://git@host:22/x.git",
        ] {
            assert!(is_url(url), "{url}");
        }
        for path in [".", "../shop", "/srv/git/shop.git", "./a:b", "shop"] {
            assert!(!is_url(path), "{path}");
        }
    }
}
