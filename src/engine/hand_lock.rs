//! `lock` and `unlock`: hold or free the deploy lock on every host of a
//! stage by hand.
//!
//! `lock` is all or nothing: one `lock` step per host (atomic mkdir plus
//! the holder record); unless every host took it, a second `unlock` step
//! frees it again everywhere, by this run's token, so only this run's lock
//! goes — also where the first step broke off and may have taken it.
//!
//! `unlock` reads each host's lock (`lock_state`), decides per host
//! (already free; free it because it is yours, stale, or `--force`;
//! refuse), then frees the chosen ones in an `unlock` step that checks the
//! token again and records a forced unlock in the ledger. The freeing
//! rounds run to their end even after an interrupt: they are quick, and
//! not to be abandoned half way.

use super::event::{Event, Fact, Holder};
use super::session::{parse_output, plural, stderr_tail, Ctx, HostEnd, HostRun, Session};
use crate::config::{Config, Host};
use crate::ledger::{Entry, EventKind};
use crate::lock::{holder_seen, LockHolder, Staleness};
use crate::outcome::Outcome;
use crate::plan::commands::{self, HostPaths, LOCKED_STATUS};
use crate::plan::host_step::{self, HostStep, Target, SCRIPT_TIMEOUT};
use crate::plan::inspect::{self, Freed, LockState};
use crate::plan::Recipe;

/// The message of a lock taken without `-m`.
pub const DEFAULT_MESSAGE: &str = "locked by hand";

/// A holder as events carry it.
pub fn holder(h: &LockHolder, staleness: &Staleness<'_>) -> Holder {
    Holder {
        user: h.user.clone(),
        machine: h.machine.clone(),
        pid: h.pid,
        time: h.time.clone(),
        message: h.message.clone(),
        stale: h.is_stale(staleness, holder_seen),
    }
}

fn step(recipe: Recipe, stage: &str, name: &str) -> HostStep {
    HostStep {
        recipe,
        stage: stage.to_string(),
        name: name.to_string(),
        timeout: SCRIPT_TIMEOUT,
        output: false,
    }
}

fn started(ctx: &Ctx, recipe: Recipe, stage: &str, hosts: &[&Host]) {
    ctx.send(Event::RunStarted {
        recipe: recipe.to_string(),
        stage: stage.to_string(),
        release: String::new(),
        commit: String::new(),
        reference: String::new(),
        hosts: hosts.iter().map(|h| h.name.to_string()).collect(),
    });
}

/// What the lock step did on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Took {
    Taken,
    Held(Option<LockHolder>),
    Error(String),
    /// Not run: interrupted first.
    NotRun,
}

impl Took {
    pub fn from_run(r: &HostRun) -> Took {
        match r {
            HostRun::NotRun => Took::NotRun,
            HostRun::Broke(e) => Took::Error(e.clone()),
            HostRun::Exited(o) if o.success() => Took::Taken,
            HostRun::Exited(o) if o.status == Some(LOCKED_STATUS) => {
                Took::Held(LockHolder::from_stderr(&o.stderr_str()))
            }
            HostRun::Exited(o) => Took::Error(format!("the lock script {}", stderr_tail(o))),
        }
    }
}

/// A report: per-host facts and ends, closing lines, outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockReport {
    pub facts: Vec<(String, Fact)>,
    pub ends: Vec<HostEnd>,
    pub lines: Vec<String>,
    pub outcome: Outcome,
}

fn lock_fact(state: &str, holder: Option<Holder>, text: String) -> Fact {
    Fact::Lock {
        state: state.to_string(),
        holder,
        text,
    }
}

/// The lock taken everywhere.
pub fn taken(stage: &str, names: &[String], h: &LockHolder) -> LockReport {
    LockReport {
        facts: names
            .iter()
            .map(|n| (n.clone(), lock_fact("locked", None, "locked".into())))
            .collect(),
        ends: names
            .iter()
            .map(|_| HostEnd {
                ok: true,
                state: "locked".into(),
            })
            .collect(),
        lines: vec![
            format!(
                "lock {stage}: held on {} host{} by `{}` on `{}`: {}",
                names.len(),
                plural(names.len()),
                h.user,
                h.machine,
                h.message
            ),
            format!("  deploys of `{stage}` exit 4 until `shipit unlock {stage}` frees it"),
        ],
        outcome: Outcome::Success,
    }
}

