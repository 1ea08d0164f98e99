//! `check`: preflight on every host, changing nothing.
//!
//! The protocol: one `preflight` step per host (connect, dirs writable,
//! tools present, disk space, linked files, lock state), read as findings.
//! A host is ready when every finding passed. A held lock is reported with
//! its holder but does not fail the check: it says who is working on the
//! stage, not that a host is unfit.

use super::event::{CheckStatus, Event, Fact};
use super::session::{parse_output, plural, Ctx, HostEnd, HostRun, Session};
use crate::config::{Config, Host};
use crate::lock::{holder_seen, LockHolder, Staleness};
use crate::outcome::Outcome;
use crate::plan::commands::{HostPaths, LOCK_DIR};
use crate::plan::host_step::{self, HostStep, SCRIPT_TIMEOUT};
use crate::plan::inspect::{self, LockState};
use crate::plan::Recipe;

/// The words after `lock held` for a held lock: its holder, and whether
/// it is stale.
pub fn held_note(
    holder: Option<&LockHolder>,
    staleness: &Staleness<'_>,
    stage: &str,
    lock_path: &str,
) -> String {
    match holder {
        Some(h) if h.is_stale(staleness, holder_seen) => format!(
            "by {}; `shipit unlock {stage}` frees it",
            h.describe_checked(staleness, holder_seen)
        ),
        Some(h) => format!("by {}", h.describe()),
        None => format!("with no readable holder record in `{lock_path}/info`"),
    }
}

/// What the check found: the facts per host, how each host ended, the
/// closing lines and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub facts: Vec<(String, Fact)>,
    pub ends: Vec<HostEnd>,
    pub lines: Vec<String>,
    pub outcome: Outcome,
}

fn fact(check: &str, status: CheckStatus, text: impl Into<String>) -> Fact {
    Fact::Check {
        check: check.to_string(),
        status,
        text: text.into(),
    }
}

/// Reads the hosts' preflight answers (`runs[i]` is `names[i]`'s). Pure.
pub fn report(
    stage: &str,
    names: &[String],
    paths: &[HostPaths],
    spec: &crate::plan::commands::CheckSpec<'_>,
    runs: &[HostRun],
    staleness: &Staleness<'_>,
) -> CheckReport {
    let mut facts = Vec::new();
    let mut ends = Vec::new();
    let mut not_ready = Vec::new();
    let mut locked = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut add = |f: Fact| facts.push((name.clone(), f));
        let pf = match &runs[i] {
            HostRun::Broke(e) => {
                add(fact("connect", CheckStatus::Failed, e.clone()));
                not_ready.push(name.as_str());
                ends.push(HostEnd {
                    ok: false,
                    state: format!("not ready: connect: {e}"),
                });
                continue;
            }
            run => match parse_output(run, "preflight", inspect::parse_preflight) {
                Ok(pf) => pf,
                Err(why) => {
                    add(fact("connect", CheckStatus::Ok, ""));
                    add(fact("check", CheckStatus::Failed, why.clone()));
                    not_ready.push(name.as_str());
                    ends.push(HostEnd {
                        ok: false,
                        state: format!("not ready: {why}"),
                    });
                    continue;
                }
            },
        };
        add(fact("connect", CheckStatus::Ok, ""));
        let mut failed = Vec::new();
        for f in pf.findings(&paths[i], spec) {
            if f.ok {
                add(fact(f.check, CheckStatus::Ok, f.text));
            } else {
                failed.push(f.check);
                add(fact(f.check, CheckStatus::Failed, f.text));
            }
        }
        match &pf.lock {
            LockState::Free => add(fact("lock", CheckStatus::Ok, "free")),
            LockState::Held(h) => {
                locked.push(name.as_str());
                add(fact(
                    "lock",
                    CheckStatus::Warning,
                    format!(
                        "held {}",
                        held_note(h.as_ref(), staleness, stage, &paths[i].at(LOCK_DIR))
                    ),
                ));
            }
        }
        if failed.is_empty() {
            ends.push(HostEnd {
                ok: true,
                state: "ready".into(),
            });
        } else {
            not_ready.push(name.as_str());
            ends.push(HostEnd {
                ok: false,
                state: format!("not ready: {}", failed.join(", ")),
            });
        }
    }

    let n = names.len();
    let mut lines = Vec::new();
    let outcome = if not_ready.is_empty() {
        lines.push(format!("check {stage}: ok — {n} host{} ready", plural(n)));
        Outcome::Success
    } else {
        lines.push(format!(
            "check {stage}: FAILED — {} of {n} host{} not ready: {}",
            not_ready.len(),
            plural(n),
            not_ready.join(", ")
        ));
        Outcome::Failed
    };
    if !locked.is_empty() {
        lines.push(format!(
            "  the deploy lock is held on {}: `shipit deploy {stage}` exits 4 until it is freed",
            locked.join(", ")
        ));
    }
    CheckReport {
        facts,
        ends,
        lines,
        outcome,
    }
}

