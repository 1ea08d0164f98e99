//! The rollback protocol: every host back to the previous good release its
//! ledger names (or `--to ID`), restarted and smoke-tested. Offline: no
//! fetch, no upload, no git server.
//!
//! Three rounds, each a plan of per-host chains run by the executor:
//!
//! 1. **lock and read** (one round trip per host): take the deploy lock and
//!    print the host's releases, `current` and ledger. A lock held by
//!    someone else, or a host that cannot be read, ends the run before
//!    anything changes (exit 4 or 1).
//! 2. **decide**, in Rust ([`super::rollback_target`]): each host's target;
//!    hosts must agree unless `--force`. Nothing is sent.
//! 3. **switch** (one round trip per host that moves): switch, restart,
//!    smoke test, record, unlock; the chain stops at the first failure.
//!    A host whose target failed after the switch gets the **way back**
//!    (switch back, restart and smoke test the release it came from,
//!    unlock); one that cannot be put back ends the run with exit 5.
//!
//! Every path out frees the locks this run took. On an interrupt, hosts
//! not yet started stay where they are and chains already sent finish.

use std::time::Instant;

use super::event::{Event, HostSummary, Summary};
use super::executor::{EventSink, NodeResult};
use super::failure_hooks::{HookRun, NotifyRun};
use super::fleet::{Fleet, RunCtx};
use super::rollback_target::{
    self as target, reached, summary, HostEnd, NoTarget, Target, UndoVerdict, Verdict,
};
use std::time::Duration;

use crate::config::{Config, Host, LoadBalancer};
use crate::ledger::LEDGER_PATH;
use crate::lock::{holder_seen, LockHolder};
use crate::outcome::Outcome;
use crate::plan::chain::Frame;
use crate::plan::commands::{self, HostPaths, LOCKED_STATUS};
use crate::plan::failure_hooks::Failure;
use crate::plan::inspect::{self, HostReleases};
use crate::plan::notify::{self, HostOutcome, RunOutcome};
use crate::plan::planner::{batches, lb_action};
use crate::plan::render::{self, RenderError};
use crate::plan::rollback::{self as recipe, HostRollback, RollbackStep, TaskRun};
use crate::plan::targeting::{self, Targets};
use crate::plan::{Plan, PlanHost, Recipe, ReleaseInfo};
use crate::redact::Redactor;
use crate::transport::CommandOutput;

/// What a rollback is asked to do.
pub struct Request<'a> {
    pub config: &'a Config,
    pub stage: &'a str,
    /// The selected hosts of the stage.
    pub hosts: Vec<&'a Host>,
    pub to: Option<&'a str>,
    pub force: bool,
    pub holder: LockHolder,
    pub redactor: Redactor,
}

/// What the lock-and-read round found on a host.
enum Read {
    State(Box<HostReleases>),
    Held(Option<LockHolder>),
    Error(String),
}

fn read_result(r: Option<&NodeResult>) -> Read {
    let Some(r) = r else {
        return Read::Error("not run".into());
    };
    match &r.output {
        None => Read::Error(r.reason.clone().unwrap_or_else(|| "failed".into())),
        Some(o) if o.status == Some(LOCKED_STATUS) => {
            Read::Held(LockHolder::from_stderr(&o.stderr_str()))
        }
        Some(o) if !o.success() => Read::Error(format!(
            "the lock-and-read script {}",
            stderr_tail(&o.stderr_str(), o.status)
        )),
        Some(o) => match inspect::parse_releases(&o.stdout_str()) {
            Some(r) => Read::State(Box::new(r)),
            None => Read::Error("the lock-and-read script's output is incomplete".into()),
        },
    }
}

fn stderr_tail(stderr: &str, status: Option<i32>) -> String {
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    match (status, last) {
        (Some(c), Some(l)) => format!("exited {c}: {}", l.trim()),
        (Some(c), None) => format!("exited {c}"),
        (None, _) => "was killed".to_string(),
    }
}

