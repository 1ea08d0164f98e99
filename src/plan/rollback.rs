//! The rollback recipe as data: which release each host goes back to (read
//! from its ledger, never from directory times), where the hosts disagree,
//! the scripts that switch a host, and the ones that switch it back when
//! the target fails its restart or smoke test.
//!
//! Pure, like [`super::commands`]: the scripts are `.sh` files of
//! [`crate::remote`], every value quoted, and the decisions (the target
//! above all) are functions tests can call.

use std::time::Duration;

use crate::ledger::{Entry, EventKind};
use crate::remote;

use super::chain::{Frame, TIMEOUT_STATUS};
use super::commands::{self, HostPaths};
use super::inspect::{self, HostReleases};
use super::release::ReleaseInfo;

/// The time limit of the switch, record and unlock steps.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The time limit of a `restart` or `smoke_test` task without `timeout:`
/// (the same as in a deploy).
pub const TASK_TIMEOUT: Duration = Duration::from_secs(600);

/// Whether a release whose last status event on a host is `status` is a
/// good one to roll back to: `verified`, or `published` when no smoke test
/// runs on that host (then nothing could ever verify it).
pub fn is_good(status: Option<EventKind>, smoke_here: bool) -> bool {
    match status {
        Some(EventKind::Verified) => true,
        Some(EventKind::Published) => !smoke_here,
        _ => false,
    }
}

/// The ledger events that make a release good, for messages.
fn good_words(smoke_here: bool) -> &'static str {
    if smoke_here {
        "`verified`"
    } else {
        "`verified` or `published`"
    }
}

/// Where one host goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The release `current` points at now.
    pub from: String,
    pub from_commit: String,
    /// The release to switch to; equal to `from` when the host is already
    /// there (only with `--to`).
    pub to: String,
    pub to_commit: String,
    /// Strategy copy: the digest the ledger recorded for `to`.
    pub to_digest: Option<String>,
    /// What `--force` overrode to pick `to`, when it did.
    pub forced: Option<String>,
}

impl Target {
    /// The host is on the target already: nothing to do there.
    pub fn stays(&self) -> bool {
        self.from == self.to
    }
}

/// Why a host has no target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoTarget {
    #[error("no current release to roll back from")]
    NoCurrent,
    #[error("`current` points at `{0}`, which is not a release here")]
    CurrentMissing(String),
    #[error(
        "no release to roll back to: none older than current {current} has {good} as its last ledger event"
    )]
    NoPrevious { current: String, good: &'static str },
    #[error("release {0} is not on this host")]
    Missing(String),
    #[error("release {id} is {why}; --force rolls back to it anyway")]
    NotGood { id: String, why: String },
}

/// The commit of release `id` on a host: its `REVISION`, else the newest
/// ledger record of it that names one.
fn commit_of(h: &HostReleases, id: &str) -> String {
    let revision = h
        .releases
        .iter()
        .find(|(r, _)| r == id)
        .map(|(_, c)| c.as_str())
        .unwrap_or_default();
    if !revision.is_empty() {
        return revision.to_string();
    }
    h.ledger
        .entries
        .iter()
        .rev()
        .find(|e| e.release == id && !e.commit.is_empty())
        .map(|e| e.commit.clone())
        .unwrap_or_default()
}

fn digest_of(entries: &[Entry], id: &str) -> Option<String> {
    entries
        .iter()
        .rev()
        .find(|e| e.release == id && e.digest.is_some())
        .and_then(|e| e.digest.clone())
}

/// Why `--to` needs `--force` for a release with this last status entry.
fn not_good_why(status: Option<&Entry>) -> String {
    match status {
        None => "not in the ledger".to_string(),
        Some(e) => match e.event {
            EventKind::Failed => match &e.detail {
                Some(d) => format!("marked `failed` in the ledger ({d})"),
                None => "marked `failed` in the ledger".to_string(),
            },
            EventKind::Staged => "only `staged` in the ledger: it never went live".to_string(),
            EventKind::Published => "`published` but never `verified` in the ledger".to_string(),
            other => format!("`{}` in the ledger", inspect::event_name(other)),
        },
    }
}

