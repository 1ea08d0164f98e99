//! Settling a deploy once the executor is done: deciding how it ended and
//! undoing what must be undone, so the fleet is never left half-switched.
//!
//! - Nothing failed: every host is on the new release. Hosts whose publish
//!   failed within `max_failures` go back alone and the run succeeds.
//! - A failure or an interrupt: every host whose publish started goes back
//!   to the release it had, all at once — a publish that failed or lost its
//!   connection may have renamed `current` already, so the host's undo
//!   script looks: where `current` points at this run's release it is
//!   switched back (restart, smoke test, ledger), elsewhere it is left
//!   alone and the staged release removed. Every host this run only
//!   staged loses the staged release (`failed` is recorded). A `local:
//!   true` restart or smoke test runs once on this machine after the hosts
//!   are back, never on a host.
//! - Ledger records during an undo are best effort: a full disk does not
//!   keep a host from going back; the summary says the record is missing.
//! - A host that cannot be put back ends the run with exit 5, named.
//!
//! The summary states each host's end in words (its `states` row), with
//! where `current` points as the host said after its undo (read back when
//! the undo was cut off).

use std::collections::BTreeMap;
use std::time::Duration;

use super::executor::{Executor, NodeResult, RunReport};
use super::fleet::RunCtx;
use super::load_balancer::Pool;
use super::lock_protocol::{failed_state, Before, CLEANUP_TIMEOUT};
use crate::config::{Config, Host};
use crate::ledger::EventKind;
use crate::outcome::Outcome;
use crate::plan::commands::{self, HostPaths, UndoReport};
use crate::plan::queue::{NodeState, Queue};
use crate::plan::render;
use crate::plan::targeting;
use crate::plan::{Plan, ReleaseInfo};

pub fn current_note(prev: &Option<String>) -> String {
    match prev {
        Some(p) => format!("current unchanged ({p})"),
        None => "no current release".to_string(),
    }
}

/// What undoing a publish needs to rebuild the previous release's hooks.
pub struct UndoCtx<'a> {
    pub config: &'a Config,
    pub hosts: &'a [&'a Host],
    pub env: &'a BTreeMap<String, String>,
}

impl UndoCtx<'_> {
    /// Task `name` as host `h` runs it for `release`, when it runs on that
    /// host (never for a `local: true` task: see [`UndoCtx::local_hook`]).
    fn hook(&self, name: &str, h: usize, release: &ReleaseInfo) -> Option<commands::HookCommand> {
        let t = self.config.task(name)?;
        // An `http:` smoke test is checked from here (see `restore_all`).
        if t.http.is_some() || !targeting::targets(t, self.hosts).on_host(h) {
            return None;
        }
        let ctx = render::context(self.config, self.hosts[h], release, self.env);
        // It rendered for this run's release, so it renders for the previous.
        let run = render::render(&t.run, &ctx, name, &self.hosts[h].name).ok()?;
        let env = render::host_env(self.hosts[h], &ctx).ok()?;
        Some(commands::HookCommand {
            run,
            env,
            retries: t.retries,
            interval: t.interval,
        })
    }

    /// Task `name` when it is `local: true`: rendered as the deploy renders
    /// it (with the first host's context), for `release`.
    fn local_hook(&self, name: &str, release: &ReleaseInfo) -> Option<(String, Duration)> {
        let t = self.config.task(name)?;
        if !targeting::targets(t, self.hosts).is_local() {
            return None;
        }
        let ctx = render::context(self.config, self.hosts[0], release, self.env);
        let run = render::render(&t.run, &ctx, name, "local").ok()?;
        Some((run, t.timeout.unwrap_or(Duration::from_secs(600))))
    }

    fn timeout(&self) -> Duration {
        let t = |n: &str| {
            self.config
                .task(n)
                .map(|t| t.timeout.unwrap_or(Duration::from_secs(600)))
                .unwrap_or_default()
        };
        CLEANUP_TIMEOUT + t("restart") + t("smoke_test")
    }
}

