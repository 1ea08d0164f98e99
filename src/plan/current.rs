//! Which release a host's `current` points at, for work done outside a
//! deploy (`shipit run`): the script that asks and the parser of its answer.

use super::commands::HostPaths;
use crate::remote;

/// The release `current` points at on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The release dir's name (`20261124T190102Z`).
    pub release: String,
    /// Its `REVISION`, empty when the file is missing.
    pub commit: String,
}

/// Prints `current:<link target>` and `commit:<REVISION>` when they exist;
/// changes nothing.
pub fn probe(p: &HostPaths) -> String {
    remote::PROBE_CURRENT
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .done()
}

/// Reads [`probe`]'s output; `None` when there is no `current`.
pub fn parse(stdout: &str) -> Option<Current> {
    let mut release = None;
    let mut commit = String::new();
    for line in stdout.lines() {
        if let Some(x) = line.strip_prefix("current:") {
            let name = x.trim_end_matches('/').rsplit('/').next().unwrap_or(x);
            release = Some(name.to_string()).filter(|n| !n.is_empty());
        } else if let Some(x) = line.strip_prefix("commit:") {
            commit = x.trim().to_string();
        }
    }
    Some(Current {
        release: release?,
        commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reads_the_link_and_revision() {
        let s = probe(&HostPaths::new("/srv/my app"));
        assert!(s.starts_with("deploy_to='/srv/my app'\n"), "{s}");
        assert!(s.contains("readlink \"$c\""), "{s}");
        assert!(s.contains("cat \"$c/REVISION\""), "{s}");
    }

    #[test]
    fn parses_what_the_probe_prints() {
        assert_eq!(
            parse("current:releases/20261124T190102Z\ncommit:abc123\n"),
            Some(Current {
                release: "20261124T190102Z".into(),
                commit: "abc123".into()
            })
        );
        assert_eq!(
            parse("current:releases/R\n").map(|c| c.commit),
            Some(String::new())
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("commit:abc\n"), None);
    }
}