/// Runs the check on `hosts` of `stage`, reporting through `ctx`.
pub async fn run(
    ctx: Ctx,
    config: &Config,
    stage: &str,
    hosts: &[&Host],
    staleness: &Staleness<'_>,
) -> anyhow::Result<Outcome> {
    let names: Vec<String> = hosts.iter().map(|h| h.name.to_string()).collect();
    ctx.send(Event::RunStarted {
        recipe: Recipe::Check.to_string(),
        stage: stage.to_string(),
        release: String::new(),
        commit: String::new(),
        reference: String::new(),
        hosts: names.clone(),
    });
    let mut session = Session::open(hosts, &config.ssh, ctx.clone()).await?;
    let spec = inspect::check_spec(config);
    let paths: Vec<HostPaths> = hosts.iter().map(|h| HostPaths::of(config, h)).collect();
    let step = HostStep {
        recipe: Recipe::Check,
        stage: stage.to_string(),
        name: "preflight".into(),
        timeout: SCRIPT_TIMEOUT,
        output: false,
    };
    let plan = host_step::on_every_host(&step, hosts, |i| inspect::preflight(&paths[i], &spec));
    let runs = session.run_hosts(&plan).await;
    session.close().await;
    if ctx.interrupted() {
        return Ok(session.finish_interrupted(
            "check",
            stage,
            &runs,
            format!("check {stage}: interrupted"),
        ));
    }
    let r = report(stage, &names, &paths, &spec, &runs, staleness);
    for (host, fact) in r.facts {
        ctx.send(Event::Fact { host, fact });
    }
    let headline = r.lines[0].clone();
    ctx.send(Event::Report(r.lines));
    Ok(session.finish("check", stage, &r.ends, headline, r.outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::CommandOutput;

    fn staleness() -> Staleness<'static> {
        Staleness {
            machine: "here",
            now: chrono::Utc::now(),
            ttl: None,
        }
    }

    #[test]
    fn a_host_that_cannot_be_reached_or_read_is_not_ready() {
        let names = vec!["a".to_string(), "b".to_string()];
        let paths = vec![HostPaths::new("/srv/a"), HostPaths::new("/srv/b")];
        let spec = crate::plan::commands::CheckSpec {
            needs_git: false,
            needs_sha256sum: false,
            linked_files: vec![],
        };
        let runs = vec![
            HostRun::Broke("cannot connect to `a`".into()),
            HostRun::Exited(CommandOutput {
                status: Some(2),
                stdout: vec![],
                stderr: b"sh: boom\n".to_vec(),
            }),
        ];
        let r = report("staging", &names, &paths, &spec, &runs, &staleness());
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(
            r.facts,
            vec![
                (
                    "a".to_string(),
                    fact("connect", CheckStatus::Failed, "cannot connect to `a`")
                ),
                ("b".to_string(), fact("connect", CheckStatus::Ok, "")),
                (
                    "b".to_string(),
                    fact(
                        "check",
                        CheckStatus::Failed,
                        "the preflight script exited 2: sh: boom"
                    )
                ),
            ]
        );
        assert_eq!(
            r.lines,
            vec!["check staging: FAILED — 2 of 2 hosts not ready: a, b"]
        );
        assert!(!r.ends[0].ok);
        assert_eq!(r.ends[0].state, "not ready: connect: cannot connect to `a`");
    }

    #[test]
    fn held_locks_are_named_with_their_holder() {
        let h = LockHolder {
            user: "bob".into(),
            machine: "laptop".into(),
            pid: 1,
            time: "2026-11-24T19:01:02Z".into(),
            stage: "staging".into(),
            message: "hotfix".into(),
            token: "t".into(),
            process: None,
        };
        assert_eq!(
            held_note(Some(&h), &staleness(), "staging", "/srv/a/.shipit/lock"),
            "by `bob` on `laptop` (pid 1) since 2026-11-24T19:01:02Z: hotfix"
        );
        assert_eq!(
            held_note(None, &staleness(), "staging", "/srv/a/.shipit/lock"),
            "with no readable holder record in `/srv/a/.shipit/lock/info`"
        );
    }
}
