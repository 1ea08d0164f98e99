//! Secrets never reach output: every line shipit prints or writes goes
//! through a [`Redactor`] holding the values of the environment variables
//! that templates and commands read as `env.NAME`.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// Shown in place of a secret.
pub const MASK: &str = "[redacted]";

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
        let mut secrets: Vec<String> = names
            .into_iter()
            .filter_map(|n| env.get(n))
            .filter(|v| v.len() >= 3)
            .cloned()
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

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
}