/// The lock not taken everywhere: `took[i]` is what host `i`'s lock step
/// did, `freed[i]` whether freeing it again succeeded.
pub fn not_taken(
    stage: &str,
    names: &[String],
    took: &[Took],
    freed: &[bool],
    interrupted: bool,
    staleness: &Staleness<'_>,
) -> LockReport {
    let mut facts = Vec::new();
    let mut ends = Vec::new();
    let mut held_by = None;
    let mut failed = Vec::new();
    let mut stuck = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (fact, end) = match &took[i] {
            Took::Taken if freed[i] => (
                Some(lock_fact(
                    "released",
                    None,
                    "locked, then freed again".into(),
                )),
                "locked, then freed again".to_string(),
            ),
            Took::Taken => {
                stuck.push(name.as_str());
                (
                    Some(lock_fact(
                        "stuck",
                        None,
                        "locked, and could not be freed again".into(),
                    )),
                    "locked, and could not be freed again".to_string(),
                )
            }
            Took::Held(Some(h)) => {
                held_by.get_or_insert((name.as_str(), Some(h.clone())));
                (
                    Some(lock_fact(
                        "held",
                        Some(holder(h, staleness)),
                        format!("held by {}", h.describe_checked(staleness, holder_seen)),
                    )),
                    format!("held by `{}`", h.user),
                )
            }
            Took::Held(None) => {
                held_by.get_or_insert((name.as_str(), None));
                (
                    Some(lock_fact(
                        "held",
                        None,
                        "held, with no readable holder record".into(),
                    )),
                    "held, with no readable holder record".to_string(),
                )
            }
            Took::Error(e) => {
                failed.push(name.as_str());
                (
                    Some(lock_fact("failed", None, format!("lock FAILED: {e}"))),
                    format!("failed: {e}"),
                )
            }
            Took::NotRun => (None, "not run: interrupted".to_string()),
        };
        if let Some(f) = fact {
            facts.push((name.clone(), f));
        }
        ends.push(HostEnd {
            ok: false,
            state: end,
        });
    }
    let kept = if stuck.is_empty() {
        "no lock was kept".to_string()
    } else {
        format!(
            "the lock taken on {} could not be freed again: `shipit unlock {stage}` frees it",
            stuck.join(", ")
        )
    };
    let (line, outcome) = if interrupted {
        (
            format!("lock {stage}: interrupted; {kept}"),
            Outcome::Interrupted,
        )
    } else if let Some((host, h)) = held_by {
        let who = match h {
            Some(h) => format!("by {}", h.describe_checked(staleness, holder_seen)),
            None => "(no readable holder record)".to_string(),
        };
        (
            format!("lock {stage}: refused — stage `{stage}` is locked on `{host}` {who}; {kept}"),
            Outcome::Locked,
        )
    } else {
        (
            format!(
                "lock {stage}: FAILED — could not lock {}; {kept}",
                failed.join(", ")
            ),
            Outcome::Failed,
        )
    };
    LockReport {
        facts,
        ends,
        lines: vec![line],
        outcome,
    }
}

fn send(ctx: &Ctx, session: &Session, recipe: &str, stage: &str, r: LockReport) -> Outcome {
    for (host, fact) in r.facts {
        ctx.send(Event::Fact { host, fact });
    }
    let headline = r.lines[0].clone();
    ctx.send(Event::Report(r.lines));
    session.finish(recipe, stage, &r.ends, headline, r.outcome)
}

