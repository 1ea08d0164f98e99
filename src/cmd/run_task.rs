//! `shipit run STAGE TASK`: one task from deploy.yml on its hosts, outside
//! a deploy, as a deploy would run it after publish: in `current`, with the
//! task environment of the release `current` points at, with the task's
//! roles, `once`, `local`, retries, interval and timeout. Takes no lock and
//! writes nothing to the ledger.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fan_out::{self, HostEnd};
use super::on_hosts::SCRIPT_TIMEOUT;
use super::App;
use crate::config::{Config, Host, Task};
use crate::engine::event::LOCAL_LABEL;
use crate::engine::{Event, EventSink};
use crate::outcome::{Outcome, UsageError};
use crate::plan::commands::{self, HostPaths};
use crate::plan::current::{self, Current};
use crate::plan::{planner, render, ReleaseInfo};
use crate::redact::Redactor;
use crate::transport::local::LocalTransport;
use crate::transport::Transport;

/// A task's time limit when it sets none (as in a deploy).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The hosts (indexes into `hosts`) a task runs on: those with one of its
/// roles, only the first with `once`. A local task runs once on this
/// machine and uses the first host for its context.
pub fn targets(task: &Task, hosts: &[&Host]) -> Vec<usize> {
    if task.local {
        return if hosts.is_empty() { vec![] } else { vec![0] };
    }
    let matching = (0..hosts.len()).filter(|&i| hosts[i].has_any_role(&task.roles));
    if task.once {
        matching.take(1).collect()
    } else {
        matching.collect()
    }
}

fn release_for(app: &App, config: &Config, stage: &str, c: &Current) -> ReleaseInfo {
    ReleaseInfo {
        id: c.release.clone().into(),
        commit: c.commit.clone().into(),
        reference: config.branch.clone(),
        user: app.user(),
        application: config.application.clone(),
        stage: stage.into(),
        build_url: app.env.get("BUILD_URL").cloned(),
        digest: None,
    }
}

