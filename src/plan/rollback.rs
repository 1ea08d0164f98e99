//! The rollback recipe as data: which release each host goes back to (read
//! from its ledger, never from directory times), where the hosts disagree,
//! the scripts that switch a host, and the ones that switch it back when
//! the target fails its restart or smoke test.
//!
//! Pure, like [`super::commands`]: the scripts are `.sh` files of
//! [`crate::remote`], every value quoted, and the decisions (the target
//! above all) are functions tests can call.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::config::{Config, Host};
use crate::ledger::EventKind;
use crate::lock::LockHolder;
use crate::remote;

use super::commands::{self, HostPaths};
use super::graph::{Node, Plan, PlanHost, Recipe};
use super::http_check::HttpCheck;
use super::inspect;
use super::release::ReleaseInfo;
use super::render::{self, RenderError};
use super::step::{Action, Phase, Step, StepKind};
use super::targeting;

/// The time limit of the switch, record and unlock steps.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The time limit of a `restart` or `smoke_test` task without `timeout:`
/// (the same as in a deploy).
pub const TASK_TIMEOUT: Duration = Duration::from_secs(600);

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
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
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
            .set_path("deploy_to", &p.deploy_to)
            .set("line", &revisions_line(&to.user, &to.id))
            .done()
}

/// Undo of a host's rollback: when `current` points at `to`, points it back
/// at `from` and records `failed` for `to` ([`commands::switch_back`]);
/// otherwise (it was never switched) leaves it and says so on stdout.
pub fn switch_back(p: &HostPaths, to: &ReleaseInfo, host: &str, from: &str) -> String {
    remote::ROLLBACK_SWITCHED
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .set("to", &to.id)
        .done()
        + &commands::switch_back(p, to, host, Some(from))
}

/// A user task (`restart`, `smoke_test`) as it runs on one host: its
/// command rendered for the host and release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRun {
    pub run: String,
    /// The host's rendered `env:`.
    pub env: Vec<(String, String)>,
    pub retries: u32,
    pub interval: Duration,
    pub timeout: Duration,
    /// The `http:` smoke test, rendered for the host (`run` is then empty).
    pub http: Option<HttpCheck>,
}

/// One step of a host's rollback chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackStep {
    pub name: &'static str,
    pub script: String,
    pub timeout: Duration,
    /// An `http:` smoke test checked from the machine running shipit;
    /// `script` then runs on the host only when it passes.
    pub check: Option<HttpCheck>,
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
    if let Some(check) = &t.http {
        let script = if record_verified {
            commands::ledger_append(p, &[commands::entry(r, host, EventKind::Verified)])
        } else {
            String::new()
        };
        return RollbackStep {
            name,
            script,
            timeout: t.timeout,
            check: Some(check.clone()),
        };
    }
    let script = if record_verified {
        commands::smoke_test(p, r, host, &t.run, &t.env, t.retries, t.interval)
    } else {
        commands::task(p, r, &p.current(), &t.run, &t.env, t.retries, t.interval)
    };
    RollbackStep {
        name,
        script,
        timeout: t.timeout,
        check: None,
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
        check: None,
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
        check: None,
    });
    v.push(RollbackStep {
        name: UNLOCK,
        script: commands::unlock(p, w.token),
        timeout: STEP_TIMEOUT,
        check: None,
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
        check: None,
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
        check: None,
    });
    v
}

/// A plan of one chain per host: `chains[h]` is host `h`'s steps in order
/// (`None`: the host does nothing in this round). Each node depends on the
/// one before it on its host, so the executor sends a host's chain in one
/// round trip and stops it at the first failure; hosts run independently.
pub fn chain_plan(
    stage: &str,
    release: &ReleaseInfo,
    hosts: &[PlanHost],
    chains: &[Option<Vec<RollbackStep>>],
) -> Plan {
    let mut steps: Vec<Step> = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for (h, chain) in chains.iter().enumerate() {
        let Some(chain) = chain else { continue };
        let mut prev: Option<usize> = None;
        for s in chain {
            let si = match steps.iter().position(|x| x.name == s.name) {
                Some(i) => {
                    steps[i].timeout = steps[i].timeout.max(s.timeout);
                    i
                }
                None => {
                    steps.push(Step {
                        name: s.name.to_string(),
                        kind: StepKind::Builtin,
                        phase: Phase::Staging,
                        local: false,
                        always: false,
                        timeout: s.timeout,
                        quiet: s.name == "lock",
                        output: false,
                    });
                    steps.len() - 1
                }
            };
            nodes.push(Node {
                step: Some(si),
                host: Some(h),
                action: match &s.check {
                    Some(check) => Action::Http {
                        check: check.clone(),
                        then: s.script.clone(),
                    },
                    None => Action::Shell(s.script.clone()),
                },
                deps: prev.into_iter().collect(),
            });
            prev = Some(nodes.len() - 1);
        }
    }
    Plan {
        recipe: Recipe::Rollback,
        stage: stage.to_string(),
        release: release.clone(),
        hosts: hosts.to_vec(),
        steps,
        nodes,
        batches: Vec::new(),
    }
}

