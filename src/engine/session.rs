//! A session: the connections to a set of hosts, over which plans run
//! through the one [`Executor`], one after another. What the commands that
//! work on a stage outside a deploy share (`check`, `releases`, `history`,
//! `lock`, `unlock`, `approve`, `exec`, `run`).
//!
//! Opening a session connects to every host at once; a host that cannot be
//! reached gets a failed `connect` step, and its nodes in every plan fail
//! with the connection's error. Each plan's results are read per host as a
//! [`HostRun`]; [`parse_output`] turns a script's answer into what it
//! reports, or says why there is none.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use super::connect::{close_all, connect_all};
use super::event::{Event, HostSummary, StepOutcome, Summary};
use super::executor::{EventSink, Executor, NodeResult};
use crate::config::{Host, SshSettings};
use crate::outcome::{exit_code, Outcome};
use crate::plan::host_step::node_of;
use crate::plan::Plan;
use crate::redact::Redactor;
use crate::transport::local::LocalTransport;
use crate::transport::{CommandOutput, Transport};

/// What a run is given by the command: where events go, what is redacted,
/// how many nodes run at once, and the shutdown signal.
#[derive(Clone)]
pub struct Ctx {
    pub events: EventSink,
    pub redactor: Arc<Redactor>,
    pub parallel: usize,
    pub shutdown: watch::Receiver<bool>,
}

impl Ctx {
    pub fn send(&self, e: Event) {
        self.events.send(e);
    }

    /// SIGINT or SIGTERM came.
    pub fn interrupted(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// What one host's node of a plan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRun {
    /// The script ran to an exit, with any status.
    Exited(CommandOutput),
    /// It did not run to an exit (not connected, timed out, connection
    /// lost): why, redacted.
    Broke(String),
    /// It never started: the run was interrupted first, or the host has
    /// no node in the plan.
    NotRun,
}

impl HostRun {
    /// From the executor's result of a node.
    pub fn from_result(r: Option<&NodeResult>) -> HostRun {
        match r {
            None => HostRun::NotRun,
            Some(r) => match (&r.output, &r.reason) {
                (Some(o), Some(why)) if !why.starts_with("timed out") => HostRun::Exited(o.clone()),
                (Some(o), None) => HostRun::Exited(o.clone()),
                (_, Some(why)) => HostRun::Broke(why.clone()),
                (None, None) => HostRun::Broke("failed".into()),
            },
        }
    }

    /// How it ended, for a summary: `exit 0`, `exit 3`, `timed out after
    /// 60s`, `not run: interrupted`.
    pub fn state(&self) -> String {
        match self {
            HostRun::Exited(o) => match o.status {
                Some(c) => format!("exit {c}"),
                None => "killed by a signal".into(),
            },
            HostRun::Broke(why) => why.clone(),
            HostRun::NotRun => "not run: interrupted".into(),
        }
    }

