//! Which release each host of a rollback goes to, and how each host's
//! rollback ended: pure decisions made in Rust from the parsed ledger and
//! the executor's results, so hosts only carry them out.
//!
//! The protocol (see [`super::rollback`]): a host's target is `--to ID`, or
//! the newest release older than `current` whose last ledger event is
//! `verified` (`published` where no smoke test runs) — never a directory
//! time. Hosts must agree on target and current unless `--force`. A host
//! whose switch chain stops is judged by [`verdict`]: not switched, to be
//! switched back ([`undo_verdict`] then says how that went), or switched
//! but not recorded.

use std::time::Duration;

use crate::ids::{Commit, ReleaseId};
use crate::ledger::{Entry, EventKind};
use crate::outcome::Outcome;
use crate::plan::chain::{Frame, TIMEOUT_STATUS};
use crate::plan::inspect::{self, HostReleases};
use crate::plan::rollback::{RollbackStep, RECORD, SWITCH, SWITCH_BACK, UNLOCK};

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
    pub from: ReleaseId,
    pub from_commit: Commit,
    /// The release to switch to; equal to `from` when the host is already
    /// there (only with `--to`).
    pub to: ReleaseId,
    pub to_commit: Commit,
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
        from: current.into(),
        from_commit: commit_of(h, current).into(),
        to_commit: commit_of(h, &to).into(),
        to_digest: digest_of(&h.ledger.entries, &to),
        to: to.into(),
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

/// How a host's rollback ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEnd {
    /// Already on the target (`--to`): nothing done.
    Stayed {
        on: ReleaseId,
    },
    /// Not started: interrupted first.
    NotStarted {
        on: ReleaseId,
    },
    Done {
        from: ReleaseId,
        to: ReleaseId,
    },
    /// The switch itself failed; `current` is unchanged.
    NotSwitched {
        on: ReleaseId,
        why: String,
    },
    /// `step` failed on the target; the host is back on `on`.
    SwitchedBack {
        on: ReleaseId,
        step: String,
        why: String,
    },
    /// Switched back to `on` after `step` failed, but `on`'s own restart or
    /// smoke test failed then: needs a person.
    BackUnhealthy {
        on: ReleaseId,
        step: String,
        why: String,
        back_step: String,
        back_why: String,
    },
    /// `step` failed on the target and switching back failed too: still on
    /// `on` (or unknown). Needs a person.
    Stuck {
        on: ReleaseId,
        step: String,
        why: String,
        back_why: String,
    },
    /// Rolled back and checked, but not recorded in the ledger.
    Unrecorded {
        from: ReleaseId,
        to: ReleaseId,
        why: String,
    },
}

impl HostEnd {
    /// Whether the host ended where the rollback meant it to.
    pub fn ok(&self) -> bool {
        matches!(self, HostEnd::Stayed { .. } | HostEnd::Done { .. })
    }

    /// The step that failed on the host, if one did.
    pub fn failed_step(&self) -> Option<&str> {
        match self {
            HostEnd::Stayed { .. } | HostEnd::NotStarted { .. } | HostEnd::Done { .. } => None,
            HostEnd::NotSwitched { .. } => Some(SWITCH),
            HostEnd::SwitchedBack { step, .. }
            | HostEnd::BackUnhealthy { step, .. }
            | HostEnd::Stuck { step, .. } => Some(step),
            HostEnd::Unrecorded { .. } => Some(RECORD),
        }
    }

    /// Where the host is now, for its summary row.
    pub fn state(&self) -> String {
        match self {
            HostEnd::Stayed { on } => format!("on {on} (already)"),
            HostEnd::NotStarted { on } => format!("not started: interrupted; still on {on}"),
            HostEnd::Done { from, to } => format!("on {to} (was {from})"),
            HostEnd::NotSwitched { on, why } => format!("switch failed: {why}; still on {on}"),
            HostEnd::SwitchedBack { on, step, why } => {
                format!("{step} failed: {why}; switched back to {on}")
            }
            HostEnd::BackUnhealthy {
                on,
                step,
                back_step,
                back_why,
                ..
            } => format!(
                "{step} failed; switched back to {on}, but its {back_step} failed: {back_why}; needs a person"
            ),
            HostEnd::Stuck { on, step, back_why, .. } => format!(
                "{step} failed and switching back failed: {back_why}; still on {on}; needs a person"
            ),
            HostEnd::Unrecorded { to, why, .. } => {
                format!("on {to}, but the rollback could not be recorded: {why}")
            }
        }
    }