pub async fn run(app: &App, stage: &str, task_name: &str) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let config = Arc::new(app.load_config()?);
    let task = config.task(task_name).cloned().ok_or_else(|| {
        UsageError(format!(
            "unknown task `{task_name}`; deploy.yml defines {}",
            if config.tasks.is_empty() {
                "no tasks".to_string()
            } else {
                config
                    .tasks
                    .iter()
                    .map(|t| format!("`{}`", t.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))
    })?;
    let (_, selected) = planner::select_hosts(&config, stage, &app.filters())?;
    let idx = targets(&task, &selected);
    if idx.is_empty() {
        return Err(UsageError(format!(
            "task `{task_name}` runs on hosts with role {}; no selected host of stage `{stage}` has one",
            task.roles
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ))
        .into());
    }
    let hosts: Vec<&Host> = idx.iter().map(|&i| selected[i]).collect();
    // A missing secret fails before any host is touched, as in a deploy.
    let placeholder = Current {
        release: "current".into(),
        commit: String::new(),
    };
    for h in &hosts {
        let ctx = render::context(
            &config,
            h,
            &release_for(app, &config, stage, &placeholder),
            &app.env,
        );
        render::render(&task.run, &ctx, &format!("task `{task_name}`"), &h.name)?;
    }
    let redactor = Arc::new(app.redactor(&config)?);
    let labels: Vec<String> = if task.local {
        vec![LOCAL_LABEL.to_string()]
    } else {
        hosts.iter().map(|h| h.name.clone()).collect()
    };
    let fan = fan_out::Fan {
        recipe: "run",
        stage,
        what: &format!("task `{task_name}`"),
        notice: format!("task `{task_name}`: {}", redactor.apply(&task.run)),
        labels,
        started,
    };
    let task = Arc::new(task);
    let hosts_owned: Vec<Host> = hosts.iter().map(|h| (*h).clone()).collect();
    let base = release_for(app, &config, stage, &placeholder);
    fan_out::run(app, fan, &hosts, &config.ssh, &redactor, |slot| {
        let job = HostJob {
            label: slot.label,
            host: hosts_owned[slot.index].clone(),
            transport: slot.transport,
            config: config.clone(),
            task: task.clone(),
            release: base.clone(),
            env: app.env.clone(),
            sink: slot.events,
            redactor: redactor.clone(),
        };
        job.run()
    })
    .await
}

/// One host's part: find its current release, render the task for it, run
/// it there (or, for a local task, here).
struct HostJob {
    label: String,
    host: Host,
    transport: Result<Arc<dyn Transport>, String>,
    config: Arc<Config>,
    task: Arc<Task>,
    /// Everything but the release id and commit, which come from the host.
    release: ReleaseInfo,
    env: std::collections::BTreeMap<String, String>,
    sink: EventSink,
    redactor: Arc<Redactor>,
}

impl HostJob {
    async fn run(self) -> HostEnd {
        let step = self.task.name.clone();
        let t = match &self.transport {
            Ok(t) => t.clone(),
            Err(why) => return fan_out::fail_step(&self.label, "connect", why, &self.sink),
        };
        let p = HostPaths::new(&self.host.deploy_to);
        let cur = match t.run(&current::probe(&p), None, SCRIPT_TIMEOUT).await {
            Ok(o) if o.success() => current::parse(&o.stdout_str()),
            Ok(o) => {
                let why = format!(
                    "cannot read `current` on `{}`: {}",
                    self.host.name,
                    super::on_hosts::stderr_tail(&o)
                );
                return self.fail(&step, &why, 1);
            }
            Err(e) => return self.fail(&step, &e.to_string(), 1),
        };
        let Some(cur) = cur else {
            let why = format!(
                "no current release on `{}` (deploy the stage first)",
                self.host.name
            );
            return self.fail(&step, &why, 1);
        };
        let release = ReleaseInfo {
            id: cur.release.into(),
            commit: cur.commit.into(),
            ..self.release.clone()
        };
        let ctx = render::context(&self.config, &self.host, &release, &self.env);
        let rendered = match render::render(
            &self.task.run,
            &ctx,
            &format!("task `{step}`"),
            &self.host.name,
        ) {
            Ok(r) => r,
            Err(e) => return self.fail(&step, &e.to_string(), 1),
        };
        let (runner, dir): (Arc<dyn Transport>, String) = if self.task.local {
            (Arc::new(LocalTransport::new(LOCAL_LABEL)), ".".to_string())
        } else {
            (t, p.at("current"))
        };
        let script = commands::task(
            &p,
            &release,
            &dir,
            &rendered,
            self.task.retries,
            self.task.interval,
        );
        let timeout = self.task.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let r = fan_out::run_step(
            runner,
            &self.label,
            &step,
            &script,
            timeout,
            &self.sink,
            &self.redactor,
        )
        .await;
        HostEnd {
            ok: r.ok,
            state: r.state,
            commands: if self.task.local { 1 } else { 2 },
        }
    }

    fn fail(&self, step: &str, why: &str, commands: usize) -> HostEnd {
        let why = self.redactor.apply(why).into_owned();
        self.sink.send(Event::StepStarted {
            host: self.label.clone(),
            step: step.to_string(),
        });
        HostEnd {
            commands,
            ..fan_out::fail_step(&self.label, step, &why, &self.sink)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TransportKind;

    fn host(name: &str, roles: &[&str]) -> Host {
        Host {
            name: name.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            transport: TransportKind::Ssh,
            deploy_to: "/srv/app".into(),
            user: None,
            port: None,
            vars: Default::default(),
        }
    }

    fn task(roles: &[&str], once: bool, local: bool) -> Task {
        Task {
            name: "t".into(),
            after: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            once,
            local,
            run: "true".into(),
            retries: 0,
            interval: Duration::from_secs(1),
            timeout: None,
        }
    }

    #[test]
    fn targets_follow_roles_once_and_local() {
        let hs = [
            host("a", &["app"]),
            host("b", &["db"]),
            host("c", &["app", "db"]),
        ];
        let hosts: Vec<&Host> = hs.iter().collect();
        assert_eq!(targets(&task(&[], false, false), &hosts), vec![0, 1, 2]);
        assert_eq!(targets(&task(&["db"], false, false), &hosts), vec![1, 2]);
        assert_eq!(targets(&task(&["db"], true, false), &hosts), vec![1]);
        assert_eq!(targets(&task(&["db"], false, true), &hosts), vec![0]);
        assert!(targets(&task(&["web"], false, false), &hosts).is_empty());
    }
}