/// Whether this run may have created its release dir on host `h`: the step
/// succeeded, or failed in any way (a full disk, a timeout, a lost
/// connection) but one: a script that refused because the dir already
/// existed created nothing, and what is there is not this run's to remove.
pub fn created_release(plan: &Plan, res: &[Option<NodeResult>], queue: &Queue, h: usize) -> bool {
    let Some(s) = plan.step_index("create_release") else {
        return false;
    };
    plan.nodes_of_step(s)
        .filter(|(_, n)| n.host == Some(h))
        .any(|(i, _)| match queue.state(i) {
            NodeState::Done => true,
            NodeState::Failed => res[i].as_ref().is_none_or(|r| {
                r.output
                    .as_ref()
                    .is_none_or(|o| o.status != Some(commands::RELEASE_EXISTS_STATUS))
            }),
            _ => false,
        })
}

pub fn step_state(plan: &Plan, queue: &Queue, host: usize, step: &str) -> Option<NodeState> {
    let s = plan.step_index(step)?;
    plan.nodes_of_step(s)
        .find(|(_, n)| n.host == Some(host))
        .map(|(i, _)| queue.state(i))
}

/// The first failed node of a host, with its step name.
fn first_failure<'a>(
    plan: &'a Plan,
    res: &'a [Option<NodeResult>],
    queue: &Queue,
    host: Option<usize>,
) -> Option<(&'a str, Option<&'a NodeResult>)> {
    plan.nodes
        .iter()
        .enumerate()
        .find(|(i, n)| n.host == host && n.step.is_some() && queue.state(*i) == NodeState::Failed)
        .map(|(i, n)| {
            (
                plan.steps[n.step.expect("checked")].name.as_str(),
                res[i].as_ref(),
            )
        })
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// Removes this run's staged release from host `h`, recording `failed`
/// (best effort): whether it was removed, and whether the record was
/// written.
async fn discard(exec: &Executor, plan: &Plan, h: usize, why: &str) -> (bool, bool) {
    let p = HostPaths::of_plan(&plan.hosts[h]);
    let script = commands::discard_staged(&p, &plan.release, &plan.hosts[h].name, why);
    let r = exec
        .run_on(
            h,
            &plan.hosts[h].name,
            "discard_staged",
            &script,
            CLEANUP_TIMEOUT,
        )
        .await;
    let report = undo_report(&r);
    (r.ok, !report.ledger_failed)
}

/// What an undo script said, from its result.
fn undo_report(r: &NodeResult) -> UndoReport {
    r.output
        .as_ref()
        .map(|o| commands::parse_undo_output(&o.stdout_str()))
        .unwrap_or_default()
}

/// What undoing one host's publish gave.
#[derive(Debug, Clone, Default)]
struct Undone {
    /// The host is back on the release it had (restarted and checked where
    /// the run switched it), or was never switched.
    ok: bool,
    /// What its undo script said (`current` read back when it said
    /// nothing).
    report: UndoReport,
    /// The host said where `current` points (in its undo, or when asked
    /// again).
    answered: bool,
}

impl Undone {
    /// The undo switched `current` back (or may have: it did not say).
    fn went_back(&self) -> bool {
        self.report.switched_back != Some(false)
    }
}

/// Where `current` points on host `h`, asked again (after an undo that
/// did not say); `None` when the host does not answer.
async fn read_back(exec: &Executor, plan: &Plan, h: usize) -> Option<String> {
    let p = HostPaths::of_plan(&plan.hosts[h]);
    let r = exec
        .run_on(
            h,
            &plan.hosts[h].name,
            "read_current",
            &commands::read_current(&p),
            CLEANUP_TIMEOUT,
        )
        .await;
    let out = r.output.filter(|_| r.ok)?;
    Some(
        commands::parse_lock_output(&out.stdout_str())
            .current
            .unwrap_or_default(),
    )
}

/// The release host `h` had before this run, as a release to restore.
fn previous(plan: &Plan, before: &Before) -> Option<ReleaseInfo> {
    before.current.as_ref().map(|id| ReleaseInfo {
        id: id.clone().into(),
        commit: before.commit.clone().unwrap_or_default().into(),
        ..plan.release.clone()
    })
}

/// Puts host `h` back on the release it had before this run, where its
/// `current` points at this run's release: switch, ledger, and the restart
/// and smoke test that run on the host (the smoke test only when `hooks`
/// says so). Where it does not (the publish failed before its rename), the
/// staged release goes and `current` is left alone.
async fn switch_back(
    exec: &Executor,
    plan: &Plan,
    h: usize,
    before: &Before,
    undo: &UndoCtx<'_>,
    hooks: Hooks,
) -> Undone {
    let p = HostPaths::of_plan(&plan.hosts[h]);
    let prev = previous(plan, before);
    let hook = |name: &str, on: bool| {
        prev.as_ref()
            .filter(|_| on)
            .and_then(|prev| undo.hook(name, h, prev))
    };
    let script = commands::undo_publish(
        &p,
        &plan.release,
        &plan.hosts[h].name,
        prev.as_ref(),
        hook("restart", true).as_ref(),
        hook("smoke_test", hooks.smoke).as_ref(),
    );
    let r = exec
        .run_on(
            h,
            &plan.hosts[h].name,
            "switch_back",
            &script,
            undo.timeout(),
        )
        .await;
    let mut report = undo_report(&r);
    let mut ok = r.ok;
    if report.switched_back == Some(false) {
        // Its publish failed before the rename: a staged release to
        // discard, on a host whose `current` never moved.
        let (removed, recorded) = discard(
            exec,
            plan,
            h,
            "publish failed before `current` was switched",
        )
        .await;
        ok &= removed;
        report.ledger_failed |= !recorded;
    }
    // The script says where `current` points last, when it gets there.
    let mut answered = report.current.is_some() || (r.ok && report.switched_back.is_some());
    if !r.ok && report.current.is_none() {
        // Cut off, or stopped by a failing step: ask where `current`
        // points. An empty answer is a host without `current`.
        if let Some(c) = read_back(exec, plan, h).await {
            answered = true;
            report.current = Some(c).filter(|c| !c.is_empty());
        }
    }
    Undone {
        ok,
        report,
        answered,
    }
}

/// Which of the hooks a host's switch-back script runs itself (its
/// restart always, when it runs on the host).
#[derive(Debug, Clone, Copy)]
struct Hooks {
    smoke: bool,
}

/// Host `h`'s smoke test of its previous release after a `local: true`
/// restart, recording `verified` when it passes.
async fn smoke_after_local_restart(
    exec: &Executor,
    plan: &Plan,
    h: usize,
    before: &Before,
    undo: &UndoCtx<'_>,
) -> bool {
    let Some(prev) = previous(plan, before) else {
        return true;
    };
    let Some(smoke) = undo.hook("smoke_test", h, &prev) else {
        return true;
    };
    let p = HostPaths::of_plan(&plan.hosts[h]);
    let host = &plan.hosts[h].name;
    let script = format!(
        "set -e\n{}\n{}\n",
        commands::task(
            &p,
            &prev,
            &p.current(),
            &smoke.run,
            &smoke.env,
            smoke.retries,
            smoke.interval
        ),
        commands::ledger_append(&p, &[commands::entry(&prev, host, EventKind::Verified)])
    );
    exec.run_on(h, host, "smoke_test", &script, undo.timeout())
        .await
        .ok
}

/// Puts every host of `hosts` back on its previous release; whether each
/// made it. All at once, or, with a load balancer, batch by batch, each
/// host out of the pool until it is back and checked (see
/// [`super::load_balancer`]). An `http:` smoke test is checked from here
/// once a host is back.
async fn restore_all(
    exec: &Executor,
    plan: &Plan,
    hosts: &[usize],
    before: &[Before],
    undo: &UndoCtx<'_>,
    pool: &Pool<'_>,
) -> Vec<Undone> {
    let mut out = vec![Undone::default(); hosts.len()];
    for group in pool.groups(hosts) {
        let members: Vec<usize> = group.iter().map(|&k| hosts[k]).collect();
        pool.drain(exec, &members).await;
        let done = restore_group(exec, plan, &members, before, undo).await;
        let oks: Vec<bool> = done.iter().map(|u| u.ok).collect();
        let check: Vec<bool> = members
            .iter()
            .map(|&h| before[h].current.is_some())
            .collect();
        let oks = pool.check_and_undrain(exec, &members, oks, &check).await;
        for ((k, mut u), ok) in group.into_iter().zip(done).zip(oks) {
            // An HTTP smoke test after the switch back, or the undrain,
            // failing leaves the host needing a person.
            u.ok = ok;
            out[k] = u;
        }
    }
    out
}

/// Puts every host of `hosts` back on its previous release, all at once;
/// how each went. A `local: true` restart (or smoke test) runs once on
/// this machine when the hosts are back, never on a host: hosts switch
/// back, then the local restart runs, then each host's own smoke test.
async fn restore_group(
    exec: &Executor,
    plan: &Plan,
    hosts: &[usize],
    before: &[Before],
    undo: &UndoCtx<'_>,
) -> Vec<Undone> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let first = previous(plan, &before[hosts[0]]);
    let local = |name: &str| first.as_ref().and_then(|r| undo.local_hook(name, r));
    let (restart_local, smoke_local) = (local("restart"), local("smoke_test"));
    let hooks = Hooks {
        smoke: restart_local.is_none(),
    };
    let mut done: Vec<Undone> = futures::future::join_all(
        hosts
            .iter()
            .map(|&h| switch_back(exec, plan, h, &before[h], undo, hooks)),
    )
    .await;
    // Only hosts that were switched back need the previous release
    // restarted and checked again.
    let back: Vec<bool> = done.iter().map(|u| u.ok && u.went_back()).collect();
    let any_back = back.iter().any(|&x| x);
    let mut local_ok = true;
    if let (Some((run, timeout)), true) = (&restart_local, any_back) {
        local_ok = exec.run_local("restart", run, *timeout).await.ok;
    }
    if restart_local.is_some() && local_ok {
        let smoked =
            futures::future::join_all(hosts.iter().zip(&back).map(|(&h, &b)| async move {
                !b || smoke_after_local_restart(exec, plan, h, &before[h], undo).await
            }))
            .await;
        for (u, s) in done.iter_mut().zip(smoked) {
            u.ok &= s;
        }
    }
    if let (Some((run, timeout)), true, true) = (&smoke_local, any_back, local_ok) {
        local_ok = exec.run_local("smoke_test", run, *timeout).await.ok;
    }
    if !local_ok {
        // The hosts point at their previous release, but it was not
        // restarted or checked: that needs a person.
        for (u, b) in done.iter_mut().zip(&back) {
            if *b {
                u.ok = false;
            }
        }
    }
    done
}

