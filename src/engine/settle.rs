//! Settling a deploy once the executor is done: deciding how it ended and
//! undoing what must be undone, so the fleet is never left half-switched.
//!
//! - Nothing failed: every host is on the new release. Hosts whose publish
//!   failed within `max_failures` go back alone and the run succeeds.
//! - A failure or an interrupt: every host this run switched goes back to
//!   the release it had (switch, restart, smoke test, ledger), all at once;
//!   every host it only staged loses the staged release (`failed` is
//!   recorded). A `local: true` restart or smoke test runs once on this
//!   machine after the hosts are back, never on a host.
//! - A host that cannot be put back ends the run with exit 5, named.
//!
//! The summary states each host's end in words (its `states` row).

use std::collections::BTreeMap;
use std::time::Duration;

use super::executor::{Executor, NodeResult, RunReport};
use super::fleet::RunCtx;
use super::load_balancer::Pool;
use super::lock_protocol::{failed_state, Before, CLEANUP_TIMEOUT};
use crate::config::{Config, Host};
use crate::ledger::EventKind;
use crate::outcome::Outcome;
use crate::plan::commands::{self, HostPaths};
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
/// succeeded, or it broke off (timeout, lost connection) part way. A script
/// that ran and refused (the dir already existed) created nothing, and what
/// is there is not this run's to remove.
pub fn created_release(plan: &Plan, res: &[Option<NodeResult>], queue: &Queue, h: usize) -> bool {
    let Some(s) = plan.step_index("create_release") else {
        return false;
    };
    plan.nodes_of_step(s)
        .filter(|(_, n)| n.host == Some(h))
        .any(|(i, _)| match queue.state(i) {
            NodeState::Done => true,
            NodeState::Failed => res[i].as_ref().is_none_or(|r| r.output.is_none()),
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

/// Removes this run's staged release from host `h`, recording `failed`.
async fn discard(exec: &Executor, plan: &Plan, h: usize, why: &str) -> bool {
    let p = HostPaths::of_plan(&plan.hosts[h]);
    let script = commands::discard_staged(&p, &plan.release, &plan.hosts[h].name, why);
    exec.run_on(
        h,
        &plan.hosts[h].name,
        "discard_staged",
        &script,
        CLEANUP_TIMEOUT,
    )
    .await
    .ok
}

/// The release host `h` had before this run, as a release to restore.
fn previous(plan: &Plan, before: &Before) -> Option<ReleaseInfo> {
    before.current.as_ref().map(|id| ReleaseInfo {
        id: id.clone().into(),
        commit: before.commit.clone().unwrap_or_default().into(),
        ..plan.release.clone()
    })
}

/// Puts host `h` back on the release it had before this run: switch,
/// ledger, and the restart and smoke test that run on the host (the smoke
/// test only when `hooks` says so).
async fn switch_back(
    exec: &Executor,
    plan: &Plan,
    h: usize,
    before: &Before,
    undo: &UndoCtx<'_>,
    hooks: Hooks,
) -> bool {
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
    exec.run_on(
        h,
        &plan.hosts[h].name,
        "switch_back",
        &script,
        undo.timeout(),
    )
    .await
    .ok
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
) -> Vec<bool> {
    let mut ok = vec![false; hosts.len()];
    for group in pool.groups(hosts) {
        let members: Vec<usize> = group.iter().map(|&k| hosts[k]).collect();
        pool.drain(exec, &members).await;
        let back = restore_group(exec, plan, &members, before, undo).await;
        let check: Vec<bool> = members
            .iter()
            .map(|&h| before[h].current.is_some())
            .collect();
        let back = pool.check_and_undrain(exec, &members, back, &check).await;
        for (k, b) in group.into_iter().zip(back) {
            ok[k] = b;
        }
    }
    ok
}

/// Puts every host of `hosts` back on its previous release, all at once;
/// whether each made it. A `local: true` restart (or smoke test) runs once
/// on this machine when the hosts are back, never on a host: hosts switch
/// back, then the local restart runs, then each host's own smoke test.
async fn restore_group(
    exec: &Executor,
    plan: &Plan,
    hosts: &[usize],
    before: &[Before],
    undo: &UndoCtx<'_>,
) -> Vec<bool> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let first = previous(plan, &before[hosts[0]]);
    let local = |name: &str| first.as_ref().and_then(|r| undo.local_hook(name, r));
    let (restart_local, smoke_local) = (local("restart"), local("smoke_test"));
    let hooks = Hooks {
        smoke: restart_local.is_none(),
    };
    let mut ok: Vec<bool> = futures::future::join_all(
        hosts
            .iter()
            .map(|&h| switch_back(exec, plan, h, &before[h], undo, hooks)),
    )
    .await;
    let any_back = ok.iter().any(|&x| x);
    let mut local_ok = true;
    if let (Some((run, timeout)), true) = (&restart_local, any_back) {
        local_ok = exec.run_local("restart", run, *timeout).await.ok;
    }
    if restart_local.is_some() && local_ok {
        let smoked = futures::future::join_all(
            hosts
                .iter()
                .map(|&h| smoke_after_local_restart(exec, plan, h, &before[h], undo)),
        )
        .await;
        for (o, s) in ok.iter_mut().zip(smoked) {
            *o &= s;
        }
    }
    if let (Some((run, timeout)), true, true) = (&smoke_local, any_back, local_ok) {
        local_ok = exec.run_local("smoke_test", run, *timeout).await.ok;
    }
    if !local_ok {
        // The hosts point at their previous release, but it was not
        // restarted or checked: that needs a person.
        ok.iter_mut().for_each(|o| *o = false);
    }
    ok
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
    /// Hosts whose `current` this run moved.
    published: Vec<bool>,
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
        let published = (0..plan.hosts.len())
            .map(|h| step_state(plan, &report.queue, h, "publish") == Some(NodeState::Done))
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
            .filter(|&h| self.published[h])
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
            let back = match to_restore.iter().position(|&x| x == h) {
                Some(i) => restored[i],
                None => true,
            };
            let state = if back {
                format!(
                    "{why}; tolerated (max_failures); {}",
                    back_note(&self.before[h].current)
                )
            } else {
                stuck.push(h);
                format!("{why}; could not switch back: still on {}", release.id)
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
        let (plan, release) = (self.plan, &self.plan.release);
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

        let switched: Vec<usize> = (0..n_hosts).filter(|&h| self.published[h]).collect();
        if !switched.is_empty() {
            self.ctx.set_status(&format!(
                "switching back {} to their previous release",
                self.names(&switched)
            ));
        }
        let staged: Vec<usize> = (0..n_hosts)
            .filter(|&h| !self.published[h] && created_release(plan, res, queue, h))
            .collect();
        let (restored, removed) = futures::future::join(
            restore_all(
                self.exec,
                plan,
                &switched,
                self.before,
                self.undo,
                &self.pool,
            ),
            futures::future::join_all(staged.iter().map(|&h| discard(self.exec, plan, h, why))),
        )
        .await;
        let mut stuck = Vec::new();
        for h in 0..n_hosts {
            let mut note = match self.failure(Some(h)) {
                Some(f) => f,
                None if self.published[h] => "published".to_string(),
                None => "staged, not switched".to_string(),
            };
            if let Some(i) = switched.iter().position(|&x| x == h) {
                if restored[i] {
                    note.push_str(&format!("; {}", back_note(&self.before[h].current)));
                } else {
                    stuck.push(h);
                    note.push_str(&format!(
                        "; could not switch back cleanly: check `current` (this run's release is {})",
                        release.id
                    ));
                }
            } else {
                if let Some(i) = staged.iter().position(|&x| x == h) {
                    note.push_str(if removed[i] {
                        "; staged release removed"
                    } else {
                        "; could not remove the staged release"
                    });
                }
                note.push_str(&format!("; {}", current_note(&self.before[h].current)));
            }
            rows.set(h, false, note);
        }
        if !stuck.is_empty() {
            return (
                Outcome::RollbackIncomplete,
                format!(
                    "{why} and {} could not be put back on their previous release: needs a person",
                    self.names(&stuck)
                ),
            );
        }
        let headline = match (switched.is_empty(), self.interrupted) {
            (true, true) => {
                "interrupted during staging; no host was switched, staged releases removed"
                    .to_string()
            }
            (true, false) => format!(
                "staging failed on {}{local_failure}; no host was switched, staged releases removed",
                self.names(&failed_hosts)
            ),
            (false, true) => format!(
                "interrupted during publish; {} went back to their previous release",
                self.names(&switched)
            ),
            (false, false) => format!(
                "publish failed on {}{local_failure}; {} went back to their previous release",
                self.names(&failed_hosts),
                self.names(&switched)
            ),
        };
        (outcome, headline)
    }
}

fn back_note(prev: &Option<String>) -> String {
    match prev {
        Some(p) => format!("switched back, current is {p} again"),
        None => "switched back: no release is current".to_string(),
    }
}