/// Picks a host's target from what it holds: `--to ID` when given, else
/// the newest good release (see [`is_good`]) older than `current`, so
/// releases that failed or were rolled back are skipped. The target must be
/// a release dir on the host. `--to` a release that is not good (failed,
/// never verified, unknown to the ledger) is refused unless `force`; one
/// that was rolled back is allowed (rolling forward again).
pub fn choose(
    h: &HostReleases,
    to: Option<&str>,
    smoke_here: bool,
    force: bool,
) -> Result<Target, NoTarget> {
    let current = h.current.as_deref().ok_or(NoTarget::NoCurrent)?;
    let has = |id: &str| h.releases.iter().any(|(r, _)| r == id);
    if !has(current) {
        return Err(NoTarget::CurrentMissing(current.to_string()));
    }
    let status = |id: &str| inspect::release_status(&h.ledger.entries, id);
    let (to, forced) = match to {
        Some(id) if !has(id) => return Err(NoTarget::Missing(id.to_string())),
        Some(id) if id == current => (id.to_string(), None),
        Some(id) => {
            let st = status(id);
            let kind = st.map(|e| e.event);
            if is_good(kind, smoke_here) || kind == Some(EventKind::RolledBack) {
                (id.to_string(), None)
            } else if force {
                (id.to_string(), Some(not_good_why(st)))
            } else {
                return Err(NoTarget::NotGood {
                    id: id.to_string(),
                    why: not_good_why(st),
                });
            }
        }
        None => {
            let previous = h
                .releases
                .iter()
                .rev()
                .map(|(id, _)| id.as_str())
                .filter(|id| *id < current)
                .find(|id| is_good(status(id).map(|e| e.event), smoke_here));
            match previous {
                Some(id) => (id.to_string(), None),
                None => {
                    return Err(NoTarget::NoPrevious {
                        current: current.to_string(),
                        good: good_words(smoke_here),
                    })
                }
            }
        }
    };
    Ok(Target {
        from: current.to_string(),
        from_commit: commit_of(h, current),
        to_commit: commit_of(h, &to),
        to_digest: digest_of(&h.ledger.entries, &to),
        to,
        forced,
    })
}

/// `what is A on x, y but B on z`: hosts grouped by value, the largest
/// group first (ties: the order of `values`). `None` when all agree.
fn grouped(what: &str, values: &[(&str, &str)]) -> Option<String> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (host, v) in values {
        match groups.iter_mut().find(|(g, _)| g == v) {
            Some((_, hosts)) => hosts.push(host),
            None => groups.push((v, vec![host])),
        }
    }
    if groups.len() < 2 {
        return None;
    }
    groups.sort_by_key(|(_, hosts)| std::cmp::Reverse(hosts.len()));
    let part = |(v, hosts): &(&str, Vec<&str>)| format!("{v} on {}", hosts.join(", "));
    let rest: Vec<String> = groups[1..].iter().map(part).collect();
    Some(format!(
        "hosts disagree: {what} is {} but {}",
        part(&groups[0]),
        rest.join("; ")
    ))
}

/// Where the hosts' targets (and currents) differ, one line each; empty
/// when every host goes from the same release to the same release.
pub fn disagreements(hosts: &[(&str, &Target)]) -> Vec<String> {
    let targets: Vec<(&str, &str)> = hosts.iter().map(|(n, t)| (*n, t.to.as_str())).collect();
    let currents: Vec<(&str, &str)> = hosts.iter().map(|(n, t)| (*n, t.from.as_str())).collect();
    [grouped("target", &targets), grouped("current", &currents)]
        .into_iter()
        .flatten()
        .collect()
}

/// Takes the deploy lock (see [`commands::lock`]: exits
/// [`commands::LOCKED_STATUS`] with the holder on stderr when it is held)
/// and, under it, prints the host's state as [`inspect::releases`] does:
/// one round trip. Read it with [`inspect::parse_releases`].
pub fn lock_and_read(p: &HostPaths, holder_json: &str) -> String {
    remote::QUIET
        .fill()
        .set("script", &commands::lock(p, holder_json))
        .done()
        + &inspect::releases(p)
}

/// Switches `current` from `from` to `to` atomically (temp link + rename,
/// as a publish does), after making sure `to` is there and `current` is
/// still `from`.
pub fn switch(p: &HostPaths, from: &str, to: &str) -> String {
    remote::ROLLBACK_SWITCH
        .fill()
        .set("deploy_to", &p.deploy_to)
        .set("from", from)
        .set("to", to)
        .done()
}

/// `revisions.log`'s line for a rollback, in Capistrano's wording.
pub fn revisions_line(user: &str, release: &str) -> String {
    format!("{user} rolled back to release {release}")
}

/// Records a rollback that passed its restart and smoke test: `rolled_back`
/// for `from` (detail `to <to>`), then `published` for `to` (detail
/// `rollback from <from>`) and, when a smoke test ran, `verified`; then the
/// `revisions.log` line. Written only now, so a rollback that fails leaves
/// the release it came from with the status it had.
pub fn record(
    p: &HostPaths,
    from: &ReleaseInfo,
    to: &ReleaseInfo,
    host: &str,
    smoked: bool,
) -> String {
    let mut back = commands::entry(from, host, EventKind::RolledBack);
    back.detail = Some(format!("to {}", to.id));
    let mut published = commands::entry(to, host, EventKind::Published);
    published.detail = Some(format!("rollback from {}", from.id));
    let mut entries = vec![back, published];
    if smoked {
        entries.push(commands::entry(to, host, EventKind::Verified));
    }
    commands::ledger_append(p, &entries)
        + &remote::RECORD
            .fill()
            .set("deploy_to", &p.deploy_to)
            .set("line", &revisions_line(&to.user, &to.id))
            .done()
}