/// Decides how the run ended and undoes what must be undone; fills each
/// host's summary row (`states`, `host_ok`).
#[allow(clippy::too_many_arguments)]
pub async fn settle(
    exec: &Executor,
    plan: &Plan,
    report: &RunReport,
    before: &[Before],
    states: &mut [Option<String>],
    host_ok: &mut [bool],
    undo: &UndoCtx<'_>,
    ctx: &RunCtx<'_>,
) -> (Outcome, String) {
    let s = Settlement::read(exec, plan, report, before, undo, ctx);
    let mut rows = Rows { states, host_ok };
    let (outcome, headline) = if s.failed_hard() || s.interrupted {
        s.undo(&mut rows).await
    } else {
        s.keep(&mut rows).await
    };
    let untouched: Vec<usize> = (0..plan.hosts.len())
        .filter(|&h| !s.published[h] && s.failure(Some(h)).is_none())
        .collect();
    s.pool.undrain_untouched(exec, &untouched).await;
    (outcome, s.left_drained(&mut rows, headline))
}

/// Each host's summary row, filled by [`settle`].
struct Rows<'r> {
    states: &'r mut [Option<String>],
    host_ok: &'r mut [bool],
}

impl Rows<'_> {
    fn set(&mut self, h: usize, ok: bool, state: String) {
        self.host_ok[h] = ok;
        self.states[h] = Some(state);
    }
}

