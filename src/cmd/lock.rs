//! `shipit lock STAGE [-m MSG]` and `shipit unlock STAGE [--force]`: hold
//! or free the deploy lock on every host of a stage by hand.

use super::on_hosts::{on_stage, parse_output, stderr_tail, StageRound, SCRIPT_TIMEOUT};
use super::App;
use crate::ledger::{Entry, EventKind};
use crate::lock::LockHolder;
use crate::outcome::Outcome;
use crate::plan::commands::{self, LOCKED_STATUS};
use crate::plan::inspect::{self, Freed, LockState};

/// The message of a lock taken without `-m`.
pub const DEFAULT_MESSAGE: &str = "locked by hand";

pub use crate::lock::pid_alive;

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What the lock script did on a host.
enum Took {
    Taken,
    Held(Option<LockHolder>),
    Error(String),
    /// Not run: interrupted first.
    NotRun,
}

pub async fn lock(app: &App, stage: &str, message: Option<&str>) -> anyhow::Result<Outcome> {
    let config = app.load_config()?;
    let mut holder = app.lock_holder(stage, "lock", "lock").by_hand();
    holder.message = message
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_MESSAGE)
        .to_string();
    let json = serde_json::to_string(&holder)?;
    let StageRound {
        names,
        paths,
        conns,
        results,
    } = on_stage(app, &config, "lock", stage, "", |p| {
        commands::lock(p, &json)
    })
    .await?;
    let interrupted = results.is_none();
    let took: Vec<Took> = match results {
        None => names.iter().map(|_| Took::NotRun).collect(),
        Some(r) => r
            .into_iter()
            .map(|r| match r {
                Err(e) => Took::Error(e),
                Ok(o) if o.success() => Took::Taken,
                Ok(o) if o.status == Some(LOCKED_STATUS) => {
                    Took::Held(LockHolder::from_stderr(&o.stderr_str()))
                }
                Ok(o) => Took::Error(format!("the lock script {}", stderr_tail(&o))),
            })
            .collect(),
    };

    if !interrupted && took.iter().all(|t| matches!(t, Took::Taken)) {
        conns.close().await;
        let mut out: Vec<String> = names.iter().map(|n| format!("[{n}] locked")).collect();
        out.push(String::new());
        out.push(format!(
            "lock {stage}: held on {} host{} by `{}` on `{}`: {}",
            names.len(),
            plural(names.len()),
            holder.user,
            holder.machine,
            holder.message
        ));
        out.push(format!(
            "  deploys of `{stage}` exit 4 until `shipit unlock {stage}` frees it"
        ));
        println!("{}", out.join("\n"));
        return Ok(Outcome::Success);
    }

    // All or nothing: free what this run took. Everywhere, not only where
    // the script said so: one that timed out may have taken it. The token
    // makes sure only this run's lock goes.
    let free: Vec<Option<String>> = paths
        .iter()
        .map(|p| Some(commands::unlock(p, &holder.token)))
        .collect();
    let freed = conns
        .run_each(&free, app.global.parallel, SCRIPT_TIMEOUT, None)
        .await
        .expect("runs to the end without a shutdown signal");
    conns.close().await;

    let mut out = Vec::new();
    let mut held_by = None;
    let mut failed = Vec::new();
    let mut stuck = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let free_ok = matches!(&freed[i], Some(Ok(o)) if o.success());
        match &took[i] {
            Took::Taken if free_ok => out.push(format!("[{name}] locked, then freed again")),
            Took::Taken => {
                stuck.push(*name);
                out.push(format!("[{name}] locked, and could not be freed again"));
            }
            Took::Held(Some(h)) => {
                out.push(format!(
                    "[{name}] held by {}",
                    h.describe_checked(&app.staleness(), pid_alive)
                ));
                held_by.get_or_insert((*name, Some(h.clone())));
            }
            Took::Held(None) => {
                out.push(format!("[{name}] held, with no readable holder record"));
                held_by.get_or_insert((*name, None));
            }
            Took::Error(e) => {
                failed.push(*name);
                out.push(format!("[{name}] lock FAILED: {e}"));
            }
            Took::NotRun => {}
        }
    }
    out.push(String::new());
    let kept = if stuck.is_empty() {
        "no lock was kept".to_string()
    } else {
        format!(
            "the lock taken on {} could not be freed again: `shipit unlock {stage}` frees it",
            stuck.join(", ")
        )
    };
    let outcome = if interrupted {
        out.push(format!("lock {stage}: interrupted; {kept}"));
        Outcome::Interrupted
    } else if let Some((host, h)) = held_by {
        let who = match h {
            Some(h) => format!("by {}", h.describe_checked(&app.staleness(), pid_alive)),
            None => "(no readable holder record)".to_string(),
        };
        out.push(format!(
            "lock {stage}: refused — stage `{stage}` is locked on `{host}` {who}; {kept}"
        ));
        Outcome::Locked
    } else {
        out.push(format!(
            "lock {stage}: FAILED — could not lock {}; {kept}",
            failed.join(", ")
        ));
        Outcome::Failed
    };
    println!("{}", out.join("\n"));
    Ok(outcome)
}

/// What `unlock` decided for a host whose lock it read.
enum Decision {
    AlreadyFree,
    /// Free the lock carrying this token (`None`: the lock has no record),
    /// recording a forced unlock when `record`.
    Free {
        holder: Option<LockHolder>,
        why: &'static str,
        record: Option<Box<Entry>>,
    },
    Refuse(Option<LockHolder>),
    Error(String),
}