/// Undo of a host's rollback: when `current` points at `to`, points it back
/// at `from` and records `failed` for `to` ([`commands::switch_back`]);
/// otherwise (it was never switched) leaves it and says so on stdout.
pub fn switch_back(p: &HostPaths, to: &ReleaseInfo, host: &str, from: &str) -> String {
    remote::ROLLBACK_SWITCHED
        .fill()
        .set("deploy_to", &p.deploy_to)
        .set("to", &to.id)
        .done()
        + &commands::switch_back(p, to, host, Some(from))
}

/// A user task (`restart`, `smoke_test`) as it runs on one host: its
/// command rendered for the host and release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRun {
    pub run: String,
    pub retries: u32,
    pub interval: Duration,
    pub timeout: Duration,
}

/// One step of a host's rollback chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackStep {
    pub name: &'static str,
    pub script: String,
    pub timeout: Duration,
}

/// Everything one host's rollback needs.
#[derive(Debug, Clone)]
pub struct HostRollback<'a> {
    pub paths: &'a HostPaths,
    pub host: &'a str,
    pub from: &'a ReleaseInfo,
    pub to: &'a ReleaseInfo,
    /// Rendered for `to`; `None` when the task does not run on this host.
    pub restart: Option<TaskRun>,
    pub smoke_test: Option<TaskRun>,
    /// The same tasks rendered for `from`, for the way back.
    pub restart_back: Option<TaskRun>,
    pub smoke_test_back: Option<TaskRun>,
    /// The token of this run's lock.
    pub token: &'a str,
}

/// The name of the step that switches `current` (the first of
/// [`steps`]) and of the one that records the rollback.
pub const SWITCH: &str = "switch";
pub const RECORD: &str = "record";
pub const UNLOCK: &str = "unlock";
pub const SWITCH_BACK: &str = "switch_back";

fn task_step(
    name: &'static str,
    p: &HostPaths,
    r: &ReleaseInfo,
    t: &TaskRun,
    host: &str,
    record_verified: bool,
) -> RollbackStep {
    let script = if record_verified {
        commands::smoke_test(p, r, host, &t.run, t.retries, t.interval)
    } else {
        commands::task(p, r, &p.at("current"), &t.run, t.retries, t.interval)
    };
    RollbackStep {
        name,
        script,
        timeout: t.timeout,
    }
}

/// A host's rollback, as one chain: switch, restart, smoke test, record,
/// unlock. The chain stops at the first step that fails.
pub fn steps(w: &HostRollback<'_>) -> Vec<RollbackStep> {
    let p = w.paths;
    let mut v = vec![RollbackStep {
        name: SWITCH,
        script: switch(p, &w.from.id, &w.to.id),
        timeout: STEP_TIMEOUT,
    }];
    if let Some(t) = &w.restart {
        v.push(task_step("restart", p, w.to, t, w.host, false));
    }
    if let Some(t) = &w.smoke_test {
        // `verified` is written by the record step, after `rolled_back`.
        v.push(task_step("smoke_test", p, w.to, t, w.host, false));
    }
    v.push(RollbackStep {
        name: RECORD,
        script: record(p, w.from, w.to, w.host, w.smoke_test.is_some()),
        timeout: STEP_TIMEOUT,
    });
    v.push(RollbackStep {
        name: UNLOCK,
        script: commands::unlock(p, w.token),
        timeout: STEP_TIMEOUT,
    });
    v
}

/// The way back when the target failed on a host: switch back (recording
/// `failed` for the target), restart and smoke-test the release it came
/// from again (a pass records `verified` for it), unlock.
pub fn undo_steps(w: &HostRollback<'_>) -> Vec<RollbackStep> {
    let p = w.paths;
    let mut v = vec![RollbackStep {
        name: SWITCH_BACK,
        script: switch_back(p, w.to, w.host, &w.from.id),
        timeout: STEP_TIMEOUT,
    }];
    if let Some(t) = &w.restart_back {
        v.push(task_step("restart", p, w.from, t, w.host, false));
    }
    if let Some(t) = &w.smoke_test_back {
        v.push(task_step("smoke_test", p, w.from, t, w.host, true));
    }
    v.push(RollbackStep {
        name: UNLOCK,
        script: commands::unlock(p, w.token),
        timeout: STEP_TIMEOUT,
    });
    v
}

