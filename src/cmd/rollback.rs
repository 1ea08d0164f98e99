//! `shipit rollback STAGE [--to ID] [--force]`: every host back to the
//! previous good release its ledger names (or `ID`), restarted and
//! smoke-tested. Fast and offline: no fetch, no upload, no git server.
//!
//! Per host, two round trips when all goes well: lock + read the state,
//! then one chain of switch, restart, smoke test, record, unlock. A host
//! whose target fails its restart or smoke test is switched back (and the
//! target marked `failed` there); one that cannot be switched back ends
//! the run with exit 5, naming it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::on_hosts::{stderr_tail, ChainRun, Connections, HostRun, SCRIPT_TIMEOUT};
use super::App;
use crate::config::{Config, Host};
use crate::lock::LockHolder;
use crate::outcome::{Outcome, UsageError};
use crate::plan::chain::ChainStep;
use crate::plan::commands::{self, HostPaths, LOCKED_STATUS};
use crate::plan::inspect::{self, HostReleases};
use crate::plan::release::is_release_id;
use crate::plan::render::{self, referenced_env, RenderError};
use crate::plan::rollback::{
    self as recipe, HostRollback, NoTarget, RollbackStep, Target, TaskRun, UndoVerdict, Verdict,
};
use crate::plan::{planner, ReleaseInfo};
use crate::redact::Redactor;

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What the lock-and-read script found on a host.
enum Read {
    State(Box<HostReleases>),
    Held(Option<LockHolder>),
    Error(String),
}

fn read_result(r: Option<&HostRun>) -> Read {
    match r {
        None => Read::Error("not run".into()),
        Some(Err(e)) => Read::Error(e.clone()),
        Some(Ok(o)) if o.status == Some(LOCKED_STATUS) => {
            Read::Held(LockHolder::from_stderr(&o.stderr_str()))
        }
        Some(Ok(o)) if !o.success() => {
            Read::Error(format!("the lock-and-read script {}", stderr_tail(o)))
        }
        Some(Ok(o)) => match inspect::parse_releases(&o.stdout_str()) {
            Some(r) => Read::State(Box::new(r)),
            None => Read::Error("the lock-and-read script's output is incomplete".into()),
        },
    }
}

/// How a host's rollback ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEnd {
    /// Already on the target (`--to`): nothing done.
    Stayed {
        on: String,
    },
    /// Not started: interrupted first.
    NotStarted {
        on: String,
    },
    Done {
        from: String,
        to: String,
    },
    /// The switch itself failed; `current` is unchanged.
    NotSwitched {
        on: String,
        why: String,
    },
    /// `step` failed on the target; the host is back on `on`.
    SwitchedBack {
        on: String,
        step: String,
        why: String,
    },
    /// Switched back to `on` after `step` failed, but `on`'s own restart or
    /// smoke test failed then: needs a person.
    BackUnhealthy {
        on: String,
        step: String,
        why: String,
        back_step: String,
        back_why: String,
    },
    /// `step` failed on the target and switching back failed too: still on
    /// `on` (or unknown). Needs a person.
    Stuck {
        on: String,
        step: String,
        why: String,
        back_why: String,
    },
    /// Rolled back and checked, but not recorded in the ledger.
    Unrecorded {
        from: String,
        to: String,
        why: String,
    },
}

/// The summary line and the outcome, from how each host ended.
pub fn summary(stage: &str, ends: &[(&str, HostEnd)], interrupted: bool) -> (Outcome, String) {
    let mut needs_person = Vec::new();
    let mut failed = Vec::new();
    let mut not_started = Vec::new();
    // (to, from) -> hosts, in first-seen order; `from` is `None` for hosts
    // that stayed.
    type Move = (String, Option<String>);
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
                "rollback {stage}: INCOMPLETE — needs a person: {}{others}{and_moved}",
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
            format!("rollback {stage}: interrupted{left}{and_moved}"),
        );
    }
    if !failed.is_empty() {
        return (
            Outcome::Failed,
            format!(
                "rollback {stage}: FAILED on {}{and_moved}",
                failed.join(", ")
            ),
        );
    }
    (
        Outcome::Success,
        format!("rollback {stage}: ok — {moved_text}"),
    )
}

