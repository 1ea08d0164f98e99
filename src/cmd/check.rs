//! `shipit check STAGE`: preflight on every host, changing nothing.
//!
//! Prints, per host, one line per check (`[web-03] disk ok: ...`,
//! `[web-03] linked_files FAILED: ...`), the lock's state, then a summary.
//! A held lock is reported with its holder but does not fail the check: it
//! says who is working on the stage, not that a host is unfit.

use super::lock::pid_alive;
use super::on_hosts::{parse_output, read_stage};
use super::App;
use crate::lock::{LockHolder, Staleness};
use crate::outcome::Outcome;
use crate::plan::commands::LOCK_DIR;
use crate::plan::inspect::{self, LockState};

/// The line for a held lock: its holder, and whether it is stale.
pub fn held_note(
    holder: Option<&LockHolder>,
    staleness: &Staleness<'_>,
    stage: &str,
    lock_path: &str,
) -> String {
    match holder {
        Some(h) if h.is_stale(staleness, pid_alive) => format!(
            "by {}; `shipit unlock {stage}` frees it",
            h.describe_checked(staleness, pid_alive)
        ),
        Some(h) => format!("by {}", h.describe()),
        None => format!("with no readable holder record in `{lock_path}/info`"),
    }
}

pub async fn run(app: &App, stage: &str) -> anyhow::Result<Outcome> {
    let config = app.load_config()?;
    let spec = inspect::check_spec(&config);
    let Some((names, paths, results)) = read_stage(app, &config, "check", stage, |p| {
        inspect::preflight(p, &spec)
    })
    .await?
    else {
        return Ok(Outcome::Interrupted);
    };

    let quiet = app.global.quiet;
    let mut out = Vec::new();
    let mut not_ready = Vec::new();
    let mut locked = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let p = &paths[i];
        let ok_line = |out: &mut Vec<String>, line: String| {
            if !quiet {
                out.push(line);
            }
        };
        let pf = match &results[i] {
            Err(e) => {
                out.push(format!("[{name}] connect FAILED: {e}"));
                not_ready.push(*name);
                continue;
            }
            run => match parse_output(run, "preflight", inspect::parse_preflight) {
                Ok(pf) => pf,
                Err(why) => {
                    ok_line(&mut out, format!("[{name}] connect ok"));
                    out.push(format!("[{name}] check FAILED: {why}"));
                    not_ready.push(*name);
                    continue;
                }
            },
        };
        ok_line(&mut out, format!("[{name}] connect ok"));
        let mut fine = true;
        for f in pf.findings(p, &spec) {
            if f.ok {
                ok_line(&mut out, format!("[{name}] {} ok: {}", f.check, f.text));
            } else {
                fine = false;
                out.push(format!("[{name}] {} FAILED: {}", f.check, f.text));
            }
        }
        match &pf.lock {
            LockState::Free => ok_line(&mut out, format!("[{name}] lock ok: free")),
            LockState::Held(h) => {
                locked.push(*name);
                out.push(format!(
                    "[{name}] lock held {}",
                    held_note(h.as_ref(), &app.staleness(), stage, &p.at(LOCK_DIR))
                ));
            }
        }
        if !fine {
            not_ready.push(*name);
        }
    }

    out.push(String::new());
    let n = names.len();
    let outcome = if not_ready.is_empty() {
        out.push(format!(
            "check {stage}: ok — {n} host{} ready",
            if n == 1 { "" } else { "s" }
        ));
        Outcome::Success
    } else {
        out.push(format!(
            "check {stage}: FAILED — {} of {n} host{} not ready: {}",
            not_ready.len(),
            if n == 1 { "" } else { "s" },
            not_ready.join(", ")
        ));
        Outcome::Failed
    };
    if !locked.is_empty() {
        out.push(format!(
            "  the deploy lock is held on {}: `shipit deploy {stage}` exits 4 until it is freed",
            locked.join(", ")
        ));
    }
    println!("{}", out.join("\n"));
    Ok(outcome)
}