/// How far a host's chain got, as the frames it would have printed: the
/// executor's per-node results put back in chain order.
fn chain_reached(steps: &[RollbackStep], results: &[Option<NodeResult>]) -> target::Reached {
    let mut frames = Vec::new();
    let mut error = None;
    for (i, r) in results.iter().enumerate() {
        let Some(r) = r else { break };
        frames.push(Frame::Started(i));
        match &r.output {
            Some(o) => frames.push(Frame::Ended {
                id: i,
                status: o.status.unwrap_or(-1),
                stdout: o.stdout.clone(),
                stderr: o.stderr.clone(),
            }),
            None => {
                error = r.reason.clone();
                break;
            }
        }
    }
    reached(steps, &frames, error.as_deref())
}

/// One run, once connected.
struct Run<'a, 'c> {
    req: &'a Request<'a>,
    ctx: &'a RunCtx<'c>,
    events: &'a EventSink,
    session: &'a Fleet,
    paths: Vec<HostPaths>,
    plan_hosts: Vec<PlanHost>,
    /// Whether this run's lock on each host is known to be free again.
    freed: Vec<bool>,
    /// Hosts whose lock is someone else's: never freed by this run.
    held_by_others: Vec<bool>,
    /// The release the hosts were to go to, once decided (for the failure
    /// hooks).
    target: Option<String>,
    /// For the notify hooks: the target's commit, and the release (and
    /// commit) it replaces, once decided.
    target_commit: String,
    previous: Option<(String, String)>,
    /// With a load balancer: the hosts this run took out of its pool and
    /// has not put back.
    drained: std::sync::Mutex<Vec<bool>>,
}

impl Run<'_, '_> {
    fn name(&self, i: usize) -> &str {
        &self.req.hosts[i].name
    }

    fn report(&self, host: Option<usize>, text: String) {
        self.events.send(Event::Line {
            host: host.map(|h| self.name(h).to_string()),
            text: self.req.redactor.apply(&text).into_owned(),
        });
    }

    fn release_info(&self, id: &str, commit: &str, digest: Option<String>) -> ReleaseInfo {
        ReleaseInfo {
            id: id.into(),
            commit: commit.into(),
            reference: self.req.config.branch.clone(),
            user: self.req.holder.user.clone(),
            application: self.req.config.application.clone(),
            stage: self.req.stage.into(),
            build_url: self.ctx.env.get("BUILD_URL").cloned(),
            digest,
            commit_time: None,
        }
    }

    fn plan(&self, chains: &[Option<Vec<RollbackStep>>]) -> Plan {
        let placeholder = self.release_info("rollback", "", None);
        recipe::chain_plan(self.req.stage, &placeholder, &self.plan_hosts, chains)
    }

    /// Runs one chain per host (where given) through the executor; each
    /// host's node results in chain order.
    async fn run_chains(
        &self,
        chains: &[Option<Vec<RollbackStep>>],
    ) -> Vec<Vec<Option<NodeResult>>> {
        let plan = self.plan(chains);
        let report = self.session.exec.run(&plan, |_| true, 0).await;
        let mut per_host: Vec<Vec<Option<NodeResult>>> = vec![Vec::new(); chains.len()];
        for (n, node) in plan.nodes.iter().enumerate() {
            if let Some(h) = node.host {
                per_host[h].push(report.results[n].clone());
            }
        }
        per_host
    }