/// Whether task `name` runs on each host, as a deploy runs it: on hosts
/// with one of its roles, only the first with `once`; never for a local
/// task (rollback runs nothing on this machine).
fn runs_on(config: &Config, hosts: &[&Host], name: &str) -> Vec<bool> {
    let Some(t) = config.task(name).filter(|t| !t.local) else {
        return vec![false; hosts.len()];
    };
    let mut seen = false;
    hosts
        .iter()
        .map(|h| {
            let yes = h.has_any_role(&t.roles) && !(t.once && seen);
            seen |= yes;
            yes
        })
        .collect()
}

/// Masks the secrets the tasks read. Unlike a deploy's, it does not need
/// the templates (a rollback renders none), so a missing template file
/// does not stop it.
fn redactor(app: &App, config: &Config) -> Redactor {
    app.redactor(config).unwrap_or_else(|_| {
        let mut names = BTreeSet::new();
        for t in &config.tasks {
            names.extend(referenced_env(&t.run));
        }
        Redactor::new(&names, &app.env)
    })
}

/// How far a chain got; a step that did not start because the chain could
/// not (not connected) says why.
fn reached(steps: &[RollbackStep], run: &ChainRun) -> recipe::Reached {
    let mut r = recipe::reached(steps, &run.frames, run.error.as_deref());
    if let (Some(stop), Some(why)) = (&mut r.stopped, &run.failed) {
        if !stop.ended {
            stop.why = why.clone();
        }
    }
    r
}

/// One run of the command, once the hosts are known.
struct Run<'a> {
    app: &'a App,
    config: &'a Config,
    stage: &'a str,
    hosts: Vec<&'a Host>,
    paths: Vec<HostPaths>,
    conns: Connections,
    holder: LockHolder,
    redactor: Redactor,
    /// Whether this run's lock on each host is known to be free again.
    freed: Vec<bool>,
}