/// Why a step failed, in a few words: its stderr's last lines and status.
pub fn step_failure(status: i32, stderr: &[u8], timeout: Duration) -> String {
    if status == TIMEOUT_STATUS {
        return format!("did not finish within {}s", timeout.as_secs());
    }
    let err = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        format!("exited {status}")
    } else {
        format!("exited {status}: {tail}")
    }
}

/// Where a chain stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// The step, by position.
    pub step: usize,
    pub why: String,
    /// The step ended with a status (it ran to its end and failed); `false`
    /// when it broke off or never started, so it may have done part.
    pub ended: bool,
    /// It never started.
    pub unstarted: bool,
}

/// How far a chain of `steps` got, from the frames it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    /// Steps that ended well, by position.
    pub ok: Vec<bool>,
    /// `None` when every step ended well.
    pub stopped: Option<Stop>,
}

/// Reads a chain's frames. `error` is why the chain did not run to its
/// end (timed out, connection lost), when it did not.
pub fn reached(steps: &[RollbackStep], frames: &[Frame], error: Option<&str>) -> Reached {
    let mut ok = vec![false; steps.len()];
    let mut started = vec![false; steps.len()];
    let mut stopped = None;
    for f in frames {
        match f {
            Frame::Started(i) if *i < steps.len() => started[*i] = true,
            Frame::Ended {
                id, status, stderr, ..
            } if *id < steps.len() => {
                if *status == 0 {
                    ok[*id] = true;
                } else if stopped.is_none() {
                    stopped = Some(Stop {
                        step: *id,
                        why: step_failure(*status, stderr, steps[*id].timeout),
                        ended: true,
                        unstarted: false,
                    });
                }
            }
            _ => {}
        }
    }
    if stopped.is_none() {
        if let Some(i) = ok.iter().position(|o| !o) {
            let why = match (started[i], error) {
                (_, Some(e)) => e.to_string(),
                (true, None) => "did not finish".to_string(),
                (false, None) => "did not start".to_string(),
            };
            stopped = Some(Stop {
                step: i,
                why,
                ended: false,
                // Without frames, a transport error may have come at any
                // point: only a clean run with no frame at all says so.
                unstarted: !started[i] && error.is_none(),
            });
        }
    }
    Reached { ok, stopped }
}

/// What a host's rollback chain ([`steps`]) did, decided from [`reached`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Rolled back and recorded; `unlocked` when the lock went with it.
    Done { unlocked: bool },
    /// `current` was not switched: nothing to undo.
    NotSwitched { why: String },
    /// Switched (or perhaps switched), then `step` failed or broke off:
    /// switch back.
    Undo { step: &'static str, why: String },
    /// On the target and checked, but the record step failed: the ledger
    /// or `revisions.log` may lack the rollback.
    Unrecorded { why: String },
}

pub fn verdict(steps: &[RollbackStep], r: &Reached) -> Verdict {
    let Some(stop) = &r.stopped else {
        return Verdict::Done { unlocked: true };
    };
    let why = stop.why.clone();
    match steps[stop.step].name {
        UNLOCK => Verdict::Done { unlocked: false },
        // A switch that ended with a status left `current` alone (`mv` is
        // its last command); one that broke off may have moved it.
        SWITCH if stop.ended || stop.unstarted => Verdict::NotSwitched { why },
        RECORD => Verdict::Unrecorded { why },
        step => Verdict::Undo { step, why },
    }
}

/// What the way back ([`undo_steps`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoVerdict {
    /// Back where it was, restarted and checked.
    Back { unlocked: bool },
    /// `current` is back, but the release's restart or smoke test failed.
    BackUnhealthy { step: &'static str, why: String },
    /// Could not switch back (or cannot tell): still on the target.
    Stuck { why: String },
}