    /// [`Run::run_chains`], with the stage's load balancer when it has
    /// one: the hosts go batch by batch (the stage's rollout), each host
    /// drained (then `wait`) before its chain and undrained only when its
    /// whole chain passed; a host already out of the pool (its target
    /// failed) is not drained again. A host whose drain fails is not
    /// touched. After an interrupt no new batch starts.
    async fn run_chains_lb(
        &self,
        chains: &[Option<Vec<RollbackStep>>],
    ) -> Vec<Vec<Option<NodeResult>>> {
        let Some(stage) = self.req.config.stage(self.req.stage) else {
            return self.run_chains(chains).await;
        };
        let Some(lb) = stage.load_balancer.as_ref() else {
            return self.run_chains(chains).await;
        };
        let n = chains.len();
        let mut results: Vec<Vec<Option<NodeResult>>> = vec![Vec::new(); n];
        for batch in batches(n, stage.rollout.batch, stage.rollout.canary) {
            let members: Vec<usize> = batch.into_iter().filter(|&h| chains[h].is_some()).collect();
            if members.is_empty() {
                continue;
            }
            if self.ctx.interrupted() {
                break;
            }
            let to_drain: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&h| !self.is_drained(h))
                .collect();
            let drains =
                futures::future::join_all(to_drain.iter().map(|&h| self.lb_step(lb, "drain", h)))
                    .await;
            let mut sub: Vec<Option<Vec<RollbackStep>>> = vec![None; n];
            for &h in &members {
                sub[h] = chains[h].clone();
            }
            for (&h, drained) in to_drain.iter().zip(drains) {
                self.set_drained(h, true);
                if let Err(why) = drained {
                    // Not switched: it may still be in the pool.
                    sub[h] = None;
                    results[h] = vec![Some(NodeResult {
                        ok: false,
                        output: Some(CommandOutput {
                            status: Some(1),
                            stdout: Vec::new(),
                            stderr: format!(
                                "not switched: the load balancer's drain failed ({why})"
                            )
                            .into_bytes(),
                        }),
                        reason: Some("drain failed".into()),
                        duration: Duration::ZERO,
                    })];
                }
            }
            let ran = self.run_chains(&sub).await;
            let mut healthy = Vec::new();
            for (h, r) in ran.into_iter().enumerate() {
                if sub[h].is_none() {
                    continue;
                }
                // Back in the pool: a host whose chain passed, and one
                // whose chain never started (an interrupt), still on the
                // release it served.
                if r.iter().all(|x| x.as_ref().is_none_or(|x| x.ok)) {
                    healthy.push(h);
                }
                results[h] = r;
            }
            let undrains =
                futures::future::join_all(healthy.iter().map(|&h| self.lb_step(lb, "undrain", h)))
                    .await;
            for (&h, r) in healthy.iter().zip(undrains) {
                if r.is_ok() {
                    self.set_drained(h, false);
                }
            }
        }
        results
    }

    fn is_drained(&self, h: usize) -> bool {
        self.drained.lock().expect("not poisoned")[h]
    }

    fn set_drained(&self, h: usize, out: bool) {
        self.drained.lock().expect("not poisoned")[h] = out;
    }

    /// Host `h`'s `drain` or `undrain`, run where it says, in the host's
    /// name. `Err` says why it failed.
    async fn lb_step(&self, lb: &LoadBalancer, step: &str, h: usize) -> Result<(), String> {
        if !lb.serves(self.req.hosts[h]) {
            return Ok(());
        }
        let info = self.release_info(self.target.as_deref().unwrap_or_default(), "", None);
        let ctx = render::context(self.req.config, self.req.hosts[h], &info, self.ctx.env);
        let action = lb_action(lb, step, self.req.hosts[h], &ctx, self.req.stage)
            .map_err(|e| e.to_string())?;
        let timeout = match step {
            "drain" => lb.drain.timeout + lb.wait,
            _ => lb.undrain.timeout,
        };
        let r = self
            .session
            .exec
            .run_action(h, self.name(h), step, &action, timeout)
            .await;
        match r.ok {
            true => Ok(()),
            false => Err(r.reason.unwrap_or_else(|| "failed".into())),
        }
    }

    fn task_run(&self, i: usize, name: &str, r: &ReleaseInfo) -> Result<TaskRun, RenderError> {
        let t = self
            .req
            .config
            .task(name)
            .expect("only tasks that exist run");
        let ctx = render::context(self.req.config, self.req.hosts[i], r, self.ctx.env);
        Ok(TaskRun {
            run: render::render(&t.run, &ctx, &format!("task `{}`", t.name), self.name(i))?,
            env: render::host_env(self.req.hosts[i], &ctx)?,
            retries: t.retries,
            interval: t.interval,
            timeout: t.timeout.unwrap_or(recipe::TASK_TIMEOUT),
            http: t
                .http
                .as_ref()
                .map(|spec| crate::plan::planner::http_check(t, spec, &ctx, self.name(i)))
                .transpose()?,
        })
    }

    /// Runs the failure hooks once every host's chain has ended: the failed step is the
    /// first failing host's (`rollback` when the run failed before any
    /// host switched: a host could not be read, or no target was agreed).
    async fn failure_hooks(&self, ends: &Ends) {
        let failed: Vec<(usize, &str)> = ends
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.as_ref()?.failed_step()?)))
            .collect();
        let failure = Failure {
            stage: self.req.stage.to_string(),
            release: self.target.clone().unwrap_or_default(),
            step: failed.first().map_or("rollback", |(_, s)| s).to_string(),
            hosts: failed
                .iter()
                .map(|(i, _)| self.name(*i).to_string())
                .collect(),
        };
        let release = self.release_info(&failure.release, "", None);
        self.ctx.set_status("running the failure hooks");
        let hooks = HookRun {
            recipe: Recipe::Rollback,
            config: self.req.config,
            hosts: &self.req.hosts,
            release: &release,
            env: self.ctx.env,
            failure: &failure,
        };
        super::failure_hooks::run(&self.session.exec, &hooks).await;
    }

    /// Runs the notify hooks (`after: finished`) with the run's outcome.
    async fn notify(&self, outcome: Outcome, headline: &str, ends: &Ends) {
        let n = self.req.hosts.len();
        let (previous_release, previous_commit) = self.previous.clone().unwrap_or_default();
        let release = self.release_info(
            self.target.as_deref().unwrap_or_default(),
            &self.target_commit,
            None,
        );
        let run_outcome = RunOutcome {
            recipe: "rollback".into(),
            result: notify::result_word(outcome).into(),
            application: release.application.clone(),
            stage: self.req.stage.to_string(),
            release: release.id.to_string(),
            commit: release.commit.to_string(),
            commit_time: None,
            previous_release,
            previous_commit,
            user: release.user.clone(),
            build_url: release.build_url.clone(),
            headline: headline.to_string(),
            started_at: self.ctx.now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            finished_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            hosts: (0..n)
                .map(|i| {
                    let (ok, state) = match ends.get(i).and_then(|e| e.as_ref()) {
                        Some(e) => (e.ok() && outcome == Outcome::Success, e.state()),
                        None => (false, "unchanged".to_string()),
                    };
                    HostOutcome {
                        host: self.name(i).to_string(),
                        ok,
                        state,
                    }
                })
                .collect(),
        };
        let failure = Failure {
            stage: self.req.stage.to_string(),
            release: release.id.to_string(),
            step: String::new(),
            hosts: Vec::new(),
        };
        self.ctx.set_status("running the notify hooks");
        let n = NotifyRun {
            run: HookRun {
                recipe: Recipe::Rollback,
                config: self.req.config,
                hosts: &self.req.hosts,
                release: &release,
                env: self.ctx.env,
                failure: &failure,
            },
            outcome: &run_outcome,
        };
        super::failure_hooks::notify(&self.session.exec, &n).await;
    }

    /// Frees this run's lock wherever it may still be held; the hosts
    /// where that failed.
    async fn free_locks(&mut self) -> Vec<String> {
        let chains: Vec<Option<Vec<RollbackStep>>> = (0..self.req.hosts.len())
            .map(|i| {
                (!self.freed[i] && !self.held_by_others[i]).then(|| {
                    vec![RollbackStep {
                        name: recipe::UNLOCK,
                        script: commands::unlock(&self.paths[i], &self.req.holder.token),
                        timeout: recipe::STEP_TIMEOUT,
                        check: None,
                    }]
                })
            })
            .collect();
        if chains.iter().all(Option::is_none) {
            return Vec::new();
        }
        self.ctx.set_status("freeing the deploy locks");
        let results = self.run_chains(&chains).await;
        let mut stuck = Vec::new();
        for (i, r) in results.iter().enumerate() {
            if chains[i].is_none() {
                continue;
            }
            if r.first().and_then(|r| r.as_ref()).is_some_and(|r| r.ok) {
                self.freed[i] = true;
            } else {
                stuck.push(self.name(i).to_string());
            }
        }
        stuck
    }
}

