//! `exec` and `run`: a command, or one task of deploy.yml, on the hosts of
//! a stage, each host's output reported in one piece (an `Output` event
//! before its step's end). Neither takes the lock nor writes the ledger.
//!
//! `exec`: one `exec` step per host. `run`: a `current` step per host
//! reads the release `current` points at; the task is rendered for it and
//! runs as a deploy would after publish (in `current`, with the task
//! environment of that release, its retries and time limit), on the host
//! or, for `local: true`, on this machine. A host without a current
//! release fails the task's step without running it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::event::{Event, StepOutcome};
use super::session::{summary, Ctx, HostEnd, HostRun, Session};
use crate::config::{Config, Host, Task};
use crate::outcome::{exit_code, Outcome};
use crate::plan::commands::{self, HostPaths};
use crate::plan::current::{self, Current};
use crate::plan::host_step::{self, HostStep, Target, SCRIPT_TIMEOUT};
use crate::plan::render::{self, RenderError};
use crate::plan::{Recipe, ReleaseInfo};

/// The step name `exec`'s command is reported under.
pub const EXEC_STEP: &str = "exec";

/// A task's time limit when it sets none (as in a deploy).
pub const TASK_TIMEOUT: Duration = Duration::from_secs(600);

/// The closing headline: `what` names the work (`the command`, ``task
/// `build` ``); `ends[i]` is `names[i]`'s. Pure.
pub fn headline(what: &str, names: &[String], ends: &[HostEnd], interrupted: bool) -> String {
    let failed: Vec<&str> = names
        .iter()
        .zip(ends)
        .filter(|(_, e)| !e.ok)
        .map(|(n, _)| n.as_str())
        .collect();
    let ok_count = names.len() - failed.len();
    match (failed.is_empty(), interrupted) {
        (true, false) if names.len() == 1 => format!("{what} succeeded on {}", names[0]),
        (true, false) => format!("{what} succeeded on all {} hosts", names.len()),
        (true, true) if names.len() == 1 => {
            format!("interrupted: {what} succeeded on {}", names[0])
        }
        (true, true) => format!("interrupted: {what} succeeded on all {} hosts", names.len()),
        (false, true) => format!(
            "interrupted: {what} succeeded on {ok_count} of {} hosts; not ok: {}",
            names.len(),
            failed.join(", ")
        ),
        (false, false) => format!(
            "{what} failed on {}; ok on {ok_count} of {} hosts",
            failed.join(", "),
            names.len()
        ),
    }
}

/// How a run of a command ends: interrupted wins, then any host failing.
pub fn outcome(ends: &[HostEnd], interrupted: bool) -> Outcome {
    match (interrupted, ends.iter().all(|e| e.ok)) {
        (true, _) => Outcome::Interrupted,
        (false, true) => Outcome::Success,
        (false, false) => Outcome::Failed,
    }
}

fn end(run: &HostRun) -> HostEnd {
    HostEnd {
        ok: run.ok(),
        state: run.state(),
    }
}

/// How the hosts ended a run, for its summary.
struct Ran<'a> {
    /// The hosts as reported (a local task is reported as `local`).
    labels: &'a [String],
    ends: &'a [HostEnd],
    round_trips: &'a [usize],
    duration: Duration,
}

/// Sends the summary; `what` names the work in its headline.
fn finish(ctx: &Ctx, recipe: Recipe, stage: &str, what: &str, ran: Ran<'_>) -> Outcome {
    let interrupted = ctx.interrupted();
    let outcome = outcome(ran.ends, interrupted);
    let s = summary(
        &recipe.to_string(),
        stage,
        ran.labels,
        ran.ends,
        ran.round_trips,
        headline(what, ran.labels, ran.ends, interrupted),
        outcome,
        ran.duration,
    );
    debug_assert_eq!(s.exit_code, exit_code(&Ok(outcome)));
    ctx.send(Event::Finished(s));
    outcome
}

fn started(ctx: &Ctx, recipe: Recipe, stage: &str, labels: &[String], notice: String) {
    ctx.send(Event::RunStarted {
        recipe: recipe.to_string(),
        stage: stage.to_string(),
        release: String::new(),
        commit: String::new(),
        reference: String::new(),
        hosts: labels.to_vec(),
    });
    ctx.send(Event::Notice(notice));
}

