//! `shipit deploy STAGE`: lock, stage everywhere, publish batch by batch,
//! record, clean up, unlock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::App;
use crate::config::{Config, Host};
use crate::engine::connect::{close_all, connect_all};
use crate::engine::executor::RunReport;
use crate::engine::{Event, EventSink, Executor, HostSummary, NodeResult, StepOutcome, Summary};
use crate::lock::LockHolder;
use crate::outcome::Outcome;
use crate::plan::commands::{self, HostPaths, LOCKED_STATUS};
use crate::plan::queue::{NodeState, Queue};
use crate::plan::render::{self, RenderError};
use crate::plan::{planner, release, Phase, Plan, Recipe, ReleaseInfo};
use crate::report;
use crate::transport::local::LocalTransport;
use crate::transport::Transport;

/// Undo and unlock get their own time limit, separate from the steps'.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Renders every template for every host before any host is touched, so a
/// missing secret fails the run at once.
pub fn render_uploads(
    config: &Config,
    hosts: &[&Host],
    release: &ReleaseInfo,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Uploads> {
    let mut texts = Vec::new();
    for t in &config.templates {
        texts.push(
            std::fs::read_to_string(&t.src_path)
                .with_context(|| format!("cannot read template `{}`", t.src))?,
        );
    }
    let mut out = HashMap::new();
    for (hi, h) in hosts.iter().enumerate() {
        let ctx = render::context(config, h, release, env);
        for (ti, t) in config.templates.iter().enumerate() {
            let text: Result<String, RenderError> =
                render::render(&texts[ti], &ctx, &format!("template `{}`", t.src), &h.name);
            out.insert((hi, ti), text?.into_bytes());
        }
    }
    Ok(out)
}

fn failed_state(step: &str, r: Option<&NodeResult>) -> String {
    let why = r
        .and_then(|r| r.reason.clone())
        .unwrap_or_else(|| "failed".to_string());
    format!("failed at {step}: {why}")
}

fn current_note(prev: &Option<String>) -> String {
    match prev {
        Some(p) => format!("current unchanged ({p})"),
        None => "no current release".to_string(),
    }
}

/// What a promotion adds to a deploy: the exact archive to expect, and the
/// `promoted` record to write when it succeeds.
#[derive(Debug, Clone)]
pub struct Promotion {
    pub from_stage: String,
    pub from_release: String,
    pub digest: Option<String>,
    pub approvers: Vec<String>,
}

pub async fn run(
    app: &App,
    stage: &str,
    revision: Option<&str>,
    wait_lock: Option<Duration>,
) -> anyhow::Result<Outcome> {
    run_with(app, stage, revision, wait_lock, None).await
}

/// A deploy; with `promotion`, of exactly the promoted commit and archive.
pub async fn run_with(
    app: &App,
    stage: &str,
    revision: Option<&str>,
    wait_lock: Option<Duration>,
    promotion: Option<&Promotion>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let config = app.load_config()?;
    let filters = app.filters();
    let (_, hosts) = planner::select_hosts(&config, stage, &filters)?;
    let mut release = app.release_info(&config, stage, revision)?;
    let artifact = app.artifact(&config, &mut release)?;
    if let Some(p) = promotion {
        release.reference = format!("{} release {}", p.from_stage, p.from_release);
        if p.digest.is_some() && release.digest != p.digest {
            return Err(crate::outcome::GateError(format!(
                "the archive built here for commit {} has digest {}, but `{}` verified {}: refusing to promote a different archive",
                release.commit,
                release.digest.as_deref().unwrap_or("(none: strategy git)"),
                p.from_stage,
                p.digest.as_deref().unwrap_or("-")
            ))
            .into());
        }
    }
    let redactor = app.redactor(&config)?;
    let holder = app.lock_holder(stage, &release.id, "deploy");
    let build =
        |release: &ReleaseInfo, found: Option<&HostState>| -> anyhow::Result<(Plan, Uploads)> {
            let plan = planner::plan(&planner::PlanInput {
                config: &config,
                stage,
                recipe: Recipe::Deploy,
                release,
                filters: &filters,
                env: &app.env,
                holder: &holder,
                host_state: found,
            })?;
            let uploads = render_uploads(&config, &hosts, release, &app.env)?;
            Ok((plan, uploads))
        };
    // Everything that can fail without a host is checked before connecting.
    let (mut plan, uploads) = build(&release, None)?;

    let (sink, rx) = EventSink::new();
    let reporter = tokio::spawn(report::drive_output(rx, app.output.clone()));
    let control = tempfile::Builder::new()
        .prefix("shipit-")
        .tempdir_in(std::env::temp_dir())
        .context("cannot create a directory for ssh control sockets")?;

    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    sink.send(Event::RunStarted {
        recipe: "deploy".into(),
        stage: stage.to_string(),
        release: release.id.clone(),
        commit: release.commit.clone(),
        reference: release.reference.clone(),
        hosts: names.clone(),
    });

    if let Some(p) = promotion {
        sink.send(Event::Notice(format!(
            "promoting release {} (commit {}) of `{}` to `{stage}`{}",
            p.from_release,
            &release.commit[..release.commit.len().min(12)],
            p.from_stage,
            if p.approvers.is_empty() {
                String::new()
            } else {
                format!(", approved by {}", p.approvers.join(", "))
            }
        )));
    }
    let conns = connect_all(&hosts, &config.ssh, control.path()).await;
    let mut states: Vec<Option<String>> = vec![None; hosts.len()];
    let transports: Vec<Option<Arc<dyn Transport>>> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| match c {
            Ok(t) => Some(t),
            Err(e) => {
                let why = redactor.apply(&e.to_string()).into_owned();
                sink.send(Event::StepFinished {
                    host: names[i].clone(),
                    step: "connect".into(),
                    outcome: StepOutcome::Failed(why.clone()),
                    duration: Duration::ZERO,
                    tail: Vec::new(),
                });
                states[i] = Some(format!("failed to connect: {why}"));
                None
            }
        })
        .collect();
    let local: Arc<dyn Transport> = Arc::new(LocalTransport::new("local"));
    let mut exec = Executor::new(
        transports.clone(),
        local,
        uploads,
        sink.clone(),
        redactor.clone(),
        app.global.parallel,
        app.shutdown.clone(),
    );
    exec.set_artifact(artifact.map(|a| a.bytes));

    let mut host_ok = vec![false; hosts.len()];
    let undo = UndoCtx {
        config: &config,
        hosts: &hosts,
        env: &app.env,
    };
    let outcome = deploy_phases(
        &mut exec,
        &mut plan,
        &mut release,
        &build,
        &mut states,
        &mut host_ok,
        &undo,
        wait_lock,
        app,
    )
    .await;

    let (outcome, mut headline) = match outcome {
        Ok(x) => x,
        Err(e) => {
            close_all(&transports).await;
            return Err(e);
        }
    };
    if let (Some(p), Outcome::Success) = (promotion, outcome) {
        if !record_promotion(&exec, &plan, p).await {
            headline.push_str("; the `promoted` record could not be written on every host");
        }
    }
    close_all(&transports).await;
    let summary = Summary {
        recipe: "deploy".into(),
        stage: stage.to_string(),
        release: release.id.clone(),
        commit: release.commit.clone(),
        ok: outcome == Outcome::Success,
        headline,
        hosts: names
            .iter()
            .enumerate()
            .map(|(i, n)| HostSummary {
                host: n.clone(),
                ok: host_ok[i],
                state: states[i].clone().unwrap_or_default(),
                round_trips: exec.round_trips(i),
            })
            .collect(),
        duration: started.elapsed(),
    };
    sink.send(Event::Finished(summary));
    drop(exec);
    drop(sink);
    let _ = reporter.await;
    Ok(outcome)
}

