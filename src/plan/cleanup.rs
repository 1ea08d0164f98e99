//! Which old releases a deploy removes from a host: decided here, from what
//! the lock step read there (the release dirs, `current` and the ledger);
//! the host only removes the ids it is given (`cleanup.sh`).
//!
//! The rules: only good releases count towards `keep_releases` (the
//! ledger's last status event for them is `verified` or `published`; a
//! release the ledger does not know counts as good only when it is older
//! than every release the ledger records — one from before shipit kept a
//! ledger there; a newer one without a record is what a failed creation
//! left, since a release is recorded `staged` as soon as it is made). Never removed: the release `current` points at, this run's
//! release, and the rollback target (the newest good release older than
//! `current`). Releases whose last status is `failed`, `rolled_back` or only
//! `staged` are removed unless they are one of those.

use crate::ledger::{Entry, EventKind};

use super::inspect::release_status;
use super::release::is_known_release;

/// Whether a release counts as good for the cleanup (see the module
/// documentation).
fn is_good(entries: &[Entry], id: &str) -> bool {
    match release_status(entries, id) {
        None => predates_ledger(entries, id),
        Some(e) => matches!(e.event, EventKind::Verified | EventKind::Published),
    }
}

/// Whether release `id` sorts before every release the ledger records a
/// status for (true for an empty ledger).
fn predates_ledger(entries: &[Entry], id: &str) -> bool {
    use EventKind::*;
    entries
        .iter()
        .filter(|e| matches!(e.event, Staged | Published | Verified | Failed | RolledBack))
        .all(|e| id < e.release.as_str())
}

/// The releases to remove, newest first. `present` are the host's release
/// dirs (names that are not release ids shipit made, see
/// [`is_known_release`], are never touched), `entries` its
/// ledger, `current` the release `current` points at when the cleanup runs,
/// `this_run` the deploy's release (counted even when it is not in
/// `present` yet), `keep` the config's `keep_releases`.
pub fn to_remove(
    present: &[String],
    entries: &[Entry],
    current: Option<&str>,
    this_run: &str,
    keep: u32,
) -> Vec<String> {
    let mut ids: Vec<&str> = present
        .iter()
        .map(String::as_str)
        .chain([this_run])
        .filter(|id| is_known_release(id, entries))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    let mut counted = 0u32;
    let mut target_kept = false;
    let mut remove = Vec::new();
    for id in ids {
        let good = is_good(entries, id);
        if Some(id) == current || id == this_run {
            // This run's release is recorded only once it is published.
            if good || id == this_run {
                counted += 1;
            }
            continue;
        }
        let older = current.is_some_and(|c| id < c);
        if good && older && !target_kept {
            target_kept = true;
            counted += 1;
            continue;
        }
        if good && counted < keep {
            counted += 1;
            continue;
        }
        remove.push(id.to_string());
    }
    remove
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_entry;

    const R: [&str; 8] = [
        "20260101T000001Z",
        "20260101T000002Z",
        "20260101T000003Z",
        "20260101T000004Z",
        "20260101T000005Z",
        "20260101T000006Z",
        "20260101T000007Z",
        "20260101T000008Z",
    ];

    /// A ledger from `(release, events)`, in that order.
    fn ledger(events: &[(&str, &[EventKind])]) -> Vec<Entry> {
        events
            .iter()
            .flat_map(|(id, evs)| evs.iter().map(|e| test_entry(*e, id)))
            .collect()
    }

    #[test]
    fn decisions() {
        use EventKind::*;
        const OK: &[EventKind] = &[Staged, Published, Verified];
        // (name, present, ledger, current, this run, keep, removed)
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [(&'a str, &'a [EventKind])],
            Option<&'a str>,
            &'a str,
            u32,
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            (
                "failed, rolled back and staged-only releases go; the rollback target stays",
                &[R[0], R[1], R[2], R[3], R[4], R[5], R[6]],
                &[
                    (R[0], OK),
                    (R[1], OK),
                    (R[2], &[Staged, Failed]),
                    (R[3], &[Staged, Published, Verified, RolledBack]),
                    (R[4], OK),
                    (R[5], &[Staged]),
                    (R[6], &[Staged, Published, Failed]),
                ],
                Some(R[4]),
                R[4],
                1,
                &[R[6], R[5], R[3], R[2], R[0]],
            ),
            (
                "keep counts good releases, newest first",
                &[R[0], R[1], R[2], R[3], R[4]],
                &[(R[0], OK), (R[1], OK), (R[2], OK), (R[3], OK)],
                Some(R[4]),
                R[4],
                3,
                &[R[1], R[0]],
            ),
            (
                "releases the ledger does not know count as good",
                &[R[0], R[1], R[2], R[3]],
                &[],
                Some(R[3]),
                R[3],
                2,
                &[R[1], R[0]],
            ),
            (
                "`published` counts as good; other events do not hide the status",
                &[R[0], R[1], R[2], R[3]],
                &[
                    (R[0], &[Staged, Published]),
                    (R[1], &[Staged, Published, Approved]),
                    (R[2], &[Staged, Published, Verified, Promoted]),
                ],
                Some(R[3]),
                R[3],
                3,
                &[R[0]],
            ),
            (
                "the rollback target stays even beyond keep, and is the newest good one",
                &[R[0], R[1], R[2], R[3]],
                &[(R[0], OK), (R[1], OK), (R[2], &[Staged, Failed])],
                Some(R[3]),
                R[3],
                1,
                &[R[2], R[0]],
            ),
            (
                "this run's release counts before it is listed",
                &[R[0], R[1], R[2]],
                &[(R[0], OK), (R[1], OK), (R[2], OK)],
                Some(R[3]),
                R[3],
                2,
                &[R[1], R[0]],
            ),
            (
                "without current there is no rollback target",
                &[R[0], R[1], R[2]],
                &[(R[0], OK), (R[1], OK), (R[2], OK)],
                None,
                R[3],
                2,
                &[R[1], R[0]],
            ),
            (
                "current is kept even when it is not good, and does not count",
                &[R[0], R[1], R[2]],
                &[(R[0], OK), (R[1], OK), (R[2], &[Staged, Published, Failed])],
                Some(R[2]),
                R[7],
                1,
                &[R[0]],
            ),
            (
                "names that are not release ids are never removed",
                &["repo", "20260101", ".20260101T000001Z.tar", R[0], R[1]],
                &[(R[0], &[Staged, Failed])],
                Some(R[1]),
                R[1],
                5,
                &[R[0]],
            ),
            (
                "a release newer than the ledger's but unknown to it (a failed creation) is not counted",
                &[R[0], R[1], R[2], R[3], R[4], R[5]],
                &[(R[0], OK), (R[1], OK)],
                Some(R[6]),
                R[6],
                2,
                &[R[5], R[4], R[3], R[2], R[0]],
            ),
            (
                "releases older than every recorded one (from before shipit) still count",
                &[R[0], R[1], R[2], R[3]],
                &[(R[3], OK)],
                Some(R[4]),
                R[4],
                3,
                &[R[1], R[0]],
            ),
            (
                "nothing to remove",
                &[R[0], R[1]],
                &[(R[0], OK), (R[1], OK)],
                Some(R[1]),
                R[1],
                5,
                &[],
            ),
        ];
        for (name, present, events, current, this_run, keep, want) in cases {
            let present: Vec<String> = present.iter().map(|s| s.to_string()).collect();
            let got = to_remove(&present, &ledger(events), *current, this_run, *keep);
            assert_eq!(got, *want, "{name}");
        }
    }
}