    /// The host's line once its rollback ended (`secs`: how long it took),
    /// `None` for a host that was not touched.
    pub fn line(&self, t: &Target, secs: &str) -> Option<String> {
        let (from, to) = (&t.from, &t.to);
        Some(match self {
            HostEnd::Stayed { .. } | HostEnd::NotStarted { .. } => return None,
            HostEnd::Done { .. } => format!("rollback ok {secs}: now on {to} (was {from})"),
            HostEnd::Unrecorded { why, .. } => format!(
                "rollback FAILED {secs} at record: {why}; on {to} (was {from}) and checked, but the ledger or revisions.log may lack it"
            ),
            HostEnd::NotSwitched { why, .. } => {
                format!("rollback FAILED {secs} at switch: {why}; current unchanged ({from})")
            }
            HostEnd::SwitchedBack { step, why, .. } => format!(
                "rollback FAILED {secs} at {step}: {why}; switched back to {from} ({to} marked failed)"
            ),
            HostEnd::BackUnhealthy {
                step,
                why,
                back_step,
                back_why,
                ..
            } => format!(
                "rollback FAILED {secs} at {step}: {why}; switched back to {from}, but its {back_step} failed: {back_why}"
            ),
            HostEnd::Stuck {
                step, why, back_why, ..
            } => format!(
                "rollback FAILED {secs} at {step}: {why}; could not switch back to {from}: {back_why}; still on {to}"
            ),
        })
    }
}

/// What the hosts' targets add up to: the lines to report (host index, or
/// `None` for the whole stage) and the targets, or why the rollback is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub lines: Vec<(Option<usize>, String)>,
    pub targets: Result<Vec<Target>, String>,
}

/// Checks each host's choice and that the hosts agree (unless `force`).
pub fn decide(
    names: &[&str],
    choices: &[Result<Target, NoTarget>],
    force: bool,
    stage: &str,
) -> Decision {
    let n = names.len();
    let mut lines = Vec::new();
    let mut refusals: Vec<(String, Vec<&str>)> = Vec::new();
    for (i, c) in choices.iter().enumerate() {
        match c {
            Ok(t) if t.stays() => {
                lines.push((Some(i), format!("on {}: already on the target", t.from)))
            }
            Ok(t) => {
                lines.push((Some(i), format!("on {}: target {}", t.from, t.to)));
                if let Some(why) = &t.forced {
                    lines.push((
                        Some(i),
                        format!(
                            "note: release {} is {why}; rolling back to it because of --force",
                            t.to
                        ),
                    ));
                }
            }
            Err(e) => {
                let e = e.to_string();
                lines.push((Some(i), format!("refused: {e}")));
                match refusals.iter_mut().find(|(m, _)| *m == e) {
                    Some((_, hosts)) => hosts.push(names[i]),
                    None => refusals.push((e, vec![names[i]])),
                }
            }
        }
    }
    if !refusals.is_empty() {
        let why: Vec<String> = refusals
            .iter()
            .map(|(e, hosts)| {
                if hosts.len() == n && n > 1 {
                    format!("{e} (on every host)")
                } else {
                    format!("{e} (on {})", hosts.join(", "))
                }
            })
            .collect();
        return Decision {
            lines,
            targets: Err(why.join("; ")),
        };
    }
    let targets: Vec<Target> = choices
        .iter()
        .map(|c| c.clone().expect("checked"))
        .collect();
    let pairs: Vec<(&str, &Target)> = names.iter().copied().zip(targets.iter()).collect();
    let disagree = disagreements(&pairs);
    lines.extend(disagree.iter().map(|d| (None, d.clone())));
    if !disagree.is_empty() && !force {
        return Decision {
            lines,
            targets: Err(format!(
                "the hosts disagree (see above); `shipit rollback {stage} --force` rolls each host back to its own target"
            )),
        };
    }
    if !disagree.is_empty() {
        lines.push((
            None,
            "--force: each host goes to its own target".to_string(),
        ));
    }
    Decision {
        lines,
        targets: Ok(targets),
    }
}

