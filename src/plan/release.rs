//! What identifies one run: the release id, the commit, who runs it.

use crate::ids::{Commit, ReleaseId, StageName};
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