/// What the executor's report says about the run, read once.
struct Settlement<'a, 'c> {
    exec: &'a Executor,
    plan: &'a Plan,
    report: &'a RunReport,
    before: &'a [Before],
    undo: &'a UndoCtx<'a>,
    ctx: &'a RunCtx<'c>,
    interrupted: bool,
    /// Hosts whose publish step succeeded: `current` is this run's release.
    published: Vec<bool>,
    /// Hosts whose publish step ran, whatever its end: `current` may have
    /// moved (a publish can fail, or lose its connection, after the
    /// rename), so their undo looks where it points.
    started: Vec<bool>,
    /// Hosts out of the load balancer's pool.
    pool: Pool<'a>,
}

impl<'a, 'c> Settlement<'a, 'c> {
    fn read(
        exec: &'a Executor,
        plan: &'a Plan,
        report: &'a RunReport,
        before: &'a [Before],
        undo: &'a UndoCtx<'a>,
        ctx: &'a RunCtx<'c>,
    ) -> Self {
        let publish = |h| step_state(plan, &report.queue, h, "publish");
        let published = (0..plan.hosts.len())
            .map(|h| publish(h) == Some(NodeState::Done))
            .collect();
        let started = (0..plan.hosts.len())
            .map(|h| matches!(publish(h), Some(NodeState::Done | NodeState::Failed)))
            .collect();
        Settlement {
            exec,
            plan,
            report,
            before,
            undo,
            ctx,
            interrupted: exec.interrupted(),
            published,
            started,
            pool: Pool::after_run(plan, report),
        }
    }