/// The summary line and the outcome, from how each host ended.
pub fn summary(ends: &[(&str, HostEnd)], interrupted: bool) -> (Outcome, String) {
    let mut needs_person = Vec::new();
    let mut failed = Vec::new();
    let mut not_started = Vec::new();
    // (to, from) -> hosts, in first-seen order; `from` is `None` for hosts
    // that stayed.
    type Move = (ReleaseId, Option<ReleaseId>);
    let mut moved: Vec<(Move, Vec<&str>)> = Vec::new();
    for (host, end) in ends {
        let key = match end {
            HostEnd::Stayed { on } => Some((on.clone(), None)),
            HostEnd::Done { from, to } => Some((to.clone(), Some(from.clone()))),
            _ => None,
        };
        if let Some(key) = key {
            match moved.iter_mut().find(|(k, _)| *k == key) {
                Some((_, hosts)) => hosts.push(host),
                None => moved.push((key, vec![host])),
            }
        }
        match end {
            HostEnd::Stayed { .. } | HostEnd::Done { .. } => {}
            HostEnd::NotStarted { on } => not_started.push(format!("{host} (still on {on})")),
            HostEnd::NotSwitched { on, why } => {
                failed.push(format!("{host} (switch failed: {why}; still on {on})"))
            }
            HostEnd::SwitchedBack { on, step, .. } => {
                failed.push(format!("{host} ({step} failed; switched back to {on})"))
            }
            HostEnd::Unrecorded { to, why, .. } => failed.push(format!(
                "{host} (on {to}, but the rollback could not be recorded: {why})"
            )),
            HostEnd::BackUnhealthy {
                on,
                step,
                back_step,
                ..
            } => needs_person.push(format!(
                "{host} ({step} failed on the target; switched back to {on}, whose {back_step} failed too)"
            )),
            HostEnd::Stuck { on, step, .. } => needs_person.push(format!(
                "{host} ({step} failed and it could not be switched back: still on {on})"
            )),
        }
    }
    let all_moved = failed.is_empty() && needs_person.is_empty() && not_started.is_empty();
    let moved_text = if all_moved && moved.len() == 1 {
        let ((to, from), _) = &moved[0];
        match from {
            Some(f) => format!("every host is on release {to} (was {f})"),
            None => format!("every host is on release {to} already; nothing to do"),
        }
    } else {
        moved
            .iter()
            .map(|((to, from), hosts)| match from {
                Some(f) => format!("{} on release {to} (was {f})", hosts.join(", ")),
                None => format!("{} on release {to} (already)", hosts.join(", ")),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let and_moved = if moved.is_empty() {
        String::new()
    } else {
        format!("; {moved_text}")
    };
    if !needs_person.is_empty() {
        let mut others = failed.clone();
        others.extend(not_started.iter().cloned());
        let others = if others.is_empty() {
            String::new()
        } else {
            format!("; failed: {}", others.join(", "))
        };
        return (
            Outcome::RollbackIncomplete,
            format!(
                "INCOMPLETE — needs a person: {}{others}{and_moved}",
                needs_person.join(", ")
            ),
        );
    }
    if interrupted {
        let mut left = failed.clone();
        left.extend(not_started.iter().cloned());
        let left = if left.is_empty() {
            String::new()
        } else {
            format!(" — not rolled back: {}", left.join(", "))
        };
        return (
            Outcome::Interrupted,
            format!("interrupted{left}{and_moved}"),
        );
    }
    if !failed.is_empty() {
        return (
            Outcome::Failed,
            format!("FAILED on {}{and_moved}", failed.join(", ")),
        );
    }
    (Outcome::Success, moved_text.to_string())
}

#[cfg(test)]
mod tests;