/// `shipit lock`: takes the lock for `holder` on every host, or on none.
pub async fn lock(
    ctx: Ctx,
    config: &Config,
    stage: &str,
    hosts: &[&Host],
    holder: &LockHolder,
    staleness: &Staleness<'_>,
) -> anyhow::Result<Outcome> {
    started(&ctx, Recipe::Lock, stage, hosts);
    let json = serde_json::to_string(holder)?;
    let mut session = Session::open(hosts, &config.ssh, ctx.clone()).await?;
    let names = session.names().to_vec();
    let paths: Vec<HostPaths> = hosts.iter().map(|h| HostPaths::of(config, h)).collect();
    let plan = host_step::on_every_host(&step(Recipe::Lock, stage, "lock"), hosts, |i| {
        commands::lock(&paths[i], &json)
    });
    let took: Vec<Took> = session
        .run_hosts(&plan)
        .await
        .iter()
        .map(Took::from_run)
        .collect();
    let interrupted = ctx.interrupted();
    if !interrupted && took.iter().all(|t| *t == Took::Taken) {
        session.close().await;
        return Ok(send(
            &ctx,
            &session,
            "lock",
            stage,
            taken(stage, &names, holder),
        ));
    }
    let free = host_step::on_every_host(&step(Recipe::Lock, stage, "unlock"), hosts, |i| {
        commands::unlock(&paths[i], &holder.token)
    });
    let freed: Vec<bool> = session
        .run_hosts_to_end(&free)
        .await
        .iter()
        .map(HostRun::ok)
        .collect();
    session.close().await;
    let r = not_taken(stage, &names, &took, &freed, interrupted, staleness);
    Ok(send(&ctx, &session, "lock", stage, r))
}

/// What `unlock` decided for a host whose lock it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    AlreadyFree,
    /// Free the lock carrying this holder's token (`None`: the lock has no
    /// record), recording a forced unlock when `record`.
    Free {
        holder: Option<LockHolder>,
        why: &'static str,
        record: Option<Box<Entry>>,
    },
    Refuse(Option<LockHolder>),
    Error(String),
}

/// Who is unlocking, and how.
pub struct Unlocker<'a> {
    pub user: &'a str,
    pub force: bool,
    pub application: &'a str,
    pub build_url: Option<&'a str>,
}

/// The ledger line of a forced unlock: who forced it (`user`) and whose
/// lock it was (`detail`). A lock belongs to no release, so `release` and
/// `commit` are empty.
pub fn forced_entry(
    u: &Unlocker<'_>,
    stage: &str,
    host: &str,
    holder: Option<&LockHolder>,
) -> Entry {
    Entry {
        event: EventKind::Unlocked,
        release: String::new(),
        commit: String::new(),
        digest: None,
        application: u.application.to_string(),
        stage: stage.to_string(),
        host: host.to_string(),
        user: u.user.to_string(),
        build_url: u.build_url.map(str::to_string),
        detail: Some(match holder {
            Some(h) => format!("forced unlock of the lock held by {}", h.describe()),
            None => "forced unlock of a lock with no holder record".to_string(),
        }),
        time: String::new(),
    }
}

/// What to do with the lock read on host `host`. Pure (but for the pid
/// check of staleness).
pub fn decide(
    u: &Unlocker<'_>,
    stage: &str,
    host: &str,
    state: Result<LockState, String>,
    staleness: &Staleness<'_>,
) -> Decision {
    let holder = match state {
        Err(e) => return Decision::Error(e),
        Ok(LockState::Free) => return Decision::AlreadyFree,
        Ok(LockState::Held(h)) => h,
    };
    let stale = holder
        .as_ref()
        .is_some_and(|h| h.is_stale(staleness, holder_seen));
    let mine = holder
        .as_ref()
        .is_some_and(|h| h.user == u.user && h.taken_by_hand());
    let why = if mine {
        "yours"
    } else if stale {
        "stale"
    } else {
        "forced"
    };
    if u.force || mine || stale {
        let record = u
            .force
            .then(|| Box::new(forced_entry(u, stage, host, holder.as_ref())));
        Decision::Free {
            holder,
            why,
            record,
        }
    } else {
        Decision::Refuse(holder)
    }
}