/// Appends the `promoted` line to every host's ledger.
async fn record_promotion(exec: &Executor, plan: &Plan, p: &Promotion) -> bool {
    let jobs = (0..plan.hosts.len()).map(|h| {
        let host = &plan.hosts[h];
        let mut entry = commands::entry(
            &plan.release,
            &host.name,
            crate::ledger::EventKind::Promoted,
        );
        entry.time = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        // Also in words, for readers of the plain entry (`shipit history`).
        entry.detail = Some(format!(
            "from {} release {}; approved by {}",
            p.from_stage,
            p.from_release,
            if p.approvers.is_empty() {
                "nobody (the gate asks for no approval)".to_string()
            } else {
                p.approvers.join(", ")
            }
        ));
        let line = crate::gate::PromotedLine {
            entry,
            from_stage: p.from_stage.clone(),
            from_release: p.from_release.clone(),
            approvers: p.approvers.clone(),
        };
        let script = commands::ledger_append_raw(
            &HostPaths::new(&host.deploy_to),
            &serde_json::to_string(&line).expect("ledger lines serialise"),
        );
        async move {
            exec.run_on(h, &host.name, "record_promotion", &script, CLEANUP_TIMEOUT)
                .await
                .ok
        }
    });
    futures::future::join_all(jobs)
        .await
        .into_iter()
        .all(|ok| ok)
}