    pub fn ok(&self) -> bool {
        matches!(self, HostRun::Exited(o) if o.success())
    }
}

/// `parse` of what `script` printed on a host, or why there is none, as a
/// message: the host's error, `the {script} script exited 1: ...`, or
/// `the {script} script's output is incomplete`.
pub fn parse_output<T>(
    run: &HostRun,
    script: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, String> {
    match run {
        HostRun::Broke(e) => Err(e.clone()),
        HostRun::NotRun => Err("not run: interrupted".into()),
        HostRun::Exited(o) if !o.success() => {
            Err(format!("the {script} script {}", stderr_tail(o)))
        }
        HostRun::Exited(o) => parse(&o.stdout_str())
            .ok_or_else(|| format!("the {script} script's output is incomplete")),
    }
}

/// The last few lines of a failed script's stderr, for a message.
pub fn stderr_tail(out: &CommandOutput) -> String {
    let err = out.stderr_str();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    match out.status {
        Some(s) if tail.is_empty() => format!("exited {s}"),
        Some(s) => format!("exited {s}: {tail}"),
        None => "ended by a signal".to_string(),
    }
}

/// How one host ended a run, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEnd {
    pub ok: bool,
    pub state: String,
}

/// Open connections to a set of hosts (index `i` is `hosts[i]`), and the
/// commands sent to each so far.
pub struct Session {
    ctx: Ctx,
    names: Vec<String>,
    transports: Vec<Option<Arc<dyn Transport>>>,
    errors: Vec<Option<String>>,
    round_trips: Vec<usize>,
    started: Instant,
    /// Holds the ssh control sockets; removed on drop.
    _control: tempfile::TempDir,
}

impl Session {
    /// Connects to every host (a bounded number at once). A host that
    /// cannot be reached gets a failed `connect` step; it is kept, and its
    /// nodes fail with why.
    pub async fn open(hosts: &[&Host], ssh: &SshSettings, ctx: Ctx) -> anyhow::Result<Session> {
        let started = Instant::now();
        let control = super::connect::control_dir(|n| ctx.send(Event::Notice(n)))
            .context("cannot create a directory for ssh control sockets")?;
        let names: Vec<String> = hosts.iter().map(|h| h.name.to_string()).collect();
        let mut transports = Vec::new();
        let mut errors = Vec::new();
        for (i, c) in connect_all(hosts, ssh, control.path())
            .await
            .into_iter()
            .enumerate()
        {
            match c {
                Ok(t) => {
                    transports.push(Some(t));
                    errors.push(None);
                }
                Err(e) => {
                    let why = ctx.redactor.apply(&e.to_string()).into_owned();
                    ctx.send(Event::StepFinished {
                        host: names[i].clone(),
                        step: "connect".into(),
                        outcome: StepOutcome::Failed(why.clone()),
                        duration: Duration::ZERO,
                        tail: Vec::new(),
                    });
                    transports.push(None);
                    errors.push(Some(why));
                }
            }
        }
        Ok(Session {
            ctx,
            round_trips: vec![0; names.len()],
            names,
            transports,
            errors,
            started,
            _control: control,
        })
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Commands sent to host `h` so far.
    pub fn round_trips(&self, h: usize) -> usize {
        self.round_trips[h]
    }

    /// Why host `h` could not be reached, if it could not.
    pub fn connect_error(&self, h: usize) -> Option<&str> {
        self.errors[h].as_deref()
    }

    /// Runs `plan` (whose hosts are this session's, in order) through the
    /// executor; index `n` of the result is node `n`'s.
    pub async fn run(&mut self, plan: &Plan) -> Vec<Option<NodeResult>> {
        let shutdown = self.ctx.shutdown.clone();
        self.run_with(plan, shutdown).await
    }

    async fn run_with(
        &mut self,
        plan: &Plan,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<Option<NodeResult>> {
        let local: Arc<dyn Transport> = Arc::new(LocalTransport::new("local"));
        let ex = Executor::new(
            self.transports.clone(),
            local,
            HashMap::new(),
            self.ctx.events.clone(),
            (*self.ctx.redactor).clone(),
            self.ctx.parallel,
            shutdown,
        );
        let report = ex.run(plan, |_| true, 0).await;
        for (h, n) in self.round_trips.iter_mut().enumerate() {
            *n += ex.round_trips(h);
        }
        let mut results = report.results;
        for (n, r) in results.iter_mut().enumerate() {
            let Some(h) = plan.nodes[n].host else {
                continue;
            };
            if let (Some(r), Some(why)) = (r.as_mut(), &self.errors[h]) {
                r.reason = Some(why.clone());
            }
        }
        results
    }

    /// Runs `plan` and reads each host's node (see [`HostRun`]); index `h`
    /// is host `h`.
    pub async fn run_hosts(&mut self, plan: &Plan) -> Vec<HostRun> {
        let results = self.run(plan).await;
        (0..self.names.len())
            .map(|h| HostRun::from_result(node_of(plan, h).and_then(|n| results[n].as_ref())))
            .collect()
    }

    /// [`Session::run_hosts`] that runs to its end whatever the shutdown
    /// signal says: for work that must not be abandoned half way (freeing
    /// a lock this run took). Each step still has its time limit.
    pub async fn run_hosts_to_end(&mut self, plan: &Plan) -> Vec<HostRun> {
        // The sender lives until the run ends: a dropped one would read as
        // a signal.
        let (_never, shutdown) = watch::channel(false);
        let results = self.run_with(plan, shutdown).await;
        (0..self.names.len())
            .map(|h| HostRun::from_result(node_of(plan, h).and_then(|n| results[n].as_ref())))
            .collect()
    }

    /// Ends every connection.
    pub async fn close(&self) {
        close_all(&self.transports).await;
    }

    /// Sends the run's summary: `ends[i]` is host `i`'s; `outcome` decides
    /// `ok` and the exit code.
    pub fn finish(
        &self,
        recipe: &str,
        stage: &str,
        ends: &[HostEnd],
        headline: String,
        outcome: Outcome,
    ) -> Outcome {
        self.ctx.send(Event::Finished(summary(
            recipe,
            stage,
            &self.names,
            ends,
            &self.round_trips,
            headline,
            outcome,
            self.started.elapsed(),
        )));
        outcome
    }

    /// Ends a run that was interrupted after its read round: `line` is its
    /// closing report line, each host's state is how its read ended.
    pub fn finish_interrupted(
        &self,
        recipe: &str,
        stage: &str,
        runs: &[HostRun],
        line: String,
    ) -> Outcome {
        self.ctx.send(Event::Report(vec![line]));
        let ends: Vec<HostEnd> = runs
            .iter()
            .map(|r| HostEnd {
                ok: false,
                state: r.state(),
            })
            .collect();
        self.finish(
            recipe,
            stage,
            &ends,
            "interrupted".into(),
            Outcome::Interrupted,
        )
    }
}

/// A run's summary, for runs that create no release.
#[allow(clippy::too_many_arguments)]
pub fn summary(
    recipe: &str,
    stage: &str,
    names: &[String],
    ends: &[HostEnd],
    round_trips: &[usize],
    headline: String,
    outcome: Outcome,
    duration: Duration,
) -> Summary {
    Summary {
        recipe: recipe.to_string(),
        stage: stage.to_string(),
        release: String::new(),
        commit: String::new(),
        ok: outcome == Outcome::Success,
        headline,
        hosts: names
            .iter()
            .enumerate()
            .map(|(i, n)| HostSummary {
                host: n.clone(),
                ok: ends.get(i).is_some_and(|e| e.ok),
                state: ends
                    .get(i)
                    .map(|e| e.state.clone())
                    .unwrap_or_else(|| "not run: interrupted".into()),
                round_trips: round_trips.get(i).copied().unwrap_or(0),
            })
            .collect(),
        duration,
        exit_code: exit_code(&Ok(outcome)),
    }
}

/// `N host(s): a, b` as a heading says it.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(status: i32, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput {
            status: Some(status),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    fn result(ok: bool, output: Option<CommandOutput>, reason: Option<&str>) -> NodeResult {
        NodeResult {
            ok,
            output,
            reason: reason.map(str::to_string),
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn host_runs_tell_an_exit_from_a_break() {
        let ok = result(true, Some(out(0, "x", "")), None);
        assert!(HostRun::from_result(Some(&ok)).ok());
        let exit = result(false, Some(out(3, "", "boom")), Some("exit 3"));
        let r = HostRun::from_result(Some(&exit));
        assert_eq!(r.state(), "exit 3");
        assert!(!r.ok());
        let timed = result(false, Some(out(124, "", "")), Some("timed out after 60s"));
        assert_eq!(
            HostRun::from_result(Some(&timed)),
            HostRun::Broke("timed out after 60s".into())
        );
        let lost = result(false, None, Some("lost connection"));
        assert_eq!(
            HostRun::from_result(Some(&lost)),
            HostRun::Broke("lost connection".into())
        );
        assert_eq!(HostRun::from_result(None), HostRun::NotRun);
        assert_eq!(HostRun::NotRun.state(), "not run: interrupted");
    }

    #[test]
    fn parse_output_says_why_there_is_nothing_to_read() {
        let parse = |s: &str| s.strip_prefix("v:").map(str::to_string);
        assert_eq!(
            parse_output(&HostRun::Exited(out(0, "v:1", "")), "lock", parse),
            Ok("1".to_string())
        );
        assert_eq!(
            parse_output(&HostRun::Exited(out(0, "nope", "")), "lock", parse),
            Err("the lock script's output is incomplete".to_string())
        );
        assert_eq!(
            parse_output(
                &HostRun::Exited(out(2, "", "a\nb\n\nc\nd\n")),
                "lock",
                parse
            ),
            Err("the lock script exited 2: b | c | d".to_string())
        );
        assert_eq!(
            parse_output(&HostRun::Broke("gone".into()), "lock", parse),
            Err("gone".to_string())
        );
    }

    #[test]
    fn summaries_carry_the_exit_code_of_the_outcome() {
        let names = vec!["a".to_string(), "b".to_string()];
        let ends = vec![
            HostEnd {
                ok: true,
                state: "locked".into(),
            },
            HostEnd {
                ok: false,
                state: "held".into(),
            },
        ];
        let s = summary(
            "lock",
            "staging",
            &names,
            &ends,
            &[1, 2],
            "refused".into(),
            Outcome::Locked,
            Duration::ZERO,
        );
        assert_eq!((s.ok, s.exit_code), (false, 4));
        assert_eq!(s.hosts[1].round_trips, 2);
        assert_eq!(s.hosts[1].state, "held");
        let s = summary(
            "check",
            "staging",
            &names,
            &[],
            &[],
            "ok".into(),
            Outcome::Success,
            Duration::ZERO,
        );
        assert_eq!((s.ok, s.exit_code), (true, 0));
        assert_eq!(s.hosts[0].state, "not run: interrupted");
    }
}
