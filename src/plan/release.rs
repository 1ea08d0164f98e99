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

/// Length of a release id's timestamp, `20261124T190102Z`.
const STAMP_LEN: usize = 16;

/// How many characters (lowercase hex digits) follow the `-` of a minted
/// id's run suffix.
pub const SUFFIX_LEN: usize = 6;

/// The timestamp part of a release id for a run started at `now`:
/// `20261124T190102Z` (an id as shipit minted them before ids had a run
/// suffix).
pub fn release_id(now: DateTime<Utc>) -> String {
    now.format(ID_FORMAT).to_string()
}

/// The run suffix of the release id minted by process `pid` on `machine`
/// at `now`: six hex digits of a digest of the three, so that two runs
/// started in the same second (on disjoint `--hosts`, from two machines)
/// never mint the same id.
pub fn run_suffix(machine: &str, pid: u32, now: DateTime<Utc>) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!(
        "{machine}\0{pid}\0{}\0{}",
        now.timestamp(),
        now.timestamp_subsec_nanos()
    ));
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..SUFFIX_LEN]
        .to_string()
}

/// The release id a run mints: its start time and its run suffix,
/// `20261124T190102Z-3fa9c1`. Ids sort by their time first, as strings.
pub fn mint(now: DateTime<Utc>, suffix: &str) -> String {
    format!("{}-{suffix}", release_id(now))
}

/// Whether `s` looks like a release id shipit mints: a timestamp
/// (`20261124T190102Z`), optionally followed by a run suffix (`-3fa9c1`).
pub fn is_release_id(s: &str) -> bool {
    let Some((stamp, suffix)) = s.split_at_checked(STAMP_LEN) else {
        return false;
    };
    NaiveDateTime::parse_from_str(stamp, ID_FORMAT).is_ok()
        && (suffix.is_empty()
            || suffix.strip_prefix('-').is_some_and(|x| {
                x.len() == SUFFIX_LEN
                    && x.chars()
                        .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
            }))
}

/// The time in a minted release id, to the second.
fn stamp_of(id: &str) -> Option<NaiveDateTime> {
    if !is_release_id(id) {
        return None;
    }
    NaiveDateTime::parse_from_str(&id[..STAMP_LEN], ID_FORMAT).ok()
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

/// The run's id, `minted` (see [`mint`]), moved past every id in
/// `existing` when needed: release ids sort in deploy order even when two
/// runs on a host fall in the same second or a host's newest release comes
/// from a clock that ran ahead. A moved id keeps its run suffix and takes
/// the second after the newest one.
pub fn next_release_id(minted: &str, existing: &[String]) -> String {
    let Some(own) = stamp_of(minted) else {
        return minted.to_string();
    };
    let suffix = &minted[STAMP_LEN..];
    match existing.iter().filter_map(|s| stamp_of(s)).max() {
        Some(n) if n >= own => format!(
            "{}{suffix}",
            release_id(n.and_utc() + ChronoDuration::seconds(1))
        ),
        _ => minted.to_string(),
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
    fn minted_ids_carry_a_run_suffix_and_sort_by_time() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 19, 1, 2).unwrap();
        let a = mint(t, &run_suffix("ci-1", 4242, t));
        assert_eq!(a.len(), 16 + 1 + SUFFIX_LEN, "{a}");
        assert!(a.starts_with("20261124T190102Z-"), "{a}");
        assert!(is_release_id(&a), "{a}");
        // Same second, another process or machine: another id.
        let b = mint(t, &run_suffix("ci-1", 4243, t));
        let c = mint(t, &run_suffix("ci-2", 4242, t));
        let d = mint(
            t,
            &run_suffix("ci-1", 4242, t + ChronoDuration::nanoseconds(1)),
        );
        assert!(a != b && a != c && a != d && b != c, "{a} {b} {c} {d}");
        // The same world, the same id.
        assert_eq!(a, mint(t, &run_suffix("ci-1", 4242, t)));
        // Older ids (no suffix) sort before any of that second; the next
        // second sorts after all of them.
        assert!("20261124T190102Z" < a.as_str());
        assert!(a.as_str() < "20261124T190103Z");
        assert!(a < mint(t + ChronoDuration::seconds(1), "000000"));
        for bad in [
            "20261124T190102Z-",
            "20261124T190102Z-3FA9C1",
            "20261124T190102Z-3fa9c",
            "20261124T190102Z-3fa9c12",
            "20261124T190102Z_3fa9c1",
            "20261124T190102Z-3fa9c/",
        ] {
            assert!(!is_release_id(bad), "{bad}");
        }
    }

    #[test]
    fn next_id_moves_past_existing_ones() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 19, 1, 2).unwrap();
        let id = "20261124T190102Z-abc123";
        assert_eq!(next_release_id(id, &[]), id);
        // An older-style id of the same second, or a suffixed one.
        for same in ["20261124T190102Z", "20261124T190102Z-ffffff"] {
            assert_eq!(
                next_release_id(id, &[same.into()]),
                "20261124T190103Z-abc123"
            );
        }
        // A host whose newest release is from a clock ahead.
        assert_eq!(
            next_release_id(id, &["20261124T200000Z-000001".into()]),
            "20261124T200001Z-abc123"
        );
        assert_eq!(
            next_release_id(id, &["20261124T190000Z".into(), "junk".into()]),
            id
        );
        // Ids minted before the run suffix move the same way.
        let old = release_id(t);
        assert_eq!(
            next_release_id(&old, &["20261124T190102Z".into()]),
            "20261124T190103Z"
        );
    }
}