/// The report of `unlock`: `decisions[i]` for host `i`, and for the hosts
/// whose lock it freed, what the freeing step did.
pub fn unlocked(
    stage: &str,
    names: &[String],
    decisions: &[Decision],
    frees: &[HostRun],
    staleness: &Staleness<'_>,
) -> LockReport {
    let describe = |h: &Option<LockHolder>| match h {
        Some(h) => format!("by {}", h.describe_checked(staleness, holder_seen)),
        None => "with no readable holder record".to_string(),
    };
    let held = |h: &Option<LockHolder>| h.as_ref().map(|h| holder(h, staleness));
    let mut facts = Vec::new();
    let mut ends = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut failed = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (state, h, text, ok) = match &decisions[i] {
            Decision::AlreadyFree => ("already_free", None, "already free".to_string(), true),
            Decision::Error(e) => {
                failed.push(name.as_str());
                ("failed", None, format!("unlock FAILED: {e}"), false)
            }
            Decision::Refuse(h) => {
                refused.push(format!("the lock on `{name}` is held {}", describe(h)));
                (
                    "refused",
                    held(h),
                    format!(
                        "refused: held {}; `shipit unlock {stage} --force` frees it",
                        describe(h)
                    ),
                    false,
                )
            }
            Decision::Free {
                holder: h,
                why,
                record,
            } => match parse_output(&frees[i], "unlock", inspect::parse_free) {
                Err(e) => {
                    failed.push(name.as_str());
                    ("failed", held(h), format!("unlock FAILED: {e}"), false)
                }
                Ok((Freed::AlreadyFree, _)) => ("already_free", None, "already free".into(), true),
                Ok((Freed::Changed, _)) => {
                    refused.push(format!(
                        "the lock on `{name}` changed hands while unlocking"
                    ));
                    (
                        "changed_hands",
                        None,
                        "the lock changed hands while unlocking and was left alone".into(),
                        false,
                    )
                }
                Ok((Freed::Freed, ledger_failed)) => {
                    let mut line = format!("freed ({why}): was held {}", describe(h));
                    if record.is_some() {
                        line.push_str(if ledger_failed {
                            "; could not record the forced unlock in the ledger"
                        } else {
                            "; recorded in the ledger"
                        });
                    }
                    ("freed", held(h), line, true)
                }
            },
        };
        ends.push(HostEnd {
            ok,
            state: text.clone(),
        });
        facts.push((name.clone(), lock_fact(state, h, text)));
    }
    let n = names.len();
    let (line, outcome) = if let Some(why) = refused.first() {
        (
            format!(
                "unlock {stage}: refused — {why}; without --force only locks you took with \
                 `shipit lock` and stale ones are freed; `shipit unlock {stage} --force` frees it"
            ),
            Outcome::Locked,
        )
    } else if !failed.is_empty() {
        (
            format!(
                "unlock {stage}: FAILED — could not unlock {}",
                failed.join(", ")
            ),
            Outcome::Failed,
        )
    } else {
        (
            format!(
                "unlock {stage}: ok — the deploy lock is free on {n} host{}",
                plural(n)
            ),
            Outcome::Success,
        )
    };
    LockReport {
        facts,
        ends,
        lines: vec![line],
        outcome,
    }
}