/// Runs a rollback; the outcome and the summary it ended with (already
/// sent as the last event).
pub async fn run(
    req: Request<'_>,
    ctx: &RunCtx<'_>,
    events: &EventSink,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let n = req.hosts.len();
    events.send(Event::RunStarted {
        recipe: "rollback".into(),
        stage: req.stage.to_string(),
        release: String::new(),
        commit: String::new(),
        reference: req.to.map(|t| format!("to {t}")).unwrap_or_default(),
        hosts: req.hosts.iter().map(|h| h.name.to_string()).collect(),
    });
    if let Some(id) = req.to {
        events.send(Event::Line {
            host: None,
            text: format!("rolling back to release {id}"),
        });
    }
    for name in ["restart", "smoke_test"] {
        if let Some(t) = req.config.task(name) {
            if targeting::targets(t, &req.hosts) == Targets::Local {
                events.send(Event::Line {
                    host: None,
                    text: format!(
                        "note: task `{name}` runs on this machine (`local: true`); rollback does not run it"
                    ),
                });
            }
        }
    }
    let session = Fleet::open(&req.hosts, &req.config.ssh, ctx, events, &req.redactor).await?;
    let mut run = Run {
        paths: req
            .hosts
            .iter()
            .map(|h| HostPaths::of(req.config, h))
            .collect(),
        plan_hosts: req
            .hosts
            .iter()
            .map(|h| PlanHost {
                name: h.name.clone(),
                roles: h.roles.clone(),
                transport: h.transport,
                deploy_to: h.deploy_to.clone(),
                current: req.config.current_path.clone(),
            })
            .collect(),
        req: &req,
        ctx,
        events,
        session: &session,
        freed: vec![false; n],
        held_by_others: vec![false; n],
        target: req.to.map(str::to_string),
        target_commit: String::new(),
        previous: None,
        drained: std::sync::Mutex::new(vec![false; n]),
    };
    let result = rollback(&mut run).await;
    if let Ok((Outcome::Failed | Outcome::RollbackIncomplete, _, ends)) = &result {
        run.failure_hooks(ends).await;
    }
    // Every path out frees the locks this run took.
    let stuck = run.free_locks().await;
    if let Ok((outcome, headline, ends)) = &result {
        run.notify(*outcome, headline, ends).await;
    }
    session.close().await;
    let (outcome, mut headline, ends) = result?;
    if !stuck.is_empty() {
        headline.push_str(&format!(
            "; the deploy lock on {} could not be freed: `shipit unlock {}` frees it",
            stuck.join(", "),
            req.stage
        ));
    }
    // A host out of the load balancer's pool stays there: a person puts
    // it back.
    let drained: Vec<&str> = (0..n)
        .filter(|&i| run.is_drained(i))
        .map(|i| req.hosts[i].name.as_str())
        .collect();
    if !drained.is_empty() {
        headline.push_str(&format!(
            "; left drained (out of the load balancer's pool): {}",
            drained.join(", ")
        ));
    }
    let hosts = (0..n)
        .map(|i| {
            let (ok, state) = match ends.get(i).and_then(|e| e.as_ref()) {
                Some(e) if run.is_drained(i) => (
                    e.ok(),
                    format!(
                        "{}; left drained: out of the load balancer's pool",
                        e.state()
                    ),
                ),
                Some(e) => (e.ok(), e.state()),
                None => (
                    false,
                    session.unreachable[i]
                        .as_ref()
                        .map(|w| format!("failed to connect: {w}"))
                        .unwrap_or_else(|| "unchanged".into()),
                ),
            };
            HostSummary {
                host: req.hosts[i].name.to_string(),
                ok: ok && outcome == Outcome::Success,
                state,
                round_trips: session.exec.round_trips(i),
            }
        })
        .collect();
    events.send(Event::Finished(Summary {
        recipe: "rollback".into(),
        stage: req.stage.to_string(),
        release: String::new(),
        commit: String::new(),
        ok: outcome == Outcome::Success,
        headline,
        hosts,
        duration: started.elapsed(),
        exit_code: crate::outcome::exit_code(&Ok(outcome)),
    }));
    Ok(outcome)
}