impl Run<'_> {
    fn name(&self, i: usize) -> &str {
        &self.hosts[i].name
    }

    fn release_info(&self, id: &str, commit: &str, digest: Option<String>) -> ReleaseInfo {
        ReleaseInfo {
            id: id.to_string(),
            commit: commit.to_string(),
            reference: self.config.branch.clone(),
            user: self.holder.user.clone(),
            application: self.config.application.clone(),
            stage: self.stage.to_string(),
            build_url: self.app.env.get("BUILD_URL").cloned(),
            digest,
        }
    }

    fn task_run(&self, i: usize, name: &str, r: &ReleaseInfo) -> Result<TaskRun, RenderError> {
        let t = self.config.task(name).expect("only tasks that exist run");
        let ctx = render::context(self.config, self.hosts[i], r, &self.app.env);
        Ok(TaskRun {
            run: render::render(&t.run, &ctx, &format!("task `{}`", t.name), self.name(i))?,
            retries: t.retries,
            interval: t.interval,
            timeout: t.timeout.unwrap_or(recipe::TASK_TIMEOUT),
        })
    }

    /// Frees this run's lock wherever it may still be held.
    async fn free_locks(&mut self, held_by_others: &[bool]) -> Vec<String> {
        let scripts: Vec<Option<String>> = (0..self.hosts.len())
            .map(|i| {
                (!self.freed[i] && !held_by_others[i])
                    .then(|| commands::unlock(&self.paths[i], &self.holder.token))
            })
            .collect();
        let results = self
            .conns
            .run_each(&scripts, self.app.global.parallel, SCRIPT_TIMEOUT, None)
            .await
            .expect("runs to the end without a shutdown signal");
        let mut stuck = Vec::new();
        for (i, r) in results.iter().enumerate() {
            match r {
                None => {}
                Some(Ok(o)) if o.success() => self.freed[i] = true,
                Some(_) => stuck.push(self.name(i).to_string()),
            }
        }
        stuck
    }

    async fn run_chain(&self, i: usize, steps: &[RollbackStep]) -> ChainRun {
        let chain: Vec<ChainStep<'_>> = steps
            .iter()
            .enumerate()
            .map(|(id, s)| ChainStep {
                id,
                script: &s.script,
                stdin: None,
                timeout: s.timeout,
            })
            .collect();
        self.conns.run_chain(i, &chain).await
    }

    /// One host's rollback: the chain, and the way back when it fails
    /// after switching. Prints the host's line.
    async fn host(&self, i: usize, w: HostRollback<'_>) -> (HostEnd, bool) {
        let started = Instant::now();
        let name = self.name(i);
        let steps = recipe::steps(&w);
        let run = self.run_chain(i, &steps).await;
        let r = reached(&steps, &run);
        let redact = |s: &str| self.redactor.apply(s).into_owned();
        let (from, to) = (w.from.id.clone(), w.to.id.clone());
        let secs = || format!("{:.2}s", started.elapsed().as_secs_f64());
        let (end, unlocked) = match recipe::verdict(&steps, &r) {
            Verdict::Done { unlocked } => {
                println!("[{name}] rollback ok {}: now on {to} (was {from})", secs());
                (HostEnd::Done { from, to }, unlocked)
            }
            Verdict::Unrecorded { why } => {
                let why = redact(&why);
                println!(
                    "[{name}] rollback FAILED {} at record: {why}; on {to} (was {from}) and checked, but the ledger or revisions.log may lack it",
                    secs()
                );
                (HostEnd::Unrecorded { from, to, why }, false)
            }
            Verdict::NotSwitched { why } => {
                let why = redact(&why);
                println!(
                    "[{name}] rollback FAILED {} at switch: {why}; current unchanged ({from})",
                    secs()
                );
                (HostEnd::NotSwitched { on: from, why }, false)
            }
            Verdict::Undo { step, why } => {
                let why = redact(&why);
                let undo = recipe::undo_steps(&w);
                let back = self.run_chain(i, &undo).await;
                let b = reached(&undo, &back);
                match recipe::undo_verdict(&undo, &b) {
                    UndoVerdict::Back { unlocked } => {
                        println!(
                            "[{name}] rollback FAILED {} at {step}: {why}; switched back to {from} ({to} marked failed)",
                            secs()
                        );
                        (
                            HostEnd::SwitchedBack {
                                on: from,
                                step: step.to_string(),
                                why,
                            },
                            unlocked,
                        )
                    }
                    UndoVerdict::BackUnhealthy {
                        step: back_step,
                        why: back_why,
                    } => {
                        let back_why = redact(&back_why);
                        println!(
                            "[{name}] rollback FAILED {} at {step}: {why}; switched back to {from}, but its {back_step} failed: {back_why}",
                            secs()
                        );
                        (
                            HostEnd::BackUnhealthy {
                                on: from,
                                step: step.to_string(),
                                why,
                                back_step: back_step.to_string(),
                                back_why,
                            },
                            false,
                        )
                    }
                    UndoVerdict::Stuck { why: back_why } => {
                        let back_why = redact(&back_why);
                        println!(
                            "[{name}] rollback FAILED {} at {step}: {why}; could not switch back to {from}: {back_why}; still on {to}",
                            secs()
                        );
                        (
                            HostEnd::Stuck {
                                on: to,
                                step: step.to_string(),
                                why,
                                back_why,
                            },
                            false,
                        )
                    }
                }
            }
        };
        (end, unlocked)
    }
}

