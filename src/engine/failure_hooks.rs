//! Runs the failure hooks of [`crate::plan::failure_hooks`] through the
//! executor once a deploy or rollback has failed: each hook a plan of one
//! node per target, one hook after the other. A hook that cannot be
//! rendered or fails is reported as a notice (and its step as failed); the
//! run's outcome stands.

use std::collections::BTreeMap;

use super::event::Event;
use super::executor::Executor;
use crate::config::{Config, Host, Task};
use crate::plan::failure_hooks::{self, Failure, HOOK_TIMEOUT};
use crate::plan::host_step::{self, HostStep};
use crate::plan::notify::RunOutcome;
use crate::plan::queue::NodeState;
use crate::plan::{Recipe, ReleaseInfo};

/// What the hooks run for.
pub struct HookRun<'a> {
    pub recipe: Recipe,
    pub config: &'a Config,
    /// The run's hosts, in the executor's order.
    pub hosts: &'a [&'a Host],
    /// The release the templates of the hooks render with.
    pub release: &'a ReleaseInfo,
    pub env: &'a BTreeMap<String, String>,
    pub failure: &'a Failure,
}

/// Runs every failure hook; returns how many failed (or could not run).
pub async fn run(exec: &Executor, r: &HookRun<'_>) -> usize {
    let extra = r.failure.env();
    let mut failed = 0;
    for task in failure_hooks::hooks(r.config) {
        if !run_task(exec, r, task, &extra, "failure hook").await {
            failed += 1;
        }
    }
    failed
}

/// What the notify hooks run for: the run (as for failure hooks; its
/// `failure` unused) and its outcome.
pub struct NotifyRun<'a> {
    pub run: HookRun<'a>,
    pub outcome: &'a RunOutcome,
}

/// Runs every notify hook (`after: finished`) with the run's outcome in
/// its environment and, as JSON, in a private file here for as long as
/// the hooks run; returns how many failed (or could not run).
pub async fn notify(exec: &Executor, n: &NotifyRun<'_>) -> usize {
    let hooks: Vec<&Task> = failure_hooks::finish_hooks(n.run.config).collect();
    if hooks.is_empty() {
        return 0;
    }
    let notice = |text: String| {
        let text = exec.redactor().apply(&text).into_owned();
        exec.events().send(Event::Notice(text));
    };
    let written = tempfile::Builder::new()
        .prefix("shipit-outcome-")
        .tempdir()
        .and_then(|dir| {
            let path = dir.path().join("outcome.json");
            let json = exec.redactor().apply(&n.outcome.json()).into_owned();
            std::fs::write(&path, json + "\n")?;
            Ok((dir, path))
        });
    let (_dir, path) = match written {
        Ok(x) => x,
        Err(e) => {
            notice(format!(
                "notify hooks not run: cannot write the outcome file: {e}"
            ));
            return hooks.len();
        }
    };
    let extra: Vec<(String, String)> = n
        .outcome
        .env(&path.to_string_lossy())
        .into_iter()
        .map(|(k, v)| (k, exec.redactor().apply(&v).into_owned()))
        .collect();
    let mut failed = 0;
    for task in hooks {
        if !run_task(exec, &n.run, task, &extra, "notify hook").await {
            failed += 1;
        }
    }
    failed
}

/// Runs one hook where it targets, with `extra` in its environment;
/// whether it ran and succeeded everywhere (else a notice says so).
async fn run_task(
    exec: &Executor,
    r: &HookRun<'_>,
    task: &Task,
    extra: &[(String, String)],
    what: &str,
) -> bool {
    let notice = |text: String| {
        let text = exec.redactor().apply(&text).into_owned();
        exec.events().send(Event::Notice(text));
    };
    let scripts =
        match failure_hooks::scripts_with(r.config, task, r.hosts, r.release, r.env, extra) {
            Ok(s) => s,
            Err(e) => {
                notice(format!("{what} `{}` not run: {e}", task.name));
                return false;
            }
        };
    if scripts.is_empty() {
        return true;
    }
    let step = HostStep {
        recipe: r.recipe,
        stage: r.failure.stage.clone(),
        name: task.name.clone(),
        timeout: task.timeout.unwrap_or(HOOK_TIMEOUT),
        output: false,
    };
    let plan = host_step::plan(&step, r.hosts, scripts);
    let report = exec.run(&plan, |_| true, 0).await;
    let where_failed: Vec<String> = plan
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| report.queue.state(*i) != NodeState::Done)
        .map(|(_, n)| match n.host {
            Some(h) => plan.hosts[h].name.to_string(),
            None => super::event::LOCAL_LABEL.to_string(),
        })
        .collect();
    if !where_failed.is_empty() {
        notice(format!(
            "{what} `{}` failed on {}; the run's outcome stands",
            task.name,
            where_failed.join(", ")
        ));
        return false;
    }
    true
}
