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
use super::failure_hooks::{HookRun, NotifyRun};
use super::fleet::{Fleet, RunCtx};
use super::lock_protocol::{acquire, stale_lock_repair, unlock, Locks, CLEANUP_TIMEOUT};
use super::settle::{current_note, settle, step_state, UndoCtx};
use crate::config::{Config, Host};
use crate::lock::{holder_seen, LockHolder};
use crate::outcome::{Outcome, UsageError};
use crate::plan::commands::{self, HostPaths};
use crate::plan::failure_hooks::{self, Failure};
use crate::plan::notify::{self, HostOutcome, RunOutcome};
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
            let text: Result<String, RenderError> = render::render_template(
                &texts[ti],
                &ctx,
                &format!("template `{}`", t.src),
                &h.name,
            );
            out.insert((hi, ti), text?.into_bytes());
        }
    }
    Ok(out)
}

/// The promotion gate evaluated again once every host's lock is held: a
/// refusal sentence, or `Ok`.
pub type Recheck =
    std::sync::Arc<dyn Fn() -> futures::future::LocalBoxFuture<'static, Result<(), String>>>;

/// What a promotion adds to a deploy: the exact archive to expect, the
/// gate to evaluate again under the lock, and the `promoted` record to
/// write when it succeeds.
#[derive(Clone)]
pub struct Promotion {
    pub from_stage: String,
    pub from_release: String,
    pub digest: Option<String>,
    pub approvers: Vec<String>,
    /// With allowed signers: the promoter's signature, kept on the record.
    pub signature: Option<crate::engine::gate::PromoterSignature>,
    /// Run once the lock is held, before anything changes: a refusal frees
    /// the lock and ends the run with exit 3.
    pub recheck: Option<Recheck>,
}