/// Rendered templates by (host, template).
type Uploads = HashMap<(usize, usize), Vec<u8>>;

/// What each host's lock step read, by host name (the cleanup is decided
/// from it).
type HostState = BTreeMap<String, commands::LockReport>;

type Build<'a> = dyn Fn(&ReleaseInfo, Option<&HostState>) -> anyhow::Result<(Plan, Uploads)> + 'a;

/// What undoing a publish needs to rebuild the previous release's hooks.
struct UndoCtx<'a> {
    config: &'a Config,
    hosts: &'a [&'a Host],
    env: &'a BTreeMap<String, String>,
}

impl UndoCtx<'_> {
    fn hook(&self, name: &str, h: usize, release: &ReleaseInfo) -> Option<commands::HookCommand> {
        let t = self.config.task(name)?;
        if !self.hosts[h].has_any_role(&t.roles) {
            return None;
        }
        let ctx = render::context(self.config, self.hosts[h], release, self.env);
        // It rendered for this run's release, so it renders for the previous.
        let run = render::render(&t.run, &ctx, name, &self.hosts[h].name).ok()?;
        Some(commands::HookCommand {
            run,
            retries: t.retries,
            interval: t.interval,
        })
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

/// Where each host stood before this run, from its lock step.
#[derive(Debug, Clone, Default)]
struct Before {
    current: Option<String>,
    commit: Option<String>,
    /// Everything the lock step read, when this run took the lock.
    found: Option<commands::LockReport>,
}

/// The run proper, once connected. Never leaves a lock it took: every path
/// out goes through the unlock at the end.
#[allow(clippy::too_many_arguments)]
async fn deploy_phases(
    exec: &mut Executor,
    plan: &mut Plan,
    release: &mut ReleaseInfo,
    build: &Build<'_>,
    states: &mut [Option<String>],
    host_ok: &mut [bool],
    undo: &UndoCtx<'_>,
    wait_lock: Option<Duration>,
    app: &App,
) -> anyhow::Result<(Outcome, String)> {
    let n_hosts = plan.hosts.len();
    // 1. Lock every host (or none), waiting for a held lock if asked to.
    let lock_plan = plan.clone();
    let deadline = wait_lock.map(|d| Instant::now() + d);
    let mut shutdown = app.shutdown.clone();
    let mut waited = false;
    let (locked, before, existing, holders, lock_failed) = loop {
        for s in states.iter_mut() {
            if s.as_deref().is_some_and(|x| x.starts_with("locked")) {
                *s = None;
            }
        }
        let (got, tried) = lock_in_order(exec, &lock_plan, states, app).await;
        let (locked, _, _, holders, failed) = &got;
        let only_held = *failed
            && !holders.is_empty()
            && (0..n_hosts).all(|h| !tried[h] || locked[h] || holders.iter().any(|(x, _)| *x == h));
        match deadline {
            Some(d) if only_held && Instant::now() < d && !exec.interrupted() => {
                unlock(exec, plan, locked).await;
                if !waited {
                    let (h, holder) = &holders[0];
                    exec.events().send(Event::Notice(format!(
                        "stage `{}` is locked on `{}` by {}; waiting for it (--wait-lock)",
                        plan.stage,
                        plan.hosts[*h].name,
                        holder.describe()
                    )));
                    waited = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(LOCK_POLL) => {}
                    _ = shutdown.changed() => {}
                }
            }
            _ => break got,
        }
    };
    if lock_failed || exec.interrupted() {
        unlock(exec, plan, &locked).await;
        for h in 0..n_hosts {
            if states[h].is_none() {
                states[h] = Some(format!("untouched; {}", current_note(&before[h].current)));
            }
        }
        if exec.interrupted() {
            return Ok((
                Outcome::Interrupted,
                "interrupted before anything changed; locks freed".into(),
            ));
        }
        if let Some((h, holder)) = holders.first() {
            let mut message = format!(
                "stage `{}` is locked on `{}` by {}; nothing was changed",
                plan.stage,
                plan.hosts[*h].name,
                holder.describe_checked(&app.staleness(), super::lock::pid_alive)
            );
            if holder.is_stale(&app.staleness(), super::lock::pid_alive) {
                message.push_str(&stale_lock_repair(exec, plan, &before).await);
            }
            return Ok((Outcome::Locked, message));
        }
        return Ok((
            Outcome::Failed,
            "could not lock every host; nothing was changed".into(),
        ));
    }

    // 2. One release id, later than any release already on a host.
    let id = release::next_release_id(app.now, &existing);
    if id != release.id {
        exec.events().send(Event::Notice(format!(
            "release id is {id}: {} is not later than a release already on a host",
            release.id
        )));
        release.id = id;
    }
    // The plan again, now with what the lock step read on each host: the
    // cleanup is decided from it (and the release id may have changed).
    let found: HostState = before
        .iter()
        .enumerate()
        .filter_map(|(h, b)| Some((plan.hosts[h].name.clone(), b.found.clone()?)))
        .collect();
    let (p, uploads) = build(release, Some(&found))?;
    *plan = p;
    exec.set_uploads(uploads);

    // 3. Stage, publish, record, clean up, unlock. Each host's part of a
    // phase goes as one round trip; on success unlock rides along with the
    // finish phase.
    let run_plan = plan.clone();
    let max_failures = undo
        .config
        .stage(&run_plan.stage)
        .map(|s| s.max_failures as usize)
        .unwrap_or(0);
    let report = exec
        .run(
            &run_plan,
            |n| run_plan.phase_of(n) != Some(Phase::Prepare),
            max_failures,
        )
        .await;

    let outcome = settle(
        exec, &run_plan, &report, &before, states, host_ok, undo, app,
    )
    .await;
    // Wherever unlock did not run (a failure, an interrupt), free the lock now.
    let still_locked: Vec<bool> = (0..n_hosts)
        .map(|h| {
            locked[h] && step_state(&run_plan, &report.queue, h, "unlock") != Some(NodeState::Done)
        })
        .collect();
    app.set_status("freeing the deploy locks");
    unlock(exec, plan, &still_locked).await;
    Ok(outcome)
}

/// How often a deploy with `--wait-lock` tries the lock again.
const LOCK_POLL: Duration = Duration::from_secs(2);

type LockOutcome = (
    Vec<bool>,
    Vec<Before>,
    Vec<String>,
    Vec<(usize, LockHolder)>,
    bool,
);

/// Takes the lock on the plan's first host, and only when that worked on
/// the others (at once): every run takes the stage's hosts in the same
/// order, so of two runs started together exactly one gets the first host
/// and the other touches no further host, instead of each taking some and
/// both being refused. Also says which hosts were tried.
async fn lock_in_order(
    exec: &mut Executor,
    lock_plan: &Plan,
    states: &mut [Option<String>],
    app: &App,
) -> (LockOutcome, Vec<bool>) {
    let n_hosts = lock_plan.hosts.len();
    let prepare = |n: usize| lock_plan.phase_of(n) == Some(Phase::Prepare);
    let first = |n: usize| lock_plan.nodes[n].host == Some(0);
    let report = exec.run(lock_plan, |n| prepare(n) && first(n), 0).await;
    let mut got = collect_locks(lock_plan, &report, states, app, |h| h == 0);
    if got.4 || n_hosts < 2 || exec.interrupted() {
        let tried = (0..n_hosts).map(|h| h == 0).collect();
        return (got, tried);
    }
    let report = exec.run(lock_plan, |n| prepare(n) && !first(n), 0).await;
    let rest = collect_locks(lock_plan, &report, states, app, |h| h != 0);
    for h in 1..n_hosts {
        got.0[h] = rest.0[h];
        got.1[h] = rest.1[h].clone();
    }
    got.2.extend(rest.2);
    got.3.extend(rest.3);
    got.4 |= rest.4;
    (got, vec![true; n_hosts])
}

/// What to say after a deploy was refused by a stale lock (its run is
/// gone, killed mid-way): free it, and, when that run left the hosts on
/// different releases (a half-switched fleet), which host is on which and
/// the command that makes them agree again. Hosts whose lock step did not
/// say where `current` is are asked (read only).
async fn stale_lock_repair(exec: &Executor, plan: &Plan, before: &[Before]) -> String {
    let mut currents: Vec<Option<String>> = before.iter().map(|b| b.current.clone()).collect();
    let probes = (0..plan.hosts.len())
        .filter(|&h| currents[h].is_none())
        .map(|h| async move {
            let p = HostPaths::new(&plan.hosts[h].deploy_to);
            let r = exec
                .run_on(
                    h,
                    &plan.hosts[h].name,
                    "read_current",
                    &commands::read_current(&p),
                    CLEANUP_TIMEOUT,
                )
                .await;
            let current = r
                .output
                .filter(|o| o.success())
                .and_then(|o| commands::parse_lock_output(&o.stdout_str()).current);
            (h, current)
        });
    for (h, c) in futures::future::join_all(probes).await {
        currents[h] = c;
    }
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    repair_advice(&plan.stage, &names, &currents)
}

/// The repair sentence of [`stale_lock_repair`], from each host's current
/// release (`None`: none, or not known).
fn repair_advice(stage: &str, hosts: &[&str], currents: &[Option<String>]) -> String {
    let mut groups: Vec<(Option<&str>, Vec<&str>)> = Vec::new();
    for (host, c) in hosts.iter().zip(currents) {
        match groups.iter_mut().find(|(g, _)| *g == c.as_deref()) {
            Some((_, hs)) => hs.push(host),
            None => groups.push((c.as_deref(), vec![host])),
        }
    }
    let unlock = format!("`shipit unlock {stage}`");
    if groups.len() < 2 {
        return format!("; the run that held it is gone: free it with {unlock}, then deploy again");
    }
    // Release ids sort by time: the oldest is where the fleet came from.
    groups.sort_by(|a, b| b.0.cmp(&a.0));
    let where_ = groups
        .iter()
        .map(|(c, hs)| format!("{} on {}", c.unwrap_or("no release"), hs.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    let back = groups
        .iter()
        .filter_map(|(c, _)| *c)
        .next_back()
        .filter(|_| groups.iter().all(|(c, _)| c.is_some()))
        .map(|oldest| {
            format!(", or `shipit rollback {stage} --to {oldest} --force` to put every host back on {oldest}")
        })
        .unwrap_or_default();
    format!(
        "; the run that held it is gone and left the hosts on different releases ({where_}): \
         free the lock with {unlock}, then run `shipit deploy {stage}` to bring every host to a new release{back}"
    )
}

/// Reads the lock step's results: which hosts this run locked, where each
/// stood, the releases already there, who holds the others.
fn collect_locks(
    lock_plan: &Plan,
    report: &RunReport,
    states: &mut [Option<String>],
    app: &App,
    tried: impl Fn(usize) -> bool,
) -> LockOutcome {
    let (res, queue) = (&report.results, &report.queue);
    let n_hosts = lock_plan.hosts.len();
    let mut locked = vec![false; n_hosts];
    let mut before: Vec<Before> = vec![Before::default(); n_hosts];
    let mut existing: Vec<String> = Vec::new();
    let mut holders: Vec<(usize, LockHolder)> = Vec::new();
    let mut lock_failed = false;
    for (n, node) in lock_plan.nodes.iter().enumerate() {
        let (Some(h), Some(Phase::Prepare)) = (node.host, lock_plan.phase_of(n)) else {
            continue;
        };
        if !tried(h) {
            continue;
        }
        match (&res[n], queue.state(n)) {
            (Some(r), NodeState::Done) => {
                locked[h] = true;
                let rep = commands::parse_lock_output(
                    &r.output
                        .as_ref()
                        .map(|o| o.stdout_str())
                        .unwrap_or_default(),
                );
                existing.extend(rep.releases.iter().cloned());
                before[h] = Before {
                    current: rep.current.clone(),
                    commit: rep.current_commit.clone(),
                    found: Some(rep),
                };
            }
            (r, _) => {
                lock_failed = true;
                let out = r.as_ref().and_then(|r| r.output.as_ref());
                if let Some(o) = out.filter(|o| o.status == Some(LOCKED_STATUS)) {
                    // A held lock's script still says where `current` is.
                    let rep = commands::parse_lock_output(&o.stdout_str());
                    before[h] = Before {
                        current: rep.current,
                        commit: rep.current_commit,
                        found: None,
                    };
                    match LockHolder::from_stderr(&o.stderr_str()) {
                        Some(holder) => {
                            states[h] = Some(format!(
                                "locked by {}",
                                holder.describe_checked(&app.staleness(), super::lock::pid_alive)
                            ));
                            holders.push((h, holder));
                        }
                        None => states[h] = Some("locked (no holder record)".into()),
                    }
                } else if states[h].is_none() {
                    states[h] = Some(failed_state("lock", r.as_ref()));
                }
            }
        }
    }
    (locked, before, existing, holders, lock_failed)
}

/// Whether this run may have created its release dir on host `h`: the step
/// succeeded, or it broke off (timeout, lost connection) part way. A script
/// that ran and refused (the dir already existed) created nothing, and what
/// is there is not this run's to remove.
fn created_release(plan: &Plan, res: &[Option<NodeResult>], queue: &Queue, h: usize) -> bool {
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

fn step_state(plan: &Plan, queue: &Queue, host: usize, step: &str) -> Option<NodeState> {
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
    let p = HostPaths::new(&plan.hosts[h].deploy_to);
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

/// Puts host `h` back on the release it had before this run: switch,
/// restart, smoke test, ledger.
async fn restore(
    exec: &Executor,
    plan: &Plan,
    h: usize,
    before: &Before,
    undo: &UndoCtx<'_>,
) -> bool {
    let p = HostPaths::new(&plan.hosts[h].deploy_to);
    let r = &plan.release;
    let prev = before.current.as_ref().map(|id| ReleaseInfo {
        id: id.clone(),
        commit: before.commit.clone().unwrap_or_default(),
        ..r.clone()
    });
    let (restart, smoke) = match &prev {
        Some(prev) => (
            undo.hook("restart", h, prev),
            undo.hook("smoke_test", h, prev),
        ),
        None => (None, None),
    };
    let script = commands::undo_publish(
        &p,
        r,
        &plan.hosts[h].name,
        prev.as_ref(),
        restart.as_ref(),
        smoke.as_ref(),
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

/// Decides how the run ended and undoes what must be undone.
#[allow(clippy::too_many_arguments)]
async fn settle(
    exec: &mut Executor,
    plan: &Plan,
    report: &RunReport,
    before: &[Before],
    states: &mut [Option<String>],
    host_ok: &mut [bool],
    undo: &UndoCtx<'_>,
    app: &App,
) -> (Outcome, String) {
    let (res, queue) = (&report.results, &report.queue);
    let n_hosts = plan.hosts.len();
    let tolerated: Vec<usize> = report.tolerated.clone();
    // An unlock that failed is retried after this; it does not fail the run,
    // and a tolerated failure does not either.
    let failed_hard = (0..plan.nodes.len()).any(|i| {
        queue.state(i) == NodeState::Failed
            && plan.nodes[i].step.is_some_and(|s| !plan.steps[s].always)
            && !plan.nodes[i].host.is_some_and(|h| tolerated.contains(&h))
    });
    let interrupted = exec.interrupted();
    let published: Vec<bool> = (0..n_hosts)
        .map(|h| step_state(plan, queue, h, "publish") == Some(NodeState::Done))
        .collect();
    let release = &plan.release;
    let names = |hs: &[usize]| {
        hs.iter()
            .map(|&h| plan.hosts[h].name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };

    if !failed_hard && !interrupted {
        // Hosts whose publish failed within max_failures go back alone.
        let mut stuck = Vec::new();
        if !tolerated.is_empty() {
            app.set_status(&format!("switching back {}", names(&tolerated)));
        }
        for &h in &tolerated {
            let why = first_failure(plan, res, queue, Some(h))
                .map(|(step, r)| failed_state(step, r))
                .unwrap_or_else(|| "failed".into());
            let ok = !published[h] || restore(exec, plan, h, &before[h], undo).await;
            host_ok[h] = false;
            states[h] = Some(if ok {
                format!(
                    "{why}; tolerated (max_failures); {}",
                    back_note(&before[h].current)
                )
            } else {
                stuck.push(h);
                format!("{why}; could not switch back: still on {}", release.id)
            });
        }
        for h in 0..n_hosts {
            if tolerated.contains(&h) {
                continue;
            }
            let verified = step_state(plan, queue, h, "smoke_test") == Some(NodeState::Done);
            host_ok[h] = true;
            states[h] = Some(format!(
                "on {}{}",
                release.id,
                if verified { " (verified)" } else { "" }
            ));
        }
        if !stuck.is_empty() {
            return (
                Outcome::RollbackIncomplete,
                format!(
                    "{} failed within max_failures and could not be switched back: needs a person",
                    names(&stuck)
                ),
            );
        }
        let mut headline = format!(
            "every host is on release {} (commit {})",
            release.id,
            short(&release.commit)
        );
        if !tolerated.is_empty() {
            headline = format!(
                "release {} (commit {}) is on {} of {} hosts; {} failed within max_failures and went back to their previous release",
                release.id,
                short(&release.commit),
                n_hosts - tolerated.len(),
                n_hosts,
                names(&tolerated)
            );
        }
        return (Outcome::Success, headline);
    }

    let outcome = if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Failed
    };
    let why = if interrupted { "interrupted" } else { "failed" };
    let failed_hosts: Vec<usize> = (0..n_hosts)
        .filter(|&h| first_failure(plan, res, queue, Some(h)).is_some())
        .collect();
    let mut local_failure = String::new();
    if let Some((step, r)) = first_failure(plan, res, queue, None) {
        local_failure = format!(" (local {})", failed_state(step, r));
    }

    // Every host this run switched goes back; every host it only staged
    // loses the staged release.
    let switched: Vec<usize> = (0..n_hosts).filter(|&h| published[h]).collect();
    if !switched.is_empty() {
        app.set_status(&format!(
            "switching back {} to their previous release",
            names(&switched)
        ));
    }
    let mut stuck = Vec::new();
    for h in 0..n_hosts {
        host_ok[h] = false;
        let mut note = match first_failure(plan, res, queue, Some(h)) {
            Some((step, r)) => failed_state(step, r),
            None if published[h] => "published".to_string(),
            None => "staged, not switched".to_string(),
        };
        if published[h] {
            if restore(exec, plan, h, &before[h], undo).await {
                note.push_str(&format!("; {}", back_note(&before[h].current)));
            } else {
                stuck.push(h);
                note.push_str(&format!(
                    "; could not switch back cleanly: check `current` (this run's release is {})",
                    release.id
                ));
            }
        } else {
            if created_release(plan, res, queue, h) {
                let removed = discard(exec, plan, h, why).await;
                note.push_str(if removed {
                    "; staged release removed"
                } else {
                    "; could not remove the staged release"
                });
            }
            note.push_str(&format!("; {}", current_note(&before[h].current)));
        }
        states[h] = Some(note);
    }
    if !stuck.is_empty() {
        return (
            Outcome::RollbackIncomplete,
            format!(
                "{why} and {} could not be put back on their previous release: needs a person",
                names(&stuck)
            ),
        );
    }
    let headline = match (switched.is_empty(), interrupted) {
        (true, true) => {
            "interrupted during staging; no host was switched, staged releases removed".to_string()
        }
        (true, false) => format!(
            "staging failed on {}{local_failure}; no host was switched, staged releases removed",
            names(&failed_hosts)
        ),
        (false, true) => format!(
            "interrupted during publish; {} went back to their previous release",
            names(&switched)
        ),
        (false, false) => format!(
            "publish failed on {}{local_failure}; {} went back to their previous release",
            names(&failed_hosts),
            names(&switched)
        ),
    };
    (outcome, headline)
}

fn back_note(prev: &Option<String>) -> String {
    match prev {
        Some(p) => format!("switched back, current is {p} again"),
        None => "switched back: no release is current".to_string(),
    }
}

/// Frees the lock on every host where this run took it.
async fn unlock(exec: &Executor, plan: &Plan, locked: &[bool]) {
    let Some(si) = plan.step_index("unlock") else {
        return;
    };
    let mut jobs = Vec::new();
    for (_, node) in plan.nodes_of_step(si) {
        let Some(h) = node.host else { continue };
        if locked[h] {
            jobs.push(exec.run_on(
                h,
                &plan.hosts[h].name,
                "unlock",
                node.action.script(),
                CLEANUP_TIMEOUT,
            ));
        }
    }
    futures::future::join_all(jobs).await;
}
