//! The deploy protocol, start to end: lock every host or none (see
//! [`super::lock_protocol`]), mint one release id later than any on a host,
//! stage the release everywhere (fetch, create, link, templates, tasks),
//! publish batch by batch (switch, restart, smoke test), record, clean up,
//! unlock — each host's part of a phase in one round trip — then settle
//! (see [`super::settle`]): undo what must be undone and say where every
//! host is. With a [`Promotion`], the exact commit and archive the source
//! stage verified, and a `promoted` record at the end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::event::{Event, HostSummary, Summary};
use super::executor::{EventSink, Executor};
use super::fleet::{Fleet, RunCtx};
use super::lock_protocol::{acquire, stale_lock_repair, unlock, Locks, CLEANUP_TIMEOUT};
use super::settle::{current_note, settle, step_state, UndoCtx};
use crate::config::{Config, Host};
use crate::lock::{pid_alive, LockHolder};
use crate::outcome::Outcome;
use crate::plan::commands::{self, HostPaths};
use crate::plan::queue::NodeState;
use crate::plan::render::{self, RenderError};
use crate::plan::{planner, release, Filters, Phase, Plan, Recipe, ReleaseInfo};
use crate::redact::Redactor;

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

/// What a promotion adds to a deploy: the exact archive to expect, and the
/// `promoted` record to write when it succeeds.
#[derive(Debug, Clone)]
pub struct Promotion {
    pub from_stage: String,
    pub from_release: String,
    pub digest: Option<String>,
    pub approvers: Vec<String>,
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
        let line = crate::engine::gate::PromotedLine {
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
pub type HostState = BTreeMap<String, commands::LockReport>;

type Build<'a> = dyn Fn(&ReleaseInfo, Option<&HostState>) -> anyhow::Result<(Plan, Uploads)> + 'a;

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
    ctx: &RunCtx<'_>,
) -> anyhow::Result<(Outcome, String)> {
    let n_hosts = plan.hosts.len();
    // 1. Lock every host (or none), waiting for a held lock if asked to.
    let Locks {
        locked,
        before,
        existing,
        holders,
        failed: lock_failed,
    } = acquire(exec, plan, states, ctx, wait_lock).await;
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
                holder.describe_checked(&ctx.staleness, pid_alive)
            );
            if holder.is_stale(&ctx.staleness, pid_alive) {
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
    let id = release::next_release_id(ctx.now, &existing);
    if id != release.id {
        exec.events().send(Event::Notice(format!(
            "release id is {id}: {} is not later than a release already on a host",
            release.id
        )));
        release.id = id.into();
    }
    // The plan again, now with what the lock step read on each host: the
    // cleanup is decided from it (and the release id may have changed).
    let found: HostState = before
        .iter()
        .enumerate()
        .filter_map(|(h, b)| Some((plan.hosts[h].name.to_string(), b.found.clone()?)))
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
            |n| !matches!(run_plan.phase_of(n), Some(Phase::Prepare | Phase::Undo)),
            max_failures,
        )
        .await;

    let outcome = settle(
        exec, &run_plan, &report, &before, states, host_ok, undo, ctx,
    )
    .await;
    // Wherever unlock did not run (a failure, an interrupt), free the lock now.
    let still_locked: Vec<bool> = (0..n_hosts)
        .map(|h| {
            locked[h] && step_state(&run_plan, &report.queue, h, "unlock") != Some(NodeState::Done)
        })
        .collect();
    ctx.set_status("freeing the deploy locks");
    unlock(exec, plan, &still_locked).await;
    Ok(outcome)
}

/// What a deploy is asked to do, everything a host is not needed for
/// already resolved: the commit, the release id, the archive (strategy
/// copy) and the redactor.
pub struct Request<'a> {
    pub config: &'a Config,
    pub stage: &'a str,
    pub filters: &'a Filters,
    pub release: ReleaseInfo,
    /// Strategy copy: the release archive every host gets.
    pub artifact: Option<Arc<Vec<u8>>>,
    pub promotion: Option<&'a Promotion>,
    pub holder: LockHolder,
    pub redactor: Redactor,
    pub wait_lock: Option<Duration>,
}

