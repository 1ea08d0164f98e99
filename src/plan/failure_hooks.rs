//! Failure hooks: the tasks with `after: failed` (Capistrano's
//! `deploy:failed`, Deployer's `fail()`).
//!
//! When a deploy fails, once its undo is done and while the stage is still
//! locked, and when a rollback fails, once every host's rollback (and way
//! back) has ended, each hook runs where
//! [`super::targeting`] says (roles, `once`, `local`), one hook after the
//! other in file order, in `deploy_to` (on this machine, in the current
//! directory), with the host's `env:` and the failure in its environment:
//! `SHIPIT_FAILED_STAGE`, `SHIPIT_FAILED_RELEASE`, `SHIPIT_FAILED_STEP`
//! and `SHIPIT_FAILED_HOSTS` (space-separated). A hook's own failure is
//! reported but changes nothing else. Pure: no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use super::commands::{self, HostPaths};
use super::graph::Plan;
use super::host_step::Target;
use super::queue::{NodeState, Queue};
use super::release::ReleaseInfo;
use super::render::{self, RenderError};
use super::targeting::{self, Targets};
use crate::config::{Config, Host, Task, AFTER_FAILED, AFTER_FINISHED};

/// A hook's time limit when it sets none.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// What failed, as the hooks are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: String,
    /// The release the run was deploying (or rolling back to, when known).
    pub release: String,
    /// The first step that failed.
    pub step: String,
    /// The hosts where something failed, in stage order.
    pub hosts: Vec<String>,
}