/// What `shipit plan STAGE rollback` shows: per host, the rounds the
/// rollback sends (lock and read; switch, restart, smoke test, record,
/// unlock; and, only when the target fails there, the way back), with the
/// target as a placeholder (it is chosen from each host's ledger when the
/// rollback runs). Where `restart` and `smoke_test` run is decided by
/// [`super::targeting`], as the rollback itself decides it.
pub fn preview(
    config: &Config,
    stage: &str,
    hosts: &[&Host],
    env: &BTreeMap<String, String>,
    holder: &LockHolder,
) -> Result<String, RenderError> {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "rollback `{stage}`: {} host{}; each host's target is the newest release older than `current` whose last ledger event is `verified`; hosts must agree (or --force); no fetch, no upload",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" }
    );
    let where_ = |name: &str| config.task(name).map(|t| targeting::targets(t, hosts));
    for name in ["restart", "smoke_test"] {
        if where_(name).is_some_and(|w| w.is_local()) {
            let _ = writeln!(
                o,
                "note: task `{name}` runs on this machine (`local: true`); rollback does not run it"
            );
        }
    }
    let holder_json = serde_json::to_string(holder).unwrap_or_default();
    for (i, h) in hosts.iter().enumerate() {
        let p = HostPaths::of(config, h);
        let mk = |id: &str| ReleaseInfo {
            id: id.into(),
            commit: "<its-commit>".into(),
            reference: String::new(),
            user: holder.user.clone(),
            application: config.application.clone(),
            stage: stage.into(),
            build_url: None,
            digest: None,
            commit_time: None,
        };
        let (from, to) = (mk("<current>"), mk("<target>"));
        let task = |name: &str, r: &ReleaseInfo| -> Result<Option<TaskRun>, RenderError> {
            let Some(t) = config
                .task(name)
                .filter(|_| where_(name).is_some_and(|w| w.on_host(i)))
            else {
                return Ok(None);
            };
            let ctx = render::context(config, h, r, env);
            Ok(Some(TaskRun {
                run: render::render(&t.run, &ctx, &format!("task `{}`", t.name), &h.name)?,
                env: render::host_env(h, &ctx)?,
                retries: t.retries,
                interval: t.interval,
                timeout: t.timeout.unwrap_or(TASK_TIMEOUT),
                http: t
                    .http
                    .as_ref()
                    .map(|spec| super::planner::http_check(t, spec, &ctx, &h.name))
                    .transpose()?,
            }))
        };
        let w = HostRollback {
            paths: &p,
            host: &h.name,
            from: &from,
            to: &to,
            restart: task("restart", &to)?,
            smoke_test: task("smoke_test", &to)?,
            restart_back: task("restart", &from)?,
            smoke_test_back: task("smoke_test", &from)?,
            token: &holder.token,
        };
        let _ = writeln!(o, "\non {} (deploy_to {}):", h.name, h.deploy_to);
        let _ = writeln!(
            o,
            "  1. lock and read the host's releases and ledger (one round trip)"
        );
        for line in lock_and_read(&p, &holder_json).lines() {
            let _ = writeln!(o, "        | {line}");
        }
        let rounds = [
            ("2. switch, restart, smoke test, record, unlock (one round trip; stops at the first failure)", steps(&w)),
            ("3. undo, only when the target's restart or smoke test failed: switch back, restart and smoke-test `<current>` again, unlock (one round trip)", undo_steps(&w)),
        ];
        let lb = config
            .stage(stage)
            .and_then(|s| s.load_balancer.as_ref())
            .filter(|lb| lb.serves(h));
        let lb_step = |o: &mut String, step: &str, what: &str| -> Result<(), RenderError> {
            let Some(lb) = lb else { return Ok(()) };
            let ctx = render::context(config, h, &to, env);
            let action = super::planner::lb_action(lb, step, h, &ctx, stage)?;
            let (timeout, place) = match (step, &action) {
                ("drain", Action::Local(_)) => {
                    (lb.drain.timeout + lb.wait, "on the shipit machine")
                }
                ("drain", _) => (lb.drain.timeout + lb.wait, "on the host"),
                (_, Action::Local(_)) => (lb.undrain.timeout, "on the shipit machine"),
                _ => (lb.undrain.timeout, "on the host"),
            };
            let _ = writeln!(o, "  {what}");
            let _ = writeln!(o, "     {step}  (timeout {}s, {place})", timeout.as_secs());
            for line in action.script().lines() {
                let _ = writeln!(o, "        | {line}");
            }
            Ok(())
        };
        for (k, (what, round)) in rounds.into_iter().enumerate() {
            if k == 0 {
                lb_step(&mut o, "drain", "   before round 2, out of the load balancer's pool (batch by batch: the stage's rollout)")?;
            }
            let _ = writeln!(o, "  {what}");
            for st in round {
                let _ = writeln!(o, "     {}  (timeout {}s)", st.name, st.timeout.as_secs());
                if let Some(check) = &st.check {
                    let _ = writeln!(o, "        | {}", check.describe());
                }
                for line in st.script.lines() {
                    let _ = writeln!(o, "        | {line}");
                }
            }
        }
        lb_step(
            &mut o,
            "undrain",
            "   back into the pool, only when round 2 (or, after a failure, round 3) passed",
        )?;
    }
    Ok(o)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const A: &str = "20261120T080000Z";
    const B: &str = "20261121T080000Z";

    /// A host with release dirs `ids`, `current`, and a ledger where each
    /// A release of shop on staging, for tests.
    pub(crate) fn rel(id: &str) -> ReleaseInfo {
        ReleaseInfo {
            id: id.into(),
            commit: format!("c-{id}").into(),
            reference: "main".into(),
            user: "alice".into(),
            application: "shop".into(),
            stage: "staging".into(),
            build_url: None,
            digest: None,
            commit_time: None,
        }
    }

    /// One host's rollback with a restart and a smoke test both ways.
    pub(crate) fn work<'a>(
        p: &'a HostPaths,
        from: &'a ReleaseInfo,
        to: &'a ReleaseInfo,
    ) -> HostRollback<'a> {
        let t = |run: &str| TaskRun {
            run: run.into(),
            env: Vec::new(),
            retries: 2,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
            http: None,
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
        assert!(s.contains("current='current'\n"), "{s}");
        assert!(s.contains("mv -fT \"$tmp\" \"$deploy_to/$current\""), "{s}");
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
}
