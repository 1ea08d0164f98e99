//! Runs the failure hooks of [`crate::plan::failure_hooks`] through the
//! executor once a deploy or rollback has failed: each hook a plan of one
//! node per target, one hook after the other. A hook that cannot be
//! rendered or fails is reported as a notice (and its step as failed); the
//! run's outcome stands.

use std::collections::BTreeMap;

use super::event::Event;
use super::executor::Executor;
use crate::config::{Config, Host};
use crate::plan::failure_hooks::{self, Failure, HOOK_TIMEOUT};
use crate::plan::host_step::{self, HostStep};
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
    let mut failed = 0;
    for task in failure_hooks::hooks(r.config) {
        let notice = |text: String| {
            let text = exec.redactor().apply(&text).into_owned();
            exec.events().send(Event::Notice(text));
        };
        let scripts =
            match failure_hooks::scripts(r.config, task, r.hosts, r.release, r.env, r.failure) {
                Ok(s) => s,
                Err(e) => {
                    failed += 1;
                    notice(format!("failure hook `{}` not run: {e}", task.name));
                    continue;
                }
            };
        if scripts.is_empty() {
            continue;
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
            failed += 1;
            notice(format!(
                "failure hook `{}` failed on {}; the run's outcome stands",
                task.name,
                where_failed.join(", ")
            ));
        }
    }
    failed
}