/// `shipit exec`: `script` on every host of `hosts` at once.
pub async fn exec(
    ctx: Ctx,
    config: &Config,
    stage: &str,
    hosts: &[&Host],
    script: &str,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let began = std::time::Instant::now();
    let labels: Vec<String> = hosts.iter().map(|h| h.name.to_string()).collect();
    started(
        &ctx,
        Recipe::Exec,
        stage,
        &labels,
        format!("command: {}", ctx.redactor.apply(script)),
    );
    let mut session = Session::open(hosts, &config.ssh, ctx.clone()).await?;
    let step = HostStep {
        recipe: Recipe::Exec,
        stage: stage.to_string(),
        name: EXEC_STEP.into(),
        timeout,
        output: true,
    };
    let plan = host_step::on_every_host(&step, hosts, |_| script.to_string());
    let ends: Vec<HostEnd> = session.run_hosts(&plan).await.iter().map(end).collect();
    session.close().await;
    let trips: Vec<usize> = (0..hosts.len()).map(|h| session.round_trips(h)).collect();
    Ok(finish(
        &ctx,
        Recipe::Exec,
        stage,
        "the command",
        Ran {
            labels: &labels,
            ends: &ends,
            round_trips: &trips,
            duration: began.elapsed(),
        },
    ))
}

/// What `run` is given: the task, its hosts (its roles and `once`
/// applied; for a local task, the host whose release it runs for), and
/// the release fields that do not come from the hosts.
pub struct TaskRun<'a> {
    pub config: &'a Config,
    pub stage: &'a str,
    pub task: &'a Task,
    pub hosts: Vec<&'a Host>,
    /// Everything but the release id and commit, which come from each
    /// host's `current`.
    pub release: ReleaseInfo,
    pub env: &'a BTreeMap<String, String>,
}

impl TaskRun<'_> {
    fn release(&self, c: &Current) -> ReleaseInfo {
        ReleaseInfo {
            id: c.release.clone().into(),
            commit: c.commit.clone().into(),
            ..self.release.clone()
        }
    }

    fn render(&self, h: &Host, c: &Current) -> Result<String, RenderError> {
        let ctx = render::context(self.config, h, &self.release(c), self.env);
        render::render(
            &self.task.run,
            &ctx,
            &format!("task `{}`", self.task.name),
            &h.name,
        )
    }

    /// The host's `env:`, rendered as for its task.
    fn env_of(&self, h: &Host, c: &Current) -> Result<Vec<(String, String)>, RenderError> {
        let ctx = render::context(self.config, h, &self.release(c), self.env);
        render::host_env(h, &ctx)
    }

    /// Renders the task for every host with a placeholder release: a
    /// missing secret fails before any host is touched, as in a deploy.
    pub fn validate(&self) -> Result<(), RenderError> {
        let placeholder = Current {
            release: "current".into(),
            commit: String::new(),
        };
        for h in &self.hosts {
            self.render(h, &placeholder)?;
            self.env_of(h, &placeholder)?;
        }
        Ok(())
    }
}

/// Why a host's task cannot run, given what its `current` step said.
/// Pure.
pub fn current_of(host: &str, run: &HostRun) -> Result<Current, String> {
    match run {
        HostRun::Exited(o) if o.success() => current::parse(&o.stdout_str())
            .ok_or_else(|| format!("no current release on `{host}` (deploy the stage first)")),
        HostRun::Exited(o) => Err(format!(
            "cannot read `current` on `{host}`: {}",
            super::session::stderr_tail(o)
        )),
        HostRun::Broke(e) => Err(e.clone()),
        HostRun::NotRun => Err("not run: interrupted".into()),
    }
}