pub fn undo_verdict(steps: &[RollbackStep], r: &Reached) -> UndoVerdict {
    let Some(stop) = &r.stopped else {
        return UndoVerdict::Back { unlocked: true };
    };
    let why = stop.why.clone();
    match steps[stop.step].name {
        UNLOCK => UndoVerdict::Back { unlocked: false },
        SWITCH_BACK => UndoVerdict::Stuck { why },
        step => UndoVerdict::BackUnhealthy { step, why },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger;

    const A: &str = "20261120T080000Z";
    const B: &str = "20261121T080000Z";
    const C: &str = "20261122T080000Z";
    const D: &str = "20261123T080000Z";

    use crate::ledger::test_entry as entry;

    /// A host with release dirs `ids`, `current`, and a ledger where each
    /// release's events are given as words.
    fn host(current: Option<&str>, ids: &[&str], events: &[(&str, &[&str])]) -> HostReleases {
        let mut entries = Vec::new();
        for (id, evs) in events {
            for ev in *evs {
                let kind: EventKind = serde_json::from_value(serde_json::json!(ev)).unwrap();
                entries.push(entry(kind, id));
            }
        }
        HostReleases {
            deploy_to_exists: true,
            releases: ids
                .iter()
                .map(|i| (i.to_string(), format!("rev-{i}")))
                .collect(),
            current: current.map(str::to_string),
            ledger: ledger::Parsed {
                entries,
                bad_lines: vec![],
            },
        }
    }

    const GOOD: &[&str] = &["staged", "published", "verified"];
    const PUBLISHED: &[&str] = &["staged", "published"];
    const FAILED: &[&str] = &["staged", "published", "failed"];
    const ROLLED: &[&str] = &["staged", "published", "verified", "rolled_back"];

    #[test]
    fn choose_reads_the_ledger_for_the_previous_good_release() {
        let all = [A, B, C, D];
        // (case, host, --to, smoke here, force) -> target or error
        type Case<'a> = (
            &'a str,
            HostReleases,
            Option<&'a str>,
            bool,
            bool,
            Result<&'a str, NoTarget>,
        );
        let cases: Vec<Case> = vec![
            (
                "previous verified",
                host(Some(D), &all, &[(A, GOOD), (B, GOOD), (C, GOOD), (D, GOOD)]),
                None,
                true,
                false,
                Ok(C),
            ),
            (
                "skips failed and rolled back",
                host(
                    Some(D),
                    &all,
                    &[(A, GOOD), (B, ROLLED), (C, FAILED), (D, GOOD)],
                ),
                None,
                true,
                false,
                Ok(A),
            ),
            (
                "published is not good with a smoke test",
                host(
                    Some(D),
                    &all,
                    &[(A, GOOD), (B, GOOD), (C, PUBLISHED), (D, GOOD)],
                ),
                None,
                true,
                false,
                Ok(B),
            ),
            (
                "published is good without one",
                host(
                    Some(D),
                    &all,
                    &[(A, GOOD), (B, GOOD), (C, PUBLISHED), (D, PUBLISHED)],
                ),
                None,
                false,
                false,
                Ok(C),
            ),
            (
                "only older than current",
                host(
                    Some(B),
                    &all,
                    &[(A, GOOD), (B, GOOD), (C, ROLLED), (D, GOOD)],
                ),
                None,
                true,
                false,
                Ok(A),
            ),
            (
                "a release the ledger does not know is no target",
                host(Some(D), &all, &[(A, GOOD), (D, GOOD)]),
                None,
                true,
                false,
                Ok(A),
            ),
            (
                "the target must be a dir here",
                host(
                    Some(D),
                    &[A, D],
                    &[(A, GOOD), (B, GOOD), (C, GOOD), (D, GOOD)],
                ),
                None,
                true,
                false,
                Ok(A),
            ),
            (
                "nothing older and good",
                host(Some(B), &all, &[(A, FAILED), (B, GOOD)]),
                None,
                true,
                false,
                Err(NoTarget::NoPrevious {
                    current: B.into(),
                    good: "`verified`",
                }),
            ),
            (
                "no current",
                host(None, &all, &[(A, GOOD)]),
                None,
                true,
                false,
                Err(NoTarget::NoCurrent),
            ),
            (
                "current is not a release dir",
                host(Some(D), &[A, B], &[(A, GOOD)]),
                None,
                true,
                false,
                Err(NoTarget::CurrentMissing(D.into())),
            ),
            (
                "--to an older good release",
                host(Some(D), &all, &[(A, GOOD), (B, GOOD), (C, GOOD), (D, GOOD)]),
                Some(A),
                true,
                false,
                Ok(A),
            ),
            (
                "--to a rolled back release rolls forward",
                host(Some(B), &all, &[(A, GOOD), (B, GOOD), (C, ROLLED)]),
                Some(C),
                true,
                false,
                Ok(C),
            ),
            (
                "--to current stays",
                host(Some(D), &all, &[(D, GOOD)]),
                Some(D),
                true,
                false,
                Ok(D),
            ),
            (
                "--to a missing release",
                host(Some(D), &[B, D], &[(A, GOOD)]),
                Some(A),
                true,
                false,
                Err(NoTarget::Missing(A.into())),
            ),
            (
                "--to a failed release",
                host(Some(D), &all, &[(C, FAILED), (D, GOOD)]),
                Some(C),
                true,
                false,
                Err(NoTarget::NotGood {
                    id: C.into(),
                    why: "marked `failed` in the ledger".into(),
                }),
            ),
            (
                "--to a failed release, forced",
                host(Some(D), &all, &[(C, FAILED), (D, GOOD)]),
                Some(C),
                true,
                true,
                Ok(C),
            ),
            (
                "--to a release the ledger does not know",
                host(Some(D), &all, &[(D, GOOD)]),
                Some(B),
                true,
                false,
                Err(NoTarget::NotGood {
                    id: B.into(),
                    why: "not in the ledger".into(),
                }),
            ),
        ];
        for (name, h, to, smoke, force, want) in cases {
            let got = choose(&h, to, smoke, force).map(|t| t.to);
            assert_eq!(got, want.map(str::to_string), "{name}");
        }
    }

    #[test]
    fn choose_fills_commits_and_says_what_force_overrode() {
        let mut h = host(Some(C), &[A, B, C], &[(A, GOOD), (B, FAILED), (C, GOOD)]);
        // REVISION unreadable: the ledger's commit.
        h.releases[0].1.clear();
        h.ledger.entries[0].digest = Some("sha256:aa".into());
        h.ledger.entries[5].detail = Some("switched back to 20261120T080000Z".into());
        let t = choose(&h, None, true, false).unwrap();
        assert_eq!(
            t,
            Target {
                from: C.into(),
                from_commit: format!("rev-{C}"),
                to: A.into(),
                to_commit: format!("c-{A}"),
                to_digest: Some("sha256:aa".into()),
                forced: None,
            }
        );
        assert!(!t.stays());
        let t = choose(&h, Some(B), true, true).unwrap();
        assert_eq!(
            t.forced.as_deref(),
            Some("marked `failed` in the ledger (switched back to 20261120T080000Z)")
        );
        let e = choose(&h, Some(B), true, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "release 20261121T080000Z is marked `failed` in the ledger (switched back to \
             20261120T080000Z); --force rolls back to it anyway"
        );
        let e = choose(&host(Some(A), &[A], &[(A, GOOD)]), None, false, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no release to roll back to: none older than current 20261120T080000Z has \
             `verified` or `published` as its last ledger event"
        );
    }

    fn target(from: &str, to: &str) -> Target {
        Target {
            from: from.into(),
            from_commit: String::new(),
            to: to.into(),
            to_commit: String::new(),
            to_digest: None,
            forced: None,
        }
    }

    #[test]
    fn disagreements_group_hosts_by_target_and_current() {
        let same = target(C, B);
        assert!(disagreements(&[("fleet-1", &same), ("fleet-2", &same)]).is_empty());
        assert!(disagreements(&[]).is_empty());
        let behind = target(B, A);
        assert_eq!(
            disagreements(&[("fleet-1", &same), ("fleet-2", &same), ("fleet-3", &behind)]),
            [
                format!("hosts disagree: target is {B} on fleet-1, fleet-2 but {A} on fleet-3"),
                format!("hosts disagree: current is {C} on fleet-1, fleet-2 but {B} on fleet-3"),
            ]
        );
        // Same target from different currents.
        let other = target(D, B);
        assert_eq!(
            disagreements(&[("a", &same), ("b", &other), ("c", &other)]),
            [format!(
                "hosts disagree: current is {D} on b, c but {C} on a"
            )]
        );
    }

    fn rel(id: &str) -> ReleaseInfo {
        ReleaseInfo {
            id: id.into(),
            commit: format!("c-{id}"),
            reference: "main".into(),
            user: "alice".into(),
            application: "shop".into(),
            stage: "staging".into(),
            build_url: None,
            digest: None,
        }
    }

    fn work<'a>(p: &'a HostPaths, from: &'a ReleaseInfo, to: &'a ReleaseInfo) -> HostRollback<'a> {
        let t = |run: &str| TaskRun {
            run: run.into(),
            retries: 2,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        };
        HostRollback {
            paths: p,
            host: "web-1",
            from,
            to,
            restart: Some(t("touch restarted")),
            smoke_test: Some(t("test -s REVISION")),
            restart_back: Some(t("touch restarted-back")),
            smoke_test_back: Some(t("test -s REVISION")),
            token: "T1",
        }
    }

    #[test]
    fn scripts_quote_and_switch_with_a_temp_link() {
        let p = HostPaths::new("/srv/my app/$(x)");
        let (from, to) = (rel(B), rel(A));
        let w = work(&p, &from, &to);
        let names: Vec<&str> = steps(&w).iter().map(|s| s.name).collect();
        assert_eq!(names, [SWITCH, "restart", "smoke_test", RECORD, UNLOCK]);
        let s = &steps(&w)[0].script;
        assert!(s.starts_with("deploy_to='/srv/my app/$(x)'\n"), "{s}");
        assert!(s.contains(&format!("to='{A}'\n")), "{s}");
        assert!(s.contains("ln -sfn \"releases/$to\" \"$tmp\""), "{s}");
        assert!(s.contains("mv -fT \"$tmp\" \"$deploy_to/current\""), "{s}");
        let r = &steps(&w)[3].script;
        assert!(r.contains("\"event\":\"rolled_back\""), "{r}");
        assert!(r.contains(&format!("\"detail\":\"to {A}\"")), "{r}");
        assert!(
            r.contains(&format!("alice rolled back to release {A}")),
            "{r}"
        );
        let mut none = w.clone();
        none.restart = None;
        none.smoke_test = None;
        let names: Vec<&str> = steps(&none).iter().map(|s| s.name).collect();
        assert_eq!(names, [SWITCH, RECORD, UNLOCK]);
        assert!(!steps(&none)[1].script.contains("verified"));
        let names: Vec<&str> = undo_steps(&w).iter().map(|s| s.name).collect();
        assert_eq!(names, [SWITCH_BACK, "restart", "smoke_test", UNLOCK]);
    }

    fn frames(ended: &[(usize, i32)], started: Option<usize>) -> Vec<Frame> {
        let mut v = Vec::new();
        for (id, status) in ended {
            v.push(Frame::Started(*id));
            v.push(Frame::Ended {
                id: *id,
                status: *status,
                stdout: vec![],
                stderr: if *status == 0 {
                    vec![]
                } else {
                    b"boom\n".to_vec()
                },
            });
        }
        if let Some(id) = started {
            v.push(Frame::Started(id));
        }
        v
    }

    #[test]
    fn verdicts_follow_how_far_the_chain_got() {
        let p = HostPaths::new("/srv/shop");
        let (from, to) = (rel(B), rel(A));
        let s = steps(&work(&p, &from, &to));
        let lost = Some("lost `web-1`: broken pipe");
        let undo = |step: &'static str, why: &str| Verdict::Undo {
            step,
            why: why.into(),
        };
        // (ended steps, a step started without an end, transport error) -> verdict
        type Case<'a> = (&'a [(usize, i32)], Option<usize>, Option<&'a str>, Verdict);
        let cases: Vec<Case> = vec![
            (
                &[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)],
                None,
                None,
                Verdict::Done { unlocked: true },
            ),
            (
                &[(0, 0), (1, 0), (2, 0), (3, 0), (4, 1)],
                None,
                None,
                Verdict::Done { unlocked: false },
            ),
            (
                &[(0, 0), (1, 0), (2, 0), (3, 0)],
                None,
                lost,
                Verdict::Done { unlocked: false },
            ),
            (
                &[(0, 1)],
                None,
                None,
                Verdict::NotSwitched {
                    why: "exited 1: boom".into(),
                },
            ),
            (&[], None, lost, undo(SWITCH, "lost `web-1`: broken pipe")),
            (
                &[(0, 0), (1, 1)],
                None,
                None,
                undo("restart", "exited 1: boom"),
            ),
            (
                &[(0, 0), (1, 0), (2, TIMEOUT_STATUS)],
                None,
                None,
                undo("smoke_test", "did not finish within 5s"),
            ),
            (
                &[(0, 0)],
                Some(1),
                lost,
                undo("restart", "lost `web-1`: broken pipe"),
            ),
            (
                &[(0, 0), (1, 0), (2, 0), (3, 1)],
                None,
                None,
                Verdict::Unrecorded {
                    why: "exited 1: boom".into(),
                },
            ),
        ];
        for (ended, started, error, want) in cases {
            let r = reached(&s, &frames(ended, started), error);
            assert_eq!(verdict(&s, &r), want, "{ended:?} {started:?} {error:?}");
        }
        // Without any frame and without an error, nothing started.
        let r = reached(&s, &[], None);
        assert_eq!(
            verdict(&s, &r),
            Verdict::NotSwitched {
                why: "did not start".into()
            }
        );
    }

    #[test]
    fn undo_verdicts_tell_back_from_stuck() {
        let p = HostPaths::new("/srv/shop");
        let (from, to) = (rel(B), rel(A));
        let u = undo_steps(&work(&p, &from, &to));
        let lost = Some("lost `web-1`: broken pipe");
        type Case<'a> = (&'a [(usize, i32)], Option<&'a str>, UndoVerdict);
        let cases: Vec<Case> = vec![
            (
                &[(0, 0), (1, 0), (2, 0), (3, 0)],
                None,
                UndoVerdict::Back { unlocked: true },
            ),
            (
                &[(0, 0), (1, 0), (2, 0)],
                lost,
                UndoVerdict::Back { unlocked: false },
            ),
            (
                &[(0, 0), (1, 1)],
                None,
                UndoVerdict::BackUnhealthy {
                    step: "restart",
                    why: "exited 1: boom".into(),
                },
            ),
            (
                &[(0, 1)],
                None,
                UndoVerdict::Stuck {
                    why: "exited 1: boom".into(),
                },
            ),
            (
                &[],
                lost,
                UndoVerdict::Stuck {
                    why: "lost `web-1`: broken pipe".into(),
                },
            ),
        ];
        for (ended, error, want) in cases {
            let r = reached(&u, &frames(ended, None), error);
            assert_eq!(undo_verdict(&u, &r), want, "{ended:?} {error:?}");
        }
    }

    #[tokio::test]
    async fn a_rollback_and_its_undo_run_for_real() {
        use super::super::chain::{self, ChainStep, FrameParser, RUNNER};
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app dir");
        for id in [A, B] {
            std::fs::create_dir_all(d.join("releases").join(id)).unwrap();
            std::fs::write(d.join("releases").join(id).join("REVISION"), "x\n").unwrap();
        }
        std::os::unix::fs::symlink(format!("releases/{B}"), d.join("current")).unwrap();
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        let lock = t
            .run(
                &lock_and_read(&p, "{\"token\":\"T1\"}"),
                None,
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert!(lock.success(), "{}", lock.stderr_str());
        let state = inspect::parse_releases(&lock.stdout_str()).unwrap();
        assert_eq!(state.current.as_deref(), Some(B));
        assert_eq!(state.releases.len(), 2);
        assert!(d.join(".shipit/lock").exists());
        let held = t
            .run(
                &lock_and_read(&p, "{\"token\":\"T2\"}"),
                None,
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert_eq!(held.status, Some(commands::LOCKED_STATUS));
        assert!(held.stderr_str().contains("T1"), "{}", held.stderr_str());

        let (from, to) = (rel(B), rel(A));
        let run = |steps: Vec<RollbackStep>| {
            let t = t.clone();
            async move {
                let chain: Vec<ChainStep<'_>> = steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ChainStep {
                        id: i,
                        script: &s.script,
                        stdin: None,
                        timeout: s.timeout,
                    })
                    .collect();
                let script = chain::script(None, &chain);
                let out = t
                    .run(RUNNER, Some(script.as_bytes()), Duration::from_secs(30))
                    .await
                    .unwrap();
                let frames = FrameParser::default().push(&out.stdout);
                reached(&steps, &frames, None)
            }
        };
        let w = work(&p, &from, &to);
        let s = steps(&w);
        assert_eq!(
            verdict(&s, &run(s.clone()).await),
            Verdict::Done { unlocked: true }
        );
        assert_eq!(
            std::fs::read_link(d.join("current")).unwrap(),
            std::path::Path::new(&format!("releases/{A}"))
        );
        assert!(d.join(format!("releases/{A}/restarted")).exists());
        assert!(!d.join(".shipit/lock").exists());
        let l = ledger::parse(&std::fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap());
        let events: Vec<(EventKind, &str)> = l
            .entries
            .iter()
            .map(|e| (e.event, e.release.as_str()))
            .collect();
        assert_eq!(
            events,
            [
                (EventKind::RolledBack, B),
                (EventKind::Published, A),
                (EventKind::Verified, A)
            ]
        );
        assert_eq!(
            std::fs::read_to_string(d.join("revisions.log")).unwrap(),
            format!("alice rolled back to release {A}\n")
        );

        // From A back towards B, failing its smoke test: switched back.
        let mut w = work(&p, &to, &from);
        w.smoke_test = Some(TaskRun {
            run: "false".into(),
            retries: 0,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        });
        let s = steps(&w);
        let v = verdict(&s, &run(s.clone()).await);
        assert!(
            matches!(
                v,
                Verdict::Undo {
                    step: "smoke_test",
                    ..
                }
            ),
            "{v:?}"
        );
        let u = undo_steps(&w);
        assert_eq!(
            undo_verdict(&u, &run(u.clone()).await),
            UndoVerdict::Back { unlocked: true }
        );
        assert_eq!(
            std::fs::read_link(d.join("current")).unwrap(),
            std::path::Path::new(&format!("releases/{A}"))
        );
        assert!(d.join(format!("releases/{A}/restarted-back")).exists());
        let l = ledger::parse(&std::fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap());
        let last: Vec<(EventKind, &str)> = l.entries[3..]
            .iter()
            .map(|e| (e.event, e.release.as_str()))
            .collect();
        assert_eq!(last, [(EventKind::Failed, B), (EventKind::Verified, A)]);
        // The undo of a host that was never switched leaves it alone.
        let out = t
            .run(
                &switch_back(&p, &from, "web-1", A),
                None,
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert!(out.success());
        assert!(out.stdout_str().contains("not switched"));
        let l2 = ledger::parse(&std::fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap());
        assert_eq!(l2.entries.len(), l.entries.len());
    }
}