/// Every host's end, when the run got as far as deciding.
type Ends = Vec<Option<HostEnd>>;

const NOTHING: &str = "nothing was changed";

/// Lock and read, decide, switch. The caller frees the locks.
async fn rollback(run: &mut Run<'_, '_>) -> anyhow::Result<(Outcome, String, Ends)> {
    let stage = run.req.stage;
    let n = run.req.hosts.len();
    let none: Ends = vec![None; n];

    // 1. Lock and read every host.
    let holder_json = serde_json::to_string(&run.req.holder)?;
    let chains: Vec<Option<Vec<RollbackStep>>> = run
        .paths
        .iter()
        .map(|p| {
            Some(vec![RollbackStep {
                name: "lock",
                script: recipe::lock_and_read(p, &holder_json),
                timeout: recipe::STEP_TIMEOUT,
                check: None,
            }])
        })
        .collect();
    let results = run.run_chains(&chains).await;
    if run.ctx.interrupted() {
        return Ok((
            Outcome::Interrupted,
            "interrupted before anything changed".into(),
            none,
        ));
    }
    let mut states: Vec<HostReleases> = Vec::new();
    let mut held = None;
    let mut unread = Vec::new();
    for (i, r) in results.iter().enumerate() {
        match read_result(r.first().and_then(|r| r.as_ref())) {
            Read::State(s) => states.push(*s),
            Read::Held(h) => {
                run.held_by_others[i] = true;
                let who = match &h {
                    Some(h) => {
                        format!("by {}", h.describe_checked(&run.ctx.staleness, holder_seen))
                    }
                    None => "(no readable holder record)".to_string(),
                };
                run.report(Some(i), format!("locked {who}"));
                held.get_or_insert((run.name(i).to_string(), who));
            }
            Read::Error(e) => {
                // A host that was never locked needs no unlock.
                run.freed[i] = r.first().and_then(|r| r.as_ref()).is_none();
                unread.push(run.name(i).to_string());
                let _ = e;
            }
        }
    }
    if let Some((host, who)) = held {
        return Ok((
            Outcome::Locked,
            format!("refused — stage `{stage}` is locked on `{host}` {who}; {NOTHING}"),
            none,
        ));
    }
    if !unread.is_empty() {
        return Ok((
            Outcome::Failed,
            format!(
                "FAILED — could not lock and read {}; {NOTHING}",
                unread.join(", ")
            ),
            none,
        ));
    }
    for (i, s) in states.iter().enumerate() {
        let path = run.paths[i].at(LEDGER_PATH);
        if let Some(w) = crate::ledger::bad_lines_warning(run.name(i), &s.ledger.bad_lines, &path) {
            run.events.send(Event::Warning(w));
        }
    }

    // 2. Each host's target, from its ledger.
    let targets_of = |name: &str| -> Targets {
        run.req
            .config
            .task(name)
            .map(|t| targeting::targets(t, &run.req.hosts))
            .unwrap_or(Targets::Hosts(Vec::new()))
    };
    let (restart_on, smoke_on) = (targets_of("restart"), targets_of("smoke_test"));
    let choices: Vec<Result<Target, NoTarget>> = states
        .iter()
        .enumerate()
        .map(|(i, s)| target::choose(s, run.req.to, smoke_on.on_host(i), run.req.force))
        .collect();
    let decision = target::decide(
        &run.req
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        &choices,
        run.req.force,
        stage,
    );
    for (host, text) in &decision.lines {
        run.report(*host, text.clone());
    }
    let targets = match decision.targets {
        Err(why) => return Ok((Outcome::Failed, format!("refused — {why}; {NOTHING}"), none)),
        Ok(t) => t,
    };
    if let Some(t) = targets.iter().find(|t| !t.stays()) {
        run.target = Some(t.to.to_string());
        run.target_commit = t.to_commit.to_string();
        run.previous = Some((t.from.to_string(), t.from_commit.to_string()));
    }
    if targets.iter().all(|t| t.stays()) {
        let ends: Vec<(&str, HostEnd)> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (run.name(i), HostEnd::Stayed { on: t.to.clone() }))
            .collect();
        let (o, line) = summary(&ends, false);
        return Ok((o, line, ends.into_iter().map(|(_, e)| Some(e)).collect()));
    }
    if run.ctx.interrupted() {
        return Ok((
            Outcome::Interrupted,
            "interrupted before anything changed".into(),
            none,
        ));
    }

    // 3. What each host runs, rendered before any host is touched.
    let infos: Vec<Option<(ReleaseInfo, ReleaseInfo)>> = targets
        .iter()
        .map(|t| {
            (!t.stays()).then(|| {
                (
                    run.release_info(&t.from, &t.from_commit, None),
                    run.release_info(&t.to, &t.to_commit, t.to_digest.clone()),
                )
            })
        })
        .collect();
    let mut work: Vec<Option<HostRollback<'_>>> = Vec::new();
    for (i, info) in infos.iter().enumerate() {
        let Some((from, to)) = info else {
            work.push(None);
            continue;
        };
        let task =
            |on: &Targets, name: &str, r: &ReleaseInfo| -> Result<Option<TaskRun>, RenderError> {
                if on.on_host(i) {
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
            token: &run.req.holder.token,
        }));
    }

    // 4. Every host at once (up to --parallel).
    run.ctx
        .set_status("switching hosts to their rollback target");
    let started = Instant::now();
    let chains: Vec<Option<Vec<RollbackStep>>> =
        work.iter().map(|w| w.as_ref().map(recipe::steps)).collect();
    let results = run.run_chains_lb(&chains).await;
    let mut ends: Ends = vec![None; n];
    let mut undo: Vec<Option<Vec<RollbackStep>>> = vec![None; n];
    let mut pending: Vec<Option<(String, String)>> = vec![None; n];
    let mut unlocked_by_chain = vec![false; n];
    for i in 0..n {
        let t = &targets[i];
        let (Some(w), Some(steps)) = (&work[i], &chains[i]) else {
            ends[i] = Some(HostEnd::Stayed { on: t.to.clone() });
            continue;
        };
        if results[i].iter().all(Option::is_none) {
            // Interrupted before its chain was sent: it stays where it is.
            ends[i] = Some(HostEnd::NotStarted { on: t.from.clone() });
            continue;
        }
        let r = chain_reached(steps, &results[i]);
        let redact = |s: &str| run.req.redactor.apply(s).into_owned();
        let (from, to) = (t.from.clone(), t.to.clone());
        ends[i] = Some(match target::verdict(steps, &r) {
            Verdict::Done { unlocked } => {
                unlocked_by_chain[i] = unlocked;
                HostEnd::Done { from, to }
            }
            Verdict::Unrecorded { why } => HostEnd::Unrecorded {
                from,
                to,
                why: redact(&why),
            },
            Verdict::NotSwitched { why } => HostEnd::NotSwitched {
                on: from,
                why: redact(&why),
            },
            Verdict::Undo { step, why } => {
                undo[i] = Some(recipe::undo_steps(w));
                pending[i] = Some((step.to_string(), redact(&why)));
                continue;
            }
        });
    }
    for (i, u) in unlocked_by_chain.into_iter().enumerate() {
        run.freed[i] |= u;
    }
    if undo.iter().any(Option::is_some) {
        run.ctx
            .set_status("switching back hosts whose rollback target failed");
        let back = run.run_chains_lb(&undo).await;
        for i in 0..n {
            let (Some(steps), Some((step, why))) = (&undo[i], pending[i].take()) else {
                continue;
            };
            let t = &targets[i];
            let b = chain_reached(steps, &back[i]);
            let redact = |s: &str| run.req.redactor.apply(s).into_owned();
            ends[i] = Some(match target::undo_verdict(steps, &b) {
                UndoVerdict::Back { unlocked } => {
                    run.freed[i] = unlocked;
                    HostEnd::SwitchedBack {
                        on: t.from.clone(),
                        step,
                        why,
                    }
                }
                UndoVerdict::BackUnhealthy {
                    step: back_step,
                    why: back_why,
                } => HostEnd::BackUnhealthy {
                    on: t.from.clone(),
                    step,
                    why,
                    back_step: back_step.to_string(),
                    back_why: redact(&back_why),
                },
                UndoVerdict::Stuck { why: back_why } => HostEnd::Stuck {
                    on: t.to.clone(),
                    step,
                    why,
                    back_why: redact(&back_why),
                },
            });
        }
    }
    let secs = format!("{:.2}s", started.elapsed().as_secs_f64());
    for (i, e) in ends.iter().enumerate() {
        if let (Some(e), false) = (e, targets[i].stays()) {
            if let Some(line) = e.line(&targets[i], &secs) {
                run.report(Some(i), line);
            }
        }
    }
    let interrupted = run.ctx.interrupted();
    let named: Vec<(&str, HostEnd)> = ends
        .iter()
        .enumerate()
        .map(|(i, e)| (run.name(i), e.clone().expect("every host has an end")))
        .collect();
    let (outcome, line) = summary(&named, interrupted);
    Ok((outcome, line, ends))
}