impl std::fmt::Debug for Promotion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promotion")
            .field("from_stage", &self.from_stage)
            .field("from_release", &self.from_release)
            .field("digest", &self.digest)
            .field("approvers", &self.approvers)
            .field("signature", &self.signature)
            .field("recheck", &self.recheck.is_some())
            .finish()
    }
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
            signed_by: p.signature.as_ref().map(|s| s.signed_by.clone()),
            signed_time: p.signature.as_ref().map(|s| s.time.clone()),
            signature: p.signature.as_ref().map(|s| s.signature.clone()),
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
    fixed_id: bool,
    recheck: Option<&Recheck>,
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
                holder.describe_checked(&ctx.staleness, holder_seen)
            );
            if holder.is_stale(&ctx.staleness, holder_seen) {
                message.push_str(&stale_lock_repair(exec, plan, &before).await);
            }
            return Ok((Outcome::Locked, message));
        }
        return Ok((
            Outcome::Failed,
            "could not lock every host; nothing was changed".into(),
        ));
    }
    // A promotion's gate again, now that nobody else can deploy: what was
    // recorded since it was last evaluated (a rejection) counts.
    if let Some(recheck) = recheck {
        if let Err(why) = recheck().await {
            unlock(exec, plan, &locked).await;
            return Err(crate::outcome::GateError(format!(
                "promote refused once the lock was held: {why}; nothing was changed"
            ))
            .into());
        }
    }

    // 2. One release id (the run's, with its run suffix), later than any
    // release already on a host (a fixed one, `--release`, is taken as
    // given).
    if !fixed_id {
        let id = release::next_release_id(&release.id, &existing);
        if id != release.id {
            exec.events().send(Event::Notice(format!(
                "release id is {id}: {} is not later than a release already on a host",
                release.id
            )));
            release.id = id.into();
        }
    }
    // Release ids are never reused and sort in deploy order: refused, with
    // nothing changed, when the id is on a host already or sorts before a
    // release there.
    for (h, b) in before.iter().enumerate() {
        let Some(found) = &b.found else { continue };
        if let Some(why) =
            release::id_clash(&release.id, &release.commit, &found.releases, &found.ledger)
        {
            unlock(exec, plan, &locked).await;
            let hint = if fixed_id {
                ""
            } else {
                " (a release named with `deploy --release`); keep passing `--release` with ids that sort later"
            };
            return Err(UsageError(format!(
                "refusing to deploy release `{}` to `{}`: {why}{hint}; nothing was changed",
                release.id, plan.hosts[h].name
            ))
            .into());
        }
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
    // 4. The failure hooks, once the undo is done, still under the lock.
    if matches!(outcome.0, Outcome::Failed | Outcome::RollbackIncomplete) {
        let (step, hosts) = failure_hooks::of_run(&run_plan, &report.queue);
        let failure = Failure {
            stage: run_plan.stage.clone(),
            release: run_plan.release.id.to_string(),
            step,
            hosts,
        };
        ctx.set_status("running the failure hooks");
        let hooks = HookRun {
            recipe: Recipe::Deploy,
            config: undo.config,
            hosts: undo.hosts,
            release: &run_plan.release,
            env: undo.env,
            failure: &failure,
        };
        super::failure_hooks::run(exec, &hooks).await;
    }
    // Wherever unlock did not run (a failure, an interrupt), free the lock now.
    let still_locked: Vec<bool> = (0..n_hosts)
        .map(|h| {
            locked[h] && step_state(&run_plan, &report.queue, h, "unlock") != Some(NodeState::Done)
        })
        .collect();
    ctx.set_status("freeing the deploy locks");
    unlock(exec, plan, &still_locked).await;
    // 5. The notify hooks, the lock freed, whatever the result.
    let previous = before.iter().find(|b| b.current.is_some());
    let run_outcome = RunOutcome {
        recipe: "deploy".into(),
        result: notify::result_word(outcome.0).into(),
        application: run_plan.release.application.clone(),
        stage: run_plan.stage.to_string(),
        release: run_plan.release.id.to_string(),
        commit: run_plan.release.commit.to_string(),
        commit_time: run_plan.release.commit_time,
        previous_release: previous.and_then(|b| b.current.clone()).unwrap_or_default(),
        previous_commit: previous.and_then(|b| b.commit.clone()).unwrap_or_default(),
        user: run_plan.release.user.clone(),
        build_url: run_plan.release.build_url.clone(),
        headline: outcome.1.clone(),
        started_at: ctx.now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        finished_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        hosts: (0..n_hosts)
            .map(|h| HostOutcome {
                host: run_plan.hosts[h].name.to_string(),
                ok: host_ok[h],
                state: states[h].clone().unwrap_or_default(),
            })
            .collect(),
    };
    ctx.set_status("running the notify hooks");
    let failure = Failure {
        stage: run_plan.stage.to_string(),
        release: run_plan.release.id.to_string(),
        step: String::new(),
        hosts: Vec::new(),
    };
    let notify_run = NotifyRun {
        run: HookRun {
            recipe: Recipe::Deploy,
            config: undo.config,
            hosts: undo.hosts,
            release: &run_plan.release,
            env: undo.env,
            failure: &failure,
        },
        outcome: &run_outcome,
    };
    super::failure_hooks::notify(exec, &notify_run).await;
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
    /// The release id was given (`deploy --release`): used as is, never
    /// moved past the hosts' releases.
    pub fixed_id: bool,
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
        req.fixed_id,
        req.promotion.and_then(|p| p.recheck.as_ref()),
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

/// The deploy protocol run for real over `transport: local` hosts (temp
/// dirs): the lock protocol and settling, without ssh.
#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use tokio::sync::watch;

    use super::*;
    use crate::artifact::tests::git;
    use crate::config::ParseContext;
    use crate::lock::Staleness;

    /// A repository, and a config with two local hosts in `dir`; the smoke
    /// test fails where `FAIL_SMOKE` names the release's commit.
    fn world(dir: &Path) -> Config {
        let repo = dir.join("app");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("VERSION"), "1\n").unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "one"]);
        let text = format!(
            "application: shop\nrepository: {repo}\nbranch: main\nkeep_releases: 3\n\
             tasks:\n  restart:\n    run: \"echo restarted >> ../../restarts\"\n  \
             smoke_test:\n    run: \"test \\\"$(cat ../../FAIL_SMOKE 2>/dev/null)\\\" != \\\"$(cat REVISION)\\\"\"\n\
             stages:\n  s:\n    hosts:\n      \
             - {{ host: a, transport: local, deploy_to: {d}/a }}\n      \
             - {{ host: b, transport: local, deploy_to: {d}/b }}\n",
            repo = repo.display(),
            d = dir.display()
        );
        let ctx = ParseContext {
            cwd: dir.to_path_buf(),
            home: None,
        };
        crate::config::parse_with(&text, &dir.join("deploy.yml"), &ctx).expect("a valid config")
    }

    fn release(config: &Config, second: u32) -> ReleaseInfo {
        let commit = crate::git::resolve(&config.repository, "main")
            .unwrap()
            .commit;
        ReleaseInfo {
            id: format!("20261124T1901{second:02}Z").into(),
            commit: commit.into(),
            reference: "main".into(),
            user: "tester".into(),
            application: "shop".into(),
            stage: "s".into(),
            build_url: None,
            digest: None,
            commit_time: None,
        }
    }

    /// Deploys `release` to stage `s`; the outcome and every event.
    async fn deploy(config: &Config, release: ReleaseInfo) -> (Outcome, Vec<Event>) {
        let env = BTreeMap::new();
        let (_tx, shutdown) = watch::channel(false);
        let ctx = RunCtx {
            env: &env,
            parallel: 4,
            shutdown,
            staleness: Staleness {
                machine: "test-machine",
                now: chrono::Utc::now(),
                ttl: None,
            },
            now: chrono::Utc::now(),
            status: Arc::new(Mutex::new(String::new())),
        };
        let filters = Filters::default();
        let holder = LockHolder {
            user: "tester".into(),
            machine: "test-machine".into(),
            pid: std::process::id(),
            time: "2026-11-24T19:01:00Z".into(),
            stage: "s".into(),
            message: "deploy of `s`".into(),
            token: format!("token-{}", release.id),
            process: None,
        };
        let mut req = Request {
            config,
            stage: "s",
            filters: &filters,
            release,
            artifact: None,
            promotion: None,
            holder,
            redactor: Redactor::default(),
            wait_lock: None,
            fixed_id: false,
        };
        prepare(&mut req, &env).unwrap();
        let (events, mut rx) = EventSink::new();
        let outcome = run(req, &ctx, &events).await.unwrap();
        drop(events);
        let mut seen = Vec::new();
        while let Ok(e) = rx.try_recv() {
            seen.push(e);
        }
        (outcome, seen)
    }

    fn current(d: &Path) -> String {
        std::fs::read_link(d.join("current"))
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("releases/")
            .to_string()
    }

    fn summary(events: &[Event]) -> &Summary {
        match events.last() {
            Some(Event::Finished(s)) => s,
            other => panic!("the last event is the summary, not {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_publish_failing_on_one_host_puts_every_host_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = world(dir.path());
        let (ok, _) = deploy(&config, release(&config, 1)).await;
        assert_eq!(ok, Outcome::Success);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let first = current(&a);
        assert_eq!(current(&b), first);

        let repo = dir.path().join("app");
        std::fs::write(repo.join("VERSION"), "2\n").unwrap();
        git(&repo, &["commit", "-q", "-am", "two"]);
        let second = release(&config, 2);
        std::fs::write(b.join("FAIL_SMOKE"), second.commit.as_str()).unwrap();
        let (outcome, events) = deploy(&config, second).await;

        assert_eq!(outcome, Outcome::Failed);
        for d in [&a, &b] {
            assert_eq!(current(d), first, "{} went back", d.display());
            assert!(!d.join(".shipit/lock").exists(), "{} unlocked", d.display());
        }
        let s = summary(&events);
        assert_eq!(s.exit_code, 1);
        assert!(
            s.headline.starts_with("publish failed on b"),
            "{}",
            s.headline
        );
        assert!(
            s.hosts
                .iter()
                .all(|h| h.state.contains(&format!("current is {first} again"))),
            "{s:?}"
        );
        let switched_back = events
            .iter()
            .filter(|e| matches!(e, Event::StepFinished { step, .. } if step == "switch_back"))
            .count();
        assert_eq!(switched_back, 2, "both hosts went back");
    }

    #[tokio::test]
    async fn a_lock_held_on_the_first_host_changes_nothing_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let config = world(dir.path());
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join(".shipit/lock")).unwrap();
        std::fs::write(
            a.join(".shipit/lock/info"),
            r#"{"user":"bob","machine":"laptop","pid":1,"time":"2026-11-24T19:00:00Z","stage":"s","message":"hotfix","token":"bobs"}"#,
        )
        .unwrap();
        let (outcome, events) = deploy(&config, release(&config, 1)).await;
        assert_eq!(outcome, Outcome::Locked);
        let s = summary(&events);
        assert_eq!(s.exit_code, 4);
        assert!(
            s.headline.contains("locked on `a` by `bob`"),
            "{}",
            s.headline
        );
        // First host first: the second host was never touched.
        assert!(!b.join(".shipit").exists(), "b untouched");
        assert!(a.join(".shipit/lock/info").exists(), "bob's lock kept");
        assert!(!a.join("releases").exists());
    }
}