    /// Says, on each host's row and in the headline, which hosts are
    /// still out of the load balancer's pool: a person puts them back.
    fn left_drained(&self, rows: &mut Rows<'_>, headline: String) -> String {
        let drained = self.pool.drained();
        for &h in &drained {
            if let (Some(state), Some(note)) = (rows.states[h].as_mut(), self.pool.note(h)) {
                state.push_str(&format!("; {note}"));
            }
        }
        if drained.is_empty() {
            headline
        } else {
            format!(
                "{headline}; left drained (out of the load balancer's pool): {}",
                self.names(&drained)
            )
        }
    }

    /// A step failed beyond what the run tolerates. An unlock that failed
    /// is retried after this and does not fail the run, and a failure
    /// within `max_failures` does not either.
    fn failed_hard(&self) -> bool {
        let (plan, queue) = (self.plan, &self.report.queue);
        (0..plan.nodes.len()).any(|i| {
            queue.state(i) == NodeState::Failed
                && plan.nodes[i].step.is_some_and(|s| !plan.steps[s].always)
                && !plan.nodes[i]
                    .host
                    .is_some_and(|h| self.report.tolerated.contains(&h))
        })
    }

    fn names(&self, hs: &[usize]) -> String {
        hs.iter()
            .map(|&h| self.plan.hosts[h].name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Host `h`'s first failure in words, if it failed.
    fn failure(&self, h: Option<usize>) -> Option<String> {
        first_failure(self.plan, &self.report.results, &self.report.queue, h)
            .map(|(step, r)| failed_state(step, r))
    }

    /// The run succeeded: every host is on the new release, except those
    /// that failed within `max_failures`, which go back alone.
    async fn keep(&self, rows: &mut Rows<'_>) -> (Outcome, String) {
        let (plan, release) = (self.plan, &self.plan.release);
        let n_hosts = plan.hosts.len();
        let tolerated = &self.report.tolerated;
        if !tolerated.is_empty() {
            self.ctx
                .set_status(&format!("switching back {}", self.names(tolerated)));
        }
        let to_restore: Vec<usize> = tolerated
            .iter()
            .copied()
            .filter(|&h| self.started[h])
            .collect();
        let restored = restore_all(
            self.exec,
            plan,
            &to_restore,
            self.before,
            self.undo,
            &self.pool,
        )
        .await;
        let mut stuck = Vec::new();
        for &h in tolerated {
            let why = self.failure(Some(h)).unwrap_or_else(|| "failed".into());
            let state = match to_restore.iter().position(|&x| x == h) {
                Some(i) => {
                    let (note, is_stuck) = self.undone_state(h, &restored[i]);
                    if is_stuck {
                        stuck.push(h);
                    }
                    format!("{why}; tolerated (max_failures); {note}")
                }
                None => format!(
                    "{why}; tolerated (max_failures); {}",
                    current_note(&self.before[h].current)
                ),
            };
            rows.set(h, false, state);
        }
        for h in (0..n_hosts).filter(|h| !tolerated.contains(h)) {
            let verified =
                step_state(plan, &self.report.queue, h, "smoke_test") == Some(NodeState::Done);
            let state = format!(
                "on {}{}",
                release.id,
                if verified { " (verified)" } else { "" }
            );
            rows.set(h, true, state);
        }
        if !stuck.is_empty() {
            return (
                Outcome::RollbackIncomplete,
                format!(
                    "{} failed within max_failures and could not be switched back: needs a person",
                    self.names(&stuck)
                ),
            );
        }
        let headline = if tolerated.is_empty() {
            format!(
                "every host is on release {} (commit {})",
                release.id,
                short(&release.commit)
            )
        } else {
            format!(
                "release {} (commit {}) is on {} of {} hosts; {} failed within max_failures and went back to their previous release",
                release.id,
                short(&release.commit),
                n_hosts - tolerated.len(),
                n_hosts,
                self.names(tolerated)
            )
        };
        (Outcome::Success, headline)
    }

    /// The run failed or was interrupted: every host this run switched goes
    /// back, every host it only staged loses the staged release, all at
    /// once.
    async fn undo(&self, rows: &mut Rows<'_>) -> (Outcome, String) {
        let plan = self.plan;
        let (res, queue) = (&self.report.results, &self.report.queue);
        let n_hosts = plan.hosts.len();
        let (outcome, why) = if self.interrupted {
            (Outcome::Interrupted, "interrupted")
        } else {
            (Outcome::Failed, "failed")
        };
        let failed_hosts: Vec<usize> = (0..n_hosts)
            .filter(|&h| self.failure(Some(h)).is_some())
            .collect();
        let local_failure = self
            .failure(None)
            .map(|f| format!(" (local {f})"))
            .unwrap_or_default();

        let started: Vec<usize> = (0..n_hosts).filter(|&h| self.started[h]).collect();
        if !started.is_empty() {
            self.ctx.set_status(&format!(
                "switching back {} to their previous release",
                self.names(&started)
            ));
        }
        let staged: Vec<usize> = (0..n_hosts)
            .filter(|&h| !self.started[h] && created_release(plan, res, queue, h))
            .collect();
        let (restored, removed) = futures::future::join(
            restore_all(
                self.exec,
                plan,
                &started,
                self.before,
                self.undo,
                &self.pool,
            ),
            futures::future::join_all(staged.iter().map(|&h| discard(self.exec, plan, h, why))),
        )
        .await;
        let (mut stuck, mut back, mut unrecorded) = (Vec::new(), Vec::new(), Vec::new());
        for h in 0..n_hosts {
            let mut note = match self.failure(Some(h)) {
                Some(f) => f,
                None if self.published[h] => "published".to_string(),
                None => "staged, not switched".to_string(),
            };
            if let Some(i) = started.iter().position(|&x| x == h) {
                let u = &restored[i];
                let (state, is_stuck) = self.undone_state(h, u);
                note.push_str(&format!("; {state}"));
                if is_stuck {
                    stuck.push(h);
                } else if u.went_back() {
                    back.push(h);
                }
                if u.report.ledger_failed {
                    unrecorded.push(h);
                }
            } else {
                if let Some(i) = staged.iter().position(|&x| x == h) {
                    let (gone, recorded) = removed[i];
                    note.push_str(if gone {
                        "; staged release removed"
                    } else {
                        "; could not remove the staged release"
                    });
                    if !recorded {
                        note.push_str(LEDGER_NOT_WRITTEN);
                        unrecorded.push(h);
                    }
                }
                note.push_str(&format!("; {}", current_note(&self.before[h].current)));
            }
            rows.set(h, false, note);
        }
        let unrecorded = if unrecorded.is_empty() {
            String::new()
        } else {
            format!(
                "; the ledger could not be written on {}",
                self.names(&unrecorded)
            )
        };
        if !stuck.is_empty() {
            return (
                Outcome::RollbackIncomplete,
                format!(
                    "{why} and {} could not be put back on their previous release: needs a person{unrecorded}",
                    self.names(&stuck)
                ),
            );
        }
        let headline = match (started.is_empty(), back.is_empty(), self.interrupted) {
            (true, _, true) => {
                "interrupted during staging; no host was switched, staged releases removed"
                    .to_string()
            }
            (true, _, false) => format!(
                "staging failed on {}{local_failure}; no host was switched, staged releases removed",
                self.names(&failed_hosts)
            ),
            (false, true, true) => {
                "interrupted during publish; no host's `current` had moved, staged releases removed"
                    .to_string()
            }
            (false, true, false) => format!(
                "publish failed on {}{local_failure}; no host's `current` had moved, staged releases removed",
                self.names(&failed_hosts)
            ),
            (false, false, true) => format!(
                "interrupted during publish; {} went back to their previous release",
                self.names(&back)
            ),
            (false, false, false) => format!(
                "publish failed on {}{local_failure}; {} went back to their previous release",
                self.names(&failed_hosts),
                self.names(&back)
            ),
        };
        (outcome, format!("{headline}{unrecorded}"))
    }

    /// Host `h`'s end after the undo of its publish, in words, and whether
    /// it is stuck (needs a person): where its `current` points, as the
    /// host said.
    fn undone_state(&self, h: usize, u: &Undone) -> (String, bool) {
        let release = &self.plan.release;
        let now = u
            .report
            .current
            .clone()
            .or_else(|| self.before[h].current.clone().filter(|_| u.ok));
        let mut note = if !u.ok {
            match (&u.report.current, u.answered) {
                (Some(c), _) if c == release.id.as_str() => {
                    format!("could not switch back: current is still this run's release {c}")
                }
                (Some(c), _) if u.report.switched_back == Some(true) => format!(
                    "switched back, current is {c}, but its restart or smoke test failed"
                ),
                (Some(c), _) => format!(
                    "could not switch back cleanly: current is {c}, but its undo failed"
                ),
                (None, true) => "could not switch back cleanly: no release is current".to_string(),
                (None, false) => format!(
                    "could not switch back: the host did not answer, current unknown (this run's release is {})",
                    release.id
                ),
            }
        } else if u.went_back() {
            back_note(&now)
        } else {
            format!(
                "current had not moved; staged release removed; {}",
                current_note(&now)
            )
        };
        if u.report.ledger_failed {
            note.push_str(LEDGER_NOT_WRITTEN);
        }
        (note, !u.ok)
    }
}

/// Said of a host whose undo could not write its ledger records.
const LEDGER_NOT_WRITTEN: &str = "; the ledger could not be written there";

fn back_note(prev: &Option<String>) -> String {
    match prev {
        Some(p) => format!("switched back, current is {p} again"),
        None => "switched back: no release is current".to_string(),
    }
}
