//! What identifies one run: the release id, the commit, who runs it.

use crate::ids::{Commit, ReleaseId, StageName};
use crate::ledger::Entry;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, Utc};

/// Minted once per run; the same on every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// `20261124T190102Z`.
    pub id: ReleaseId,
    /// The full SHA every host deploys.
    pub commit: Commit,
    /// What the user asked for (branch, tag or `--revision`).
    pub reference: String,
    /// Who runs shipit.
    pub user: String,
    pub application: String,
    pub stage: StageName,
    /// Jenkins' `BUILD_URL`, when set.
    pub build_url: Option<String>,
    /// Strategy copy: the archive's digest (`sha256:<hex>`).
    pub digest: Option<String>,
    /// The commit's committer time, epoch seconds, written to the release's
    /// `REVISION_TIME` (when unknown here, strategy git reads it from the
    /// host's mirror).
    pub commit_time: Option<i64>,
}

const ID_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// The release id for a run started at `now`.
pub fn release_id(now: DateTime<Utc>) -> String {
    now.format(ID_FORMAT).to_string()
}

/// Whether `s` looks like a release id shipit mints.
pub fn is_release_id(s: &str) -> bool {
    NaiveDateTime::parse_from_str(s, ID_FORMAT).is_ok() && s.len() == 16
}

/// Longest id `deploy --release` accepts.
const MAX_ID_LEN: usize = 64;

/// Checks an id given with `deploy --release`: a simple name (letters,
/// digits, `.`, `_`, `-`, starting with a letter or digit, at most 64
/// bytes), so it is a plain dir name on every host.
pub fn check_fixed_id(s: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if s.is_empty()
        || s.len() > MAX_ID_LEN
        || !s.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !s.chars().all(ok_char)
    {
        return Err(format!(
            "`{s}` is not a usable release id: use letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most {MAX_ID_LEN} characters (like build-000142)"
        ));
    }
    Ok(())
}

/// Whether release dir `id` is one shipit made: an id it mints, or one the
/// host's ledger records (a `deploy --release` id). Other dirs under
/// `releases/` are never counted nor touched.
pub fn is_known_release(id: &str, ledger: &[Entry]) -> bool {
    is_release_id(id) || (check_fixed_id(id).is_ok() && ledger.iter().any(|e| e.release == id))
}

/// Why release id `id` (of `commit`) cannot be used on a host whose release
/// dirs are `present` and ledger `ledger`: it exists already (release ids
/// are never reused, whatever the commit), or a release shipit made there
/// sorts after it (releases are ordered by id, as strings, so a new one must
/// sort last or rollback and cleanup would take it for an old one).
pub fn id_clash(id: &str, commit: &str, present: &[String], ledger: &[Entry]) -> Option<String> {
    if present.iter().any(|p| p == id) {
        let theirs = ledger
            .iter()
            .rev()
            .find(|e| e.release == id && !e.commit.is_empty())
            .map(|e| e.commit.as_str());
        return Some(match theirs {
            Some(c) if c == commit => format!(
                "release `{id}` already exists there with the same commit; release ids are never reused: deploy with a new id, or `shipit rollback --to {id}` to go back to it"
            ),
            Some(c) => format!(
                "release `{id}` already exists there with commit {c}, not {commit}; release ids are never reused"
            ),
            None => format!("release `{id}` already exists there; release ids are never reused"),
        });
    }
    let newest = present
        .iter()
        .filter(|p| is_known_release(p, ledger))
        .max()?;
    (newest.as_str() > id).then(|| {
        format!(
            "release `{newest}` there sorts after `{id}`; releases are ordered by id as strings, so a new release id must sort after every release on the hosts"
        )
    })
}

/// An id later than both `now` and every id in `existing`: release ids sort
/// in deploy order even when two runs fall in the same second or a host's
/// newest release comes from a clock that ran ahead.
pub fn next_release_id(now: DateTime<Utc>, existing: &[String]) -> String {
    let newest = existing
        .iter()
        .filter_map(|s| NaiveDateTime::parse_from_str(s, ID_FORMAT).ok())
        .max();
    match newest {
        // Compared at the id's resolution: whole seconds.
        Some(n) if release_id(n.and_utc()) >= release_id(now) => {
            release_id(n.and_utc() + ChronoDuration::seconds(1))
        }
        _ => release_id(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_are_utc_seconds() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 19, 1, 2).unwrap();
        assert_eq!(release_id(t), "20261124T190102Z");
        assert!(is_release_id("20261124T190102Z"));
        assert!(!is_release_id("20261124T190102"));
        assert!(!is_release_id("current"));
    }

    #[test]
    fn fixed_ids_are_simple_names() {
        for ok in ["build-000142", "v1.2.3", "42", "20261124T190102Z", "a_b"] {
            assert_eq!(check_fixed_id(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "..",
            "a b",
            "ü",
            "a\nb",
            long.as_str(),
        ] {
            assert!(check_fixed_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_fixed_id_must_be_new_and_sort_last() {
        use crate::ledger::{test_entry, EventKind};
        let mut staged = test_entry(EventKind::Staged, "build-0007");
        staged.commit = "aaa".into();
        let ledger = vec![staged];
        let present = vec!["20261124T190102Z".to_string(), "build-0007".to_string()];
        let clash = |id: &str, commit: &str| id_clash(id, commit, &present, &ledger);
        assert!(clash("build-0007", "bbb")
            .unwrap()
            .contains("with commit aaa, not bbb"));
        assert!(clash("build-0007", "aaa")
            .unwrap()
            .contains("with the same commit"));
        assert!(clash("build-0006", "bbb")
            .unwrap()
            .contains("`build-0007` there sorts after `build-0006`"));
        assert_eq!(clash("build-0008", "bbb"), None);
        // A minted id that sorts before a fixed one is refused too.
        assert!(clash("20261124T190103Z", "bbb").is_some());
        // Dirs shipit did not make do not count.
        let junk = vec!["zzz".to_string()];
        assert_eq!(id_clash("build-0001", "c", &junk, &ledger), None);
        assert!(is_known_release("build-0007", &ledger));
        assert!(!is_known_release("zzz", &ledger));
    }

    #[test]
    fn next_id_moves_past_existing_ones() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 19, 1, 2).unwrap();
        assert_eq!(next_release_id(t, &[]), "20261124T190102Z");
        assert_eq!(
            next_release_id(t, &["20261124T190102Z".into()]),
            "20261124T190103Z"
        );
        // Within the same second as an existing release.
        let later = t + ChronoDuration::milliseconds(500);
        assert_eq!(
            next_release_id(later, &["20261124T190102Z".into()]),
            "20261124T190103Z"
        );
        assert_eq!(
            next_release_id(t, &["20261124T190000Z".into(), "junk".into()]),
            "20261124T190102Z"
        );
    }
}
