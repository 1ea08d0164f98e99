//! Secrets never reach output: every line shipit prints or writes goes
//! through a [`Redactor`] holding the values of the environment variables
//! that templates and commands read as `env.NAME`, and of every
//! environment variable whose name says it is a secret ([`is_secret_name`]),
//! and of the stage's decrypted secrets ([`Redactor::and_values`]).
//!
//! A multi-line value (a PEM key) is masked whole and line by line: output
//! is cut into lines (a failure tail, a plan's script) before it is shown.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// Shown in place of a secret.
pub const MASK: &str = "[redacted]";

/// Name endings that mark an environment variable as a secret wherever it
/// is used (a command given to `shipit exec` can read any of them).
pub const SECRET_SUFFIXES: [&str; 4] = ["_PASSWORD", "_SECRET", "_TOKEN", "_KEY"];

/// Whether an environment variable's name says it holds a secret: it ends
/// in one of [`SECRET_SUFFIXES`] (case-sensitive, as environment names are).
pub fn is_secret_name(name: &str) -> bool {
    SECRET_SUFFIXES
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
}

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for the values of `names` in `env`. Values shorter than 3
    /// characters are not treated as secrets (masking `1` everywhere would
    /// make output unreadable and tell an attacker little anyway).
    pub fn new<'a>(
        names: impl IntoIterator<Item = &'a String>,
        env: &BTreeMap<String, String>,
    ) -> Self {
        Redactor::default().and_values(names.into_iter().filter_map(|n| env.get(n)))
    }

    /// This redactor, also masking each of `values` (the stage's secrets)
    /// whole and each of its lines.
    pub fn and_values<'a>(&self, values: impl IntoIterator<Item = &'a String>) -> Redactor {
        let mut secrets = self.secrets.clone();
        for v in values {
            secrets.extend(masks(v));
        }
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// A redactor for the values of `referenced` (names read as `env.NAME`)
    /// and of every variable in `env` whose name [`is_secret_name`].
    pub fn for_env<'a>(
        referenced: impl IntoIterator<Item = &'a String>,
        env: &'a BTreeMap<String, String>,
    ) -> Self {
        let names: Vec<&String> = referenced
            .into_iter()
            .chain(env.keys().filter(|k| is_secret_name(k)))
            .collect();
        Redactor::new(names, env)
    }

    /// This redactor, also masking each secret as it appears inside a
    /// single-quoted shell word (`'` written `'\''`; `!` as `'\!'` the way
    /// the ssh transport writes it), quoted once or twice (a value quoted
    /// into a task's command, inside the command line sent over ssh): for
    /// logs of commands as they were sent.
    pub fn with_quoted_forms(&self) -> Redactor {
        let mut secrets = self.secrets.clone();
        let mut level = self.secrets.clone();
        for _ in 0..2 {
            let quoted: Vec<String> = level
                .iter()
                .flat_map(|s| {
                    let plain = s.replace('\'', "'\\''");
                    let ssh = plain.replace('!', "'\\!'");
                    [plain, ssh]
                })
                .collect();
            secrets.extend(quoted.iter().cloned());
            level = quoted;
        }
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), MASK);
        }
        Cow::Owned(out)
    }
}

/// What to mask for one secret value: the value, and each of its lines
/// (as is and trimmed) when it has several. Pieces shorter than 3
/// characters are left: masking `1` everywhere would make output
/// unreadable and tell an attacker little anyway.
fn masks(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    if value.contains('\n') {
        for line in value.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            out.push(line.to_string());
            out.push(line.trim().to_string());
        }
    }
    out.retain(|m| m.len() >= 3);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_referenced_values_only() {
        let env: BTreeMap<String, String> = [
            ("DB_PASSWORD".to_string(), "hunter22".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ]
        .into();
        let r = Redactor::new(&["DB_PASSWORD".to_string()], &env);
        assert_eq!(
            r.apply("pw=hunter22 home=/root"),
            "pw=[redacted] home=/root"
        );
        assert!(matches!(r.apply("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_multi_line_value_is_masked_whole_and_line_by_line() {
        let pem = "-----BEGIN KEY-----\r\nAAAAline1\r\n  BBBBline2\nab\n-----END KEY-----\n";
        let env: BTreeMap<String, String> = [("TLS_KEY".to_string(), pem.to_string())].into();
        let r = Redactor::for_env([], &env);
        assert_eq!(r.apply(&format!("<{pem}>")), "<[redacted]>");
        assert_eq!(r.apply("> AAAAline1"), "> [redacted]");
        assert_eq!(r.apply("x BBBBline2 y"), "x [redacted] y");
        assert_eq!(r.apply("-----END KEY-----"), "[redacted]");
        // Too short to mask on its own.
        assert_eq!(r.apply("ab"), "ab");
        // Quoted into a command, line by line too.
        let q = r.with_quoted_forms();
        let quoted = crate::shell::quote(pem);
        for line in quoted.lines() {
            assert!(!q.apply(line).contains("line"), "{line}");
        }
        // The stage's secrets, added to it.
        let s = Redactor::default().and_values(&["one\ntwo-2".to_string()]);
        assert_eq!(s.apply("one two-2"), "[redacted] [redacted]");
    }

    #[test]
    fn quoted_forms_are_masked_once_and_twice_quoted() {
        let env: BTreeMap<String, String> = [("A_TOKEN".to_string(), "o'k!x".to_string())].into();
        let r = Redactor::for_env([], &env).with_quoted_forms();
        let once = crate::shell::quote("o'k!x");
        let twice = crate::shell::quote(&once);
        for text in ["o'k!x", &once, &twice, "o'\\''k'\\!'x"] {
            assert!(!r.apply(text).contains('k'), "{text} -> {}", r.apply(text));
        }
        assert_eq!(r.apply("nothing"), "nothing");
    }

    #[test]
    fn secret_names_by_suffix() {
        let cases = [
            ("DB_PASSWORD", true),
            ("AWS_SECRET", true),
            ("GITHUB_TOKEN", true),
            ("DEPLOY_KEY", true),
            ("_KEY", false),
            ("KEY", false),
            ("PASSWORD", false),
            ("db_password", false),
            ("KEYBOARD", false),
            ("MONKEY", false),
            ("TOKEN_FILE", false),
            ("HOME", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_secret_name(name), want, "{name}");
        }
    }

    #[test]
    fn for_env_masks_referenced_and_secret_named_values() {
        let env: BTreeMap<String, String> = [
            ("API_TOKEN", "tok-123"),
            ("SHORT_KEY", "ab"),
            ("PLAIN", "visible"),
            ("READ_BY_TASK", "from-task"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = Redactor::for_env(&["READ_BY_TASK".to_string()], &env);
        assert_eq!(
            r.apply("tok-123 ab visible from-task"),
            "[redacted] ab visible [redacted]"
        );
    }
}