/// `shipit run`: the task on its hosts, as a deploy would run it.
pub async fn run(ctx: Ctx, r: TaskRun<'_>) -> anyhow::Result<Outcome> {
    let began = std::time::Instant::now();
    r.validate()?;
    let name = r.task.name.clone();
    let labels: Vec<String> = if r.task.local {
        vec![super::event::LOCAL_LABEL.to_string()]
    } else {
        r.hosts.iter().map(|h| h.name.to_string()).collect()
    };
    started(
        &ctx,
        Recipe::Run,
        r.stage,
        &labels,
        format!("task `{name}`: {}", ctx.redactor.apply(&r.task.run)),
    );
    let mut session = Session::open(&r.hosts, &r.config.ssh, ctx.clone()).await?;
    let paths: Vec<HostPaths> = r.hosts.iter().map(|h| HostPaths::of(r.config, h)).collect();
    let probe = HostStep {
        recipe: Recipe::Run,
        stage: r.stage.to_string(),
        name: "current".into(),
        timeout: SCRIPT_TIMEOUT,
        output: false,
    };
    let plan = host_step::on_every_host(&probe, &r.hosts, |i| current::probe(&paths[i]));
    let currents = session.run_hosts(&plan).await;

    // Each host's task, or why it cannot run; index = label.
    let mut ends: Vec<Option<HostEnd>> = vec![None; labels.len()];
    let mut scripts = Vec::new();
    for (i, h) in r.hosts.iter().enumerate() {
        if matches!(currents[i], HostRun::NotRun) {
            continue;
        }
        let script = current_of(&h.name, &currents[i]).and_then(|c| {
            let rendered = r.render(h, &c).map_err(|e| e.to_string())?;
            let env = r.env_of(h, &c).map_err(|e| e.to_string())?;
            let dir = if r.task.local {
                ".".to_string()
            } else {
                paths[i].current()
            };
            Ok(commands::task(
                &paths[i],
                &r.release(&c),
                &dir,
                &rendered,
                &env,
                r.task.retries,
                r.task.interval,
            ))
        });
        match script {
            Ok(s) if r.task.local => scripts.push((Target::Local, s)),
            Ok(s) => scripts.push((Target::Host(i), s)),
            Err(why) => {
                // The task's step fails without running.
                let why = ctx.redactor.apply(&why).into_owned();
                let label = labels[if r.task.local { 0 } else { i }].clone();
                ctx.send(Event::StepStarted {
                    host: label.clone(),
                    step: name.clone(),
                });
                ctx.send(Event::StepFinished {
                    host: label,
                    step: name.clone(),
                    outcome: StepOutcome::Failed(why.clone()),
                    duration: Duration::ZERO,
                    tail: Vec::new(),
                });
                ends[if r.task.local { 0 } else { i }] = Some(HostEnd {
                    ok: false,
                    state: why,
                });
            }
        }
    }
    let step = HostStep {
        recipe: Recipe::Run,
        stage: r.stage.to_string(),
        name: name.clone(),
        timeout: r.task.timeout.unwrap_or(TASK_TIMEOUT),
        output: true,
    };
    let task_plan = host_step::plan(&step, &r.hosts, scripts);
    let results = session.run(&task_plan).await;
    for (n, node) in task_plan.nodes.iter().enumerate() {
        let i = node.host.unwrap_or(0);
        ends[i] = Some(end(&HostRun::from_result(results[n].as_ref())));
    }
    session.close().await;
    let ends: Vec<HostEnd> = ends
        .into_iter()
        .map(|e| {
            e.unwrap_or(HostEnd {
                ok: false,
                state: "not run: interrupted".into(),
            })
        })
        .collect();
    let trips: Vec<usize> = if r.task.local {
        // The probe on the host, the task here.
        vec![session.round_trips(0) + 1]
    } else {
        (0..r.hosts.len()).map(|h| session.round_trips(h)).collect()
    };
    Ok(finish(
        &ctx,
        Recipe::Run,
        r.stage,
        &format!("task `{name}`"),
        Ran {
            labels: &labels,
            ends: &ends,
            round_trips: &trips,
            duration: began.elapsed(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::CommandOutput;

    fn e(ok: bool) -> HostEnd {
        HostEnd {
            ok,
            state: if ok { "exit 0" } else { "exit 3" }.into(),
        }
    }

    #[test]
    fn the_headline_names_the_failed_hosts() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            headline("the command", &names, &[e(true), e(false), e(true)], false),
            "the command failed on b; ok on 2 of 3 hosts"
        );
        assert_eq!(
            headline("the command", &names, &[e(true), e(false), e(false)], true),
            "interrupted: the command succeeded on 1 of 3 hosts; not ok: b, c"
        );
        assert_eq!(
            headline("the command", &names[..1], &[e(true)], false),
            "the command succeeded on a"
        );
        assert_eq!(
            headline("task `t`", &names, &[e(true), e(true), e(true)], false),
            "task `t` succeeded on all 3 hosts"
        );
        assert_eq!(
            headline("the command", &names[..1], &[e(true)], true),
            "interrupted: the command succeeded on a"
        );
        assert_eq!(outcome(&[e(true)], true), Outcome::Interrupted);
        assert_eq!(outcome(&[e(true), e(false)], false), Outcome::Failed);
        assert_eq!(outcome(&[e(true)], false), Outcome::Success);
    }

    #[test]
    fn a_host_without_current_cannot_run_its_task() {
        let out = |status: i32, stdout: &str| {
            HostRun::Exited(CommandOutput {
                status: Some(status),
                stdout: stdout.as_bytes().to_vec(),
                stderr: b"denied\n".to_vec(),
            })
        };
        assert_eq!(
            current_of("h", &out(0, "")),
            Err("no current release on `h` (deploy the stage first)".into())
        );
        assert_eq!(
            current_of("h", &out(1, "")),
            Err("cannot read `current` on `h`: exited 1: denied".into())
        );
        assert_eq!(
            current_of("h", &out(0, "current:releases/R\ncommit:abc\n")),
            Ok(Current {
                release: "R".into(),
                commit: "abc".into()
            })
        );
    }
}