impl Failure {
    /// The `SHIPIT_FAILED_*` variables.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("SHIPIT_FAILED_STAGE", self.stage.clone()),
            ("SHIPIT_FAILED_RELEASE", self.release.clone()),
            ("SHIPIT_FAILED_STEP", self.step.clone()),
            ("SHIPIT_FAILED_HOSTS", self.hosts.join(" ")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// What failed in a deploy's run of `plan`: the step of the first failed
/// node (in plan order; a failed `unlock`, retried later, does not count)
/// and the hosts with a failed node (`local` for this machine).
pub fn of_run(plan: &Plan, queue: &Queue) -> (String, Vec<String>) {
    let failed: Vec<usize> = (0..plan.nodes.len())
        .filter(|&i| queue.state(i) == NodeState::Failed)
        .filter(|&i| plan.nodes[i].step.is_some_and(|s| !plan.steps[s].always))
        .collect();
    let step = failed
        .first()
        .and_then(|&i| plan.nodes[i].step)
        .map(|s| plan.steps[s].name.clone())
        .unwrap_or_default();
    let mut hosts: Vec<String> = (0..plan.hosts.len())
        .filter(|&h| failed.iter().any(|&i| plan.nodes[i].host == Some(h)))
        .map(|h| plan.hosts[h].name.to_string())
        .collect();
    if failed.iter().any(|&i| plan.nodes[i].host.is_none()) {
        // The label local steps are reported under.
        hosts.push("local".to_string());
    }
    (step, hosts)
}

/// The failure hooks, in file order.
pub fn hooks(config: &Config) -> impl Iterator<Item = &Task> {
    config
        .tasks
        .iter()
        .filter(|t| t.after.as_deref() == Some(AFTER_FAILED))
}

/// The notify hooks (`after: finished`, always `local: true`), in file
/// order.
pub fn finish_hooks(config: &Config) -> impl Iterator<Item = &Task> {
    config
        .tasks
        .iter()
        .filter(|t| t.after.as_deref() == Some(AFTER_FINISHED))
}

/// Hook `task`'s script on each of its targets among `hosts`, rendered for
/// `release`, with `failure` in its environment.
pub fn scripts(
    config: &Config,
    task: &Task,
    hosts: &[&Host],
    release: &ReleaseInfo,
    env: &BTreeMap<String, String>,
    failure: &Failure,
) -> Result<Vec<(Target, String)>, RenderError> {
    scripts_with(config, task, hosts, release, env, &failure.env())
}

/// Hook `task`'s script on each of its targets among `hosts`, rendered for
/// `release`, with `extra` in its environment.
pub fn scripts_with(
    config: &Config,
    task: &Task,
    hosts: &[&Host],
    release: &ReleaseInfo,
    env: &BTreeMap<String, String>,
    extra: &[(String, String)],
) -> Result<Vec<(Target, String)>, RenderError> {
    let what = format!("task `{}`", task.name);
    let script = |i: usize, dir: Option<&str>, label: &str| {
        let h = hosts[i];
        let ctx = render::context(config, h, release, env);
        let run = render::render(&task.run, &ctx, &what, label)?;
        // `env:` is for the hosts' commands, as in a deploy.
        let mut vars = match dir {
            Some(_) => Vec::new(),
            None => render::host_env(h, &ctx)?,
        };
        vars.extend(extra.iter().cloned());
        let p = HostPaths::new(&h.deploy_to);
        let dir = dir.map_or_else(|| p.deploy_to.clone(), str::to_string);
        Ok(commands::task(
            &p,
            release,
            &dir,
            &run,
            &vars,
            task.retries,
            task.interval,
        ))
    };
    match targeting::targets(task, hosts) {
        // As in a deploy: with the first host's context.
        Targets::Local => Ok(vec![(Target::Local, script(0, Some("."), "local")?)]),
        Targets::Hosts(v) => v
            .into_iter()
            .map(|i| Ok((Target::Host(i), script(i, None, &hosts[i].name)?)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_with, ParseContext};
    use std::path::{Path, PathBuf};

    fn config() -> Config {
        let text = "application: shop\nrepository: ./app\ndeploy_to: /srv/shop\n\
            env: { GREETING: hi }\n\
            tasks:\n  build: { after: fetch, run: make }\n  \
            alert: { after: failed, roles: [db], once: true, run: \"notify {{ stage }}\" }\n  \
            page: { after: failed, local: true, run: page }\n\
            stages:\n  s:\n    hosts:\n      - { host: a, roles: [app] }\n      \
            - { host: b, roles: [db] }\n      - { host: c, roles: [db] }\n";
        let ctx = ParseContext {
            cwd: PathBuf::from("/tmp"),
            home: None,
        };
        parse_with(text, Path::new("deploy.yml"), &ctx).unwrap()
    }

    fn release() -> ReleaseInfo {
        ReleaseInfo {
            id: "20261124T190102Z".into(),
            commit: "abc".into(),
            reference: "main".into(),
            user: "alice".into(),
            application: "shop".into(),
            stage: "s".into(),
            build_url: None,
            digest: None,
            commit_time: None,
        }
    }

    #[test]
    fn hooks_run_where_targeting_says_with_the_failure_in_their_environment() {
        let c = config();
        let hosts: Vec<&Host> = c.stages[0].hosts.iter().collect();
        let names: Vec<&str> = hooks(&c).map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["alert", "page"]);
        let failure = Failure {
            stage: "s".into(),
            release: "20261124T190102Z".into(),
            step: "build".into(),
            hosts: vec!["a".into(), "c".into()],
        };
        let env = BTreeMap::new();
        let alert = scripts(
            &c,
            c.task("alert").unwrap(),
            &hosts,
            &release(),
            &env,
            &failure,
        )
        .unwrap();
        assert_eq!(alert.len(), 1);
        let (target, script) = &alert[0];
        assert_eq!(*target, Target::Host(1));
        assert!(script.contains("task_dir='/srv/shop'\n"), "{script}");
        assert!(script.contains("task_run='notify s'\n"), "{script}");
        assert!(
            script.contains("set -- 'GREETING' 'hi' 'SHIPIT_FAILED_STAGE' 's' 'SHIPIT_FAILED_RELEASE' '20261124T190102Z' 'SHIPIT_FAILED_STEP' 'build' 'SHIPIT_FAILED_HOSTS' 'a c'\n"),
            "{script}"
        );
        let page = scripts(
            &c,
            c.task("page").unwrap(),
            &hosts,
            &release(),
            &env,
            &failure,
        )
        .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].0, Target::Local);
        // `env:` is for the hosts' commands only.
        assert!(!page[0].1.contains("GREETING"), "{}", page[0].1);
    }
}