/// `shipit unlock`: frees the lock where it is yours, stale, or forced.
pub async fn unlock(
    ctx: Ctx,
    config: &Config,
    stage: &str,
    hosts: &[&Host],
    u: &Unlocker<'_>,
    staleness: &Staleness<'_>,
) -> anyhow::Result<Outcome> {
    started(&ctx, Recipe::Unlock, stage, hosts);
    if u.force {
        ctx.send(Event::Notice(
            "forced: locks held by others are freed too".into(),
        ));
    }
    let mut session = Session::open(hosts, &config.ssh, ctx.clone()).await?;
    let names = session.names().to_vec();
    let paths: Vec<HostPaths> = hosts.iter().map(|h| HostPaths::of(config, h)).collect();
    let read = host_step::on_every_host(&step(Recipe::Unlock, stage, "lock_state"), hosts, |i| {
        inspect::lock_state(&paths[i])
    });
    let states = session.run_hosts(&read).await;
    if ctx.interrupted() {
        session.close().await;
        return Ok(session.finish_interrupted(
            "unlock",
            stage,
            &states,
            format!("unlock {stage}: interrupted; nothing was freed"),
        ));
    }
    let decisions: Vec<Decision> = states
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let state = parse_output(r, "lock", inspect::parse_lock);
            decide(u, stage, &names[i], state, staleness)
        })
        .collect();
    let scripts: Vec<(Target, String)> = decisions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match d {
            Decision::Free { holder, record, .. } => Some((
                Target::Host(i),
                inspect::free_lock(
                    &paths[i],
                    holder.as_ref().map(|h| h.token.as_str()),
                    record.as_deref(),
                ),
            )),
            _ => None,
        })
        .collect();
    let free = host_step::plan(&step(Recipe::Unlock, stage, "unlock"), hosts, scripts);
    let frees = session.run_hosts_to_end(&free).await;
    session.close().await;
    let r = unlocked(stage, &names, &decisions, &frees, staleness);
    Ok(send(&ctx, &session, "unlock", stage, r))
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

    fn bob() -> LockHolder {
        LockHolder {
            user: "bob".into(),
            machine: "laptop".into(),
            pid: 1,
            time: "2026-11-24T19:01:02Z".into(),
            stage: "staging".into(),
            message: "hotfix".into(),
            token: "by-hand:bobs".into(),
            process: None,
        }
    }

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn a_lock_held_elsewhere_refuses_and_keeps_nothing() {
        let r = not_taken(
            "staging",
            &names(),
            &[Took::Taken, Took::Held(Some(bob()))],
            &[true, true],
            false,
            &staleness(),
        );
        assert_eq!(r.outcome, Outcome::Locked);
        assert_eq!(
            r.lines,
            vec!["lock staging: refused — stage `staging` is locked on `b` by `bob` on `laptop` (pid 1) since 2026-11-24T19:01:02Z: hotfix; no lock was kept"]
        );
        assert!(matches!(&r.facts[0].1, Fact::Lock { state, .. } if state == "released"));
        assert!(
            matches!(&r.facts[1].1, Fact::Lock { state, holder: Some(h), .. } if state == "held" && h.user == "bob")
        );
        let stuck = not_taken(
            "staging",
            &names(),
            &[Took::Taken, Took::Error("boom".into())],
            &[false, true],
            false,
            &staleness(),
        );
        assert_eq!(stuck.outcome, Outcome::Failed);
        assert!(stuck.lines[0].contains("the lock taken on a could not be freed again"));
    }

    #[test]
    fn unlock_frees_yours_and_stale_and_refuses_others_without_force() {
        let u = Unlocker {
            user: "alice",
            force: false,
            application: "shop",
            build_url: None,
        };
        let d = decide(
            &u,
            "staging",
            "a",
            Ok(LockState::Held(Some(bob()))),
            &staleness(),
        );
        assert_eq!(d, Decision::Refuse(Some(bob())));
        assert_eq!(
            decide(&u, "staging", "a", Ok(LockState::Free), &staleness()),
            Decision::AlreadyFree
        );
        let bobs = Unlocker { user: "bob", ..u };
        assert!(matches!(
            decide(
                &bobs,
                "staging",
                "a",
                Ok(LockState::Held(Some(bob()))),
                &staleness()
            ),
            Decision::Free {
                why: "yours",
                record: None,
                ..
            }
        ));
        let forced = Unlocker { force: true, ..u };
        let Decision::Free {
            why: "forced",
            record: Some(e),
            ..
        } = decide(
            &forced,
            "staging",
            "a",
            Ok(LockState::Held(Some(bob()))),
            &staleness(),
        )
        else {
            panic!("a forced unlock frees and records");
        };
        assert_eq!(e.user, "alice");
        assert!(e.detail.unwrap().contains("`bob`"));

        let freed = HostRun::Exited(CommandOutput {
            status: Some(0),
            stdout: b"result:freed\n".to_vec(),
            stderr: vec![],
        });
        let r = unlocked(
            "staging",
            &names(),
            &[Decision::Refuse(Some(bob())), Decision::AlreadyFree],
            &[HostRun::NotRun, freed],
            &staleness(),
        );
        assert_eq!(r.outcome, Outcome::Locked);
        assert!(
            r.lines[0].starts_with("unlock staging: refused — the lock on `a` is held by `bob`")
        );
    }
}