pub async fn run(app: &App, stage: &str, to: Option<&str>, force: bool) -> anyhow::Result<Outcome> {
    if let Some(id) = to {
        if !is_release_id(id) {
            return Err(UsageError(format!(
                "`{id}` is not a release id (like 20261124T190102Z; `shipit releases {stage}` lists them)"
            ))
            .into());
        }
    }
    let config = app.load_config()?;
    let (_, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    let holder = app.lock_holder(stage, "rollback", "rollback");
    let holder_json = serde_json::to_string(&holder)?;
    let paths: Vec<HostPaths> = hosts.iter().map(|h| HostPaths::new(&h.deploy_to)).collect();
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    println!(
        "rollback {stage}: {} host{}: {}{}",
        hosts.len(),
        plural(hosts.len()),
        names.join(", "),
        match to {
            Some(id) => format!(" (to {id})"),
            None => String::new(),
        }
    );
    for name in ["restart", "smoke_test"] {
        if config.task(name).is_some_and(|t| t.local) {
            println!("note: task `{name}` runs on this machine (`local: true`); rollback does not run it");
        }
    }

    let conns = Connections::open(&hosts, &config.ssh).await?;
    let mut run = Run {
        app,
        config: &config,
        stage,
        redactor: redactor(app, &config),
        paths,
        hosts,
        conns,
        holder,
        freed: vec![false; names.len()],
    };
    let scripts: Vec<Option<String>> = run
        .paths
        .iter()
        .map(|p| Some(recipe::lock_and_read(p, &holder_json)))
        .collect();
    let results = run
        .conns
        .run_each(
            &scripts,
            app.global.parallel,
            SCRIPT_TIMEOUT,
            Some(&app.shutdown),
        )
        .await;
    let reads: Vec<Read> = match &results {
        None => names
            .iter()
            .map(|_| Read::Error("interrupted".into()))
            .collect(),
        Some(r) => r.iter().map(|r| read_result(r.as_ref())).collect(),
    };
    let held_by_others: Vec<bool> = reads.iter().map(|r| matches!(r, Read::Held(_))).collect();

    let result = if results.is_none() {
        Ok((
            Outcome::Interrupted,
            format!("rollback {stage}: interrupted before anything changed"),
        ))
    } else {
        locked(&mut run, reads, to, force).await
    };

    // Every path out frees the locks this run took.
    let stuck = run.free_locks(&held_by_others).await;
    run.conns.close().await;
    let (outcome, line) = result?;
    let mut out = vec![String::new(), line];
    if !stuck.is_empty() {
        out.push(format!(
            "  the deploy lock on {} could not be freed: `shipit unlock {stage}` frees it",
            stuck.join(", ")
        ));
    }
    println!("{}", out.join("\n"));
    Ok(outcome)
}

/// Everything after the lock-and-read round: decide, switch, report. The
/// caller frees the locks.
async fn locked(
    run: &mut Run<'_>,
    reads: Vec<Read>,
    to: Option<&str>,
    force: bool,
) -> anyhow::Result<(Outcome, String)> {
    let app = run.app;
    let stage = run.stage;
    let n = run.hosts.len();
    let nothing = "nothing was changed";

    // 1. Every host locked and read.
    let mut states: Vec<HostReleases> = Vec::new();
    let mut held = None;
    let mut unread = Vec::new();
    for (i, r) in reads.into_iter().enumerate() {
        let name = run.name(i).to_string();
        match r {
            Read::State(s) => states.push(*s),
            Read::Held(h) => {
                let who = match &h {
                    Some(h) => format!(
                        "by {}",
                        h.describe_checked(&app.staleness(), super::lock::pid_alive)
                    ),
                    None => "(no readable holder record)".to_string(),
                };
                println!("[{name}] locked {who}");
                held.get_or_insert((name, who));
            }
            Read::Error(e) => {
                println!("[{name}] lock FAILED: {}", run.redactor.apply(&e));
                unread.push(name);
            }
        }
    }
    if let Some((host, who)) = held {
        return Ok((
            Outcome::Locked,
            format!("rollback {stage}: refused — stage `{stage}` is locked on `{host}` {who}; {nothing}"),
        ));
    }
    if !unread.is_empty() {
        return Ok((
            Outcome::Failed,
            format!(
                "rollback {stage}: FAILED — could not lock and read {}; {nothing}",
                unread.join(", ")
            ),
        ));
    }
    for (i, s) in states.iter().enumerate() {
        if let Some(w) = crate::engine::ledger_read::bad_lines_warning(
            run.name(i),
            &s.ledger.bad_lines,
            &run.paths[i].at(crate::ledger::LEDGER_PATH),
        ) {
            eprintln!("shipit: warning: {w}");
        }
    }

    // 2. Each host's target, from its ledger.
    let smoke_on = runs_on(run.config, &run.hosts, "smoke_test");
    let restart_on = runs_on(run.config, &run.hosts, "restart");
    let choices: Vec<Result<Target, NoTarget>> = states
        .iter()
        .enumerate()
        .map(|(i, s)| recipe::choose(s, to, smoke_on[i], force))
        .collect();
    let mut refusals: Vec<(String, Vec<String>)> = Vec::new();
    for (i, c) in choices.iter().enumerate() {
        let name = run.name(i).to_string();
        match c {
            Ok(t) if t.stays() => println!("[{name}] on {}: already on the target", t.from),
            Ok(t) => {
                println!("[{name}] on {}: target {}", t.from, t.to);
                if let Some(why) = &t.forced {
                    println!(
                        "[{name}] note: release {} is {why}; rolling back to it because of --force",
                        t.to
                    );
                }
            }
            Err(e) => {
                let e = e.to_string();
                println!("[{name}] refused: {e}");
                match refusals.iter_mut().find(|(m, _)| *m == e) {
                    Some((_, hosts)) => hosts.push(name),
                    None => refusals.push((e, vec![name])),
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
        return Ok((
            Outcome::Failed,
            format!("rollback {stage}: refused — {}; {nothing}", why.join("; ")),
        ));
    }
    let targets: Vec<Target> = choices.into_iter().map(|c| c.expect("checked")).collect();
    let pairs: Vec<(&str, &Target)> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (run.hosts[i].name.as_str(), t))
        .collect();
    let disagree = recipe::disagreements(&pairs);
    for d in &disagree {
        println!("{d}");
    }
    if !disagree.is_empty() && !force {
        return Ok((
            Outcome::Failed,
            format!(
                "rollback {stage}: refused — the hosts disagree (see above); `shipit rollback {stage} --force` rolls each host back to its own target; {nothing}"
            ),
        ));
    }
    if !disagree.is_empty() {
        println!("--force: each host goes to its own target");
    }
    if targets.iter().all(|t| t.stays()) {
        let ends: Vec<(&str, HostEnd)> = pairs
            .iter()
            .map(|(n, t)| (*n, HostEnd::Stayed { on: t.to.clone() }))
            .collect();
        return Ok(summary(stage, &ends, false));
    }
    if *app.shutdown.borrow() {
        return Ok((
            Outcome::Interrupted,
            format!("rollback {stage}: interrupted before anything changed"),
        ));
    }

    // 3. What each host runs, rendered before any host is touched.
    let mut infos: Vec<Option<(ReleaseInfo, ReleaseInfo)>> = Vec::new();
    for t in &targets {
        infos.push((!t.stays()).then(|| {
            (
                run.release_info(&t.from, &t.from_commit, None),
                run.release_info(&t.to, &t.to_commit, t.to_digest.clone()),
            )
        }));
    }
    let mut work = Vec::new();
    for (i, info) in infos.iter().enumerate() {
        let Some((from, to)) = info else {
            work.push(None);
            continue;
        };
        let task =
            |on: &[bool], name: &str, r: &ReleaseInfo| -> Result<Option<TaskRun>, RenderError> {
                if on[i] {
                    run.task_run(i, name, r).map(Some)
                } else {
                    Ok(None)
                }
            };
        work.push(Some(HostRollback {
            paths: &run.paths[i],
            host: run.name(i),
            from,
            to,
            restart: task(&restart_on, "restart", to)?,
            smoke_test: task(&smoke_on, "smoke_test", to)?,
            restart_back: task(&restart_on, "restart", from)?,
            smoke_test_back: task(&smoke_on, "smoke_test", from)?,
            token: &run.holder.token,
        }));
    }

    // 4. Every host at once (up to --parallel); on an interrupt, hosts not
    // yet started stay where they are and those running finish.
    let gate = Arc::new(Semaphore::new(app.global.parallel.max(1)));
    let shared: &Run<'_> = run;
    let jobs = work.into_iter().enumerate().map(|(i, w)| {
        let gate = gate.clone();
        let t = &targets[i];
        async move {
            let Some(w) = w else {
                return (HostEnd::Stayed { on: t.to.clone() }, false);
            };
            let _permit = gate.acquire_owned().await;
            if *shared.app.shutdown.borrow() {
                return (HostEnd::NotStarted { on: t.from.clone() }, false);
            }
            shared.host(i, w).await
        }
    });
    let results = futures::future::join_all(jobs).await;
    let interrupted = *app.shutdown.borrow();
    let mut ends = Vec::new();
    for (i, (end, unlocked)) in results.into_iter().enumerate() {
        if unlocked {
            run.freed[i] = true;
        }
        ends.push((run.hosts[i].name.as_str(), end));
    }
    Ok(summary(stage, &ends, interrupted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "20261120T080000Z";
    const B: &str = "20261121T080000Z";
    const C: &str = "20261122T080000Z";

    fn done(from: &str, to: &str) -> HostEnd {
        HostEnd::Done {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn summary_says_where_every_host_is() {
        // (hosts' ends, interrupted) -> (outcome, line)
        type Case<'a> = (Vec<(&'a str, HostEnd)>, bool, Outcome, String);
        let cases: Vec<Case> = vec![
            (
                vec![("fleet-1", done(B, A)), ("fleet-2", done(B, A))],
                false,
                Outcome::Success,
                format!("rollback staging: ok — every host is on release {A} (was {B})"),
            ),
            (
                vec![
                    ("fleet-1", done(C, B)),
                    ("fleet-2", done(C, B)),
                    ("fleet-3", done(B, A)),
                ],
                false,
                Outcome::Success,
                format!(
                    "rollback staging: ok — fleet-1, fleet-2 on release {B} (was {C}); fleet-3 on release {A} (was {B})"
                ),
            ),
            (
                vec![
                    ("fleet-1", done(B, A)),
                    ("fleet-2", HostEnd::Stayed { on: A.into() }),
                ],
                false,
                Outcome::Success,
                format!(
                    "rollback staging: ok — fleet-1 on release {A} (was {B}); fleet-2 on release {A} (already)"
                ),
            ),
            (
                vec![
                    ("fleet-1", done(B, A)),
                    (
                        "fleet-2",
                        HostEnd::SwitchedBack {
                            on: B.into(),
                            step: "smoke_test".into(),
                            why: "exited 1".into(),
                        },
                    ),
                ],
                false,
                Outcome::Failed,
                format!(
                    "rollback staging: FAILED on fleet-2 (smoke_test failed; switched back to {B}); fleet-1 on release {A} (was {B})"
                ),
            ),
            (
                vec![
                    ("fleet-1", done(B, A)),
                    (
                        "fleet-2",
                        HostEnd::Stuck {
                            on: A.into(),
                            step: "restart".into(),
                            why: "exited 1".into(),
                            back_why: "lost".into(),
                        },
                    ),
                ],
                false,
                Outcome::RollbackIncomplete,
                format!(
                    "rollback staging: INCOMPLETE — needs a person: fleet-2 (restart failed and it could not be switched back: still on {A}); fleet-1 on release {A} (was {B})"
                ),
            ),
            (
                vec![
                    ("fleet-1", done(B, A)),
                    ("fleet-2", HostEnd::NotStarted { on: B.into() }),
                ],
                true,
                Outcome::Interrupted,
                format!(
                    "rollback staging: interrupted — not rolled back: fleet-2 (still on {B}); fleet-1 on release {A} (was {B})"
                ),
            ),
        ];
        for (ends, interrupted, outcome, line) in cases {
            assert_eq!(
                summary("staging", &ends, interrupted),
                (outcome, line.clone()),
                "{line}"
            );
        }
    }
}