/// The ledger line of a forced unlock: who forced it (`user`) and whose
/// lock it was (`detail`). A lock belongs to no release, so `release` and
/// `commit` are empty.
pub fn forced_entry(
    app: &App,
    application: &str,
    stage: &str,
    host: &str,
    holder: Option<&LockHolder>,
) -> Entry {
    Entry {
        event: EventKind::Unlocked,
        release: String::new(),
        commit: String::new(),
        digest: None,
        application: application.to_string(),
        stage: stage.to_string(),
        host: host.to_string(),
        user: app.user(),
        build_url: app.env.get("BUILD_URL").cloned(),
        detail: Some(match holder {
            Some(h) => format!("forced unlock of the lock held by {}", h.describe()),
            None => "forced unlock of a lock with no holder record".to_string(),
        }),
        time: String::new(),
    }
}

pub async fn unlock(app: &App, stage: &str, force: bool) -> anyhow::Result<Outcome> {
    let config = app.load_config()?;
    let user = app.user();
    let note = if force { " (forced)" } else { "" };
    let StageRound {
        names,
        paths,
        conns,
        results,
    } = on_stage(app, &config, "unlock", stage, note, inspect::lock_state).await?;
    let Some(states) = results else {
        conns.close().await;
        println!("\nunlock {stage}: interrupted; nothing was freed");
        return Ok(Outcome::Interrupted);
    };

    let decisions: Vec<Decision> = states
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let holder = match parse_output(&r, "lock", inspect::parse_lock) {
                Err(e) => return Decision::Error(e),
                Ok(LockState::Free) => return Decision::AlreadyFree,
                Ok(LockState::Held(h)) => h,
            };
            let stale = holder
                .as_ref()
                .is_some_and(|h| h.is_stale(&app.staleness(), pid_alive));
            let mine = holder
                .as_ref()
                .is_some_and(|h| h.user == user && h.taken_by_hand());
            let why = if mine {
                "yours"
            } else if stale {
                "stale"
            } else {
                "forced"
            };
            if force || mine || stale {
                let record = force.then(|| {
                    Box::new(forced_entry(
                        app,
                        &config.application,
                        stage,
                        names[i],
                        holder.as_ref(),
                    ))
                });
                Decision::Free {
                    holder,
                    why,
                    record,
                }
            } else {
                Decision::Refuse(holder)
            }
        })
        .collect();

    let scripts: Vec<Option<String>> = decisions
        .iter()
        .zip(&paths)
        .map(|(d, p)| match d {
            Decision::Free { holder, record, .. } => Some(inspect::free_lock(
                p,
                holder.as_ref().map(|h| h.token.as_str()),
                record.as_deref(),
            )),
            _ => None,
        })
        .collect();
    // Freeing is quick and not to be abandoned half way: no shutdown here.
    let results = conns
        .run_each(&scripts, app.global.parallel, SCRIPT_TIMEOUT, None)
        .await
        .expect("runs to the end without a shutdown signal");
    conns.close().await;

    let describe = |h: &Option<LockHolder>| match h {
        Some(h) => format!("by {}", h.describe_checked(&app.staleness(), pid_alive)),
        None => "with no readable holder record".to_string(),
    };
    let mut out = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut failed = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match &decisions[i] {
            Decision::AlreadyFree => out.push(format!("[{name}] already free")),
            Decision::Error(e) => {
                failed.push(*name);
                out.push(format!("[{name}] unlock FAILED: {e}"));
            }
            Decision::Refuse(h) => {
                out.push(format!(
                    "[{name}] refused: held {}; `shipit unlock {stage} --force` frees it",
                    describe(h)
                ));
                refused.push(format!("the lock on `{name}` is held {}", describe(h)));
            }
            Decision::Free {
                holder,
                why,
                record,
                ..
            } => {
                let r = results[i].as_ref().expect("a free script ran");
                let done = parse_output(r, "unlock", inspect::parse_free);
                match done {
                    Err(e) => {
                        failed.push(*name);
                        out.push(format!("[{name}] unlock FAILED: {e}"));
                    }
                    Ok((Freed::AlreadyFree, _)) => out.push(format!("[{name}] already free")),
                    Ok((Freed::Changed, _)) => {
                        let note = "the lock changed hands while unlocking and was left alone";
                        out.push(format!("[{name}] {note}"));
                        refused.push(format!(
                            "the lock on `{name}` changed hands while unlocking"
                        ));
                    }
                    Ok((Freed::Freed, ledger_failed)) => {
                        let mut line =
                            format!("[{name}] freed ({why}): was held {}", describe(holder));
                        if record.is_some() {
                            line.push_str(if ledger_failed {
                                "; could not record the forced unlock in the ledger"
                            } else {
                                "; recorded in the ledger"
                            });
                        }
                        out.push(line);
                    }
                }
            }
        }
    }

    out.push(String::new());
    let n = names.len();
    let outcome = if let Some(why) = refused.first() {
        out.push(format!(
            "unlock {stage}: refused — {why}; without --force only locks you took with \
             `shipit lock` and stale ones are freed; `shipit unlock {stage} --force` frees it"
        ));
        Outcome::Locked
    } else if !failed.is_empty() {
        out.push(format!(
            "unlock {stage}: FAILED — could not unlock {}",
            failed.join(", ")
        ));
        Outcome::Failed
    } else {
        out.push(format!(
            "unlock {stage}: ok — the deploy lock is free on {} host{}",
            n,
            plural(n)
        ));
        Outcome::Success
    };
    println!("{}", out.join("\n"));
    Ok(outcome)
}