impl Request<'_> {
    /// The plan and rendered templates for `release`.
    fn build(
        &self,
        hosts: &[&Host],
        env: &BTreeMap<String, String>,
        release: &ReleaseInfo,
        found: Option<&HostState>,
    ) -> anyhow::Result<(Plan, Uploads)> {
        let plan = planner::plan(&planner::PlanInput {
            config: self.config,
            stage: self.stage,
            recipe: Recipe::Deploy,
            release,
            filters: self.filters,
            env,
            holder: &self.holder,
            host_state: found,
        })?;
        let uploads = render_uploads(self.config, hosts, release, env)?;
        Ok((plan, uploads))
    }
}

/// Checks what can be checked without a host: the promoted archive's
/// digest, the plan, every template for every host (so a missing secret
/// fails the run before anything is touched).
pub fn prepare(req: &mut Request<'_>, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    if let Some(p) = req.promotion {
        let release = &mut req.release;
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
    let (_, hosts) = planner::select_hosts(req.config, req.stage, req.filters)?;
    req.build(&hosts, env, &req.release, None)?;
    Ok(())
}

/// Runs a deploy (after [`prepare`]) and sends its summary.
pub async fn run(
    mut req: Request<'_>,
    ctx: &RunCtx<'_>,
    events: &EventSink,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let stage = req.stage;
    let (_, hosts) = planner::select_hosts(req.config, stage, req.filters)?;
    let (mut plan, uploads) = req.build(&hosts, ctx.env, &req.release, None)?;
    let names: Vec<String> = hosts.iter().map(|h| h.name.to_string()).collect();
    events.send(Event::RunStarted {
        recipe: "deploy".into(),
        stage: stage.to_string(),
        release: req.release.id.to_string(),
        commit: req.release.commit.to_string(),
        reference: req.release.reference.clone(),
        hosts: names.clone(),
    });
    if let Some(p) = req.promotion {
        events.send(Event::Notice(format!(
            "promoting release {} (commit {}) of `{}` to `{stage}`{}",
            p.from_release,
            short(&req.release.commit),
            p.from_stage,
            if p.approvers.is_empty() {
                String::new()
            } else {
                format!(", approved by {}", p.approvers.join(", "))
            }
        )));
    }
    let mut session = Fleet::open(&hosts, &req.config.ssh, ctx, events, &req.redactor).await?;
    let mut states: Vec<Option<String>> = session
        .unreachable
        .iter()
        .map(|w| w.as_ref().map(|w| format!("failed to connect: {w}")))
        .collect();
    session.exec.set_uploads(uploads);
    session.exec.set_artifact(req.artifact.clone());

    let mut host_ok = vec![false; hosts.len()];
    let undo = UndoCtx {
        config: req.config,
        hosts: &hosts,
        env: ctx.env,
    };
    let mut release = req.release.clone();
    let build = |r: &ReleaseInfo, found: Option<&HostState>| req.build(&hosts, ctx.env, r, found);
    let outcome = deploy_phases(
        &mut session.exec,
        &mut plan,
        &mut release,
        &build,
        &mut states,
        &mut host_ok,
        &undo,
        req.wait_lock,
        ctx,
    )
    .await;
    let (outcome, mut headline) = match outcome {
        Ok(x) => x,
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    if let (Some(p), Outcome::Success) = (req.promotion, outcome) {
        if !record_promotion(&session.exec, &plan, p).await {
            headline.push_str("; the `promoted` record could not be written on every host");
        }
    }
    session.close().await;
    req.release = release;
    events.send(Event::Finished(Summary {
        recipe: "deploy".into(),
        stage: stage.to_string(),
        release: req.release.id.to_string(),
        commit: req.release.commit.to_string(),
        ok: outcome == Outcome::Success,
        headline,
        hosts: names
            .iter()
            .enumerate()
            .map(|(i, n)| HostSummary {
                host: n.clone(),
                ok: host_ok[i],
                state: states[i].clone().unwrap_or_default(),
                round_trips: session.exec.round_trips(i),
            })
            .collect(),
        duration: started.elapsed(),
        exit_code: crate::outcome::exit_code(&Ok(outcome)),
    }));
    Ok(outcome)
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
