//! One piece of work per host, at most `-j` at once, reported through
//! events: what `exec` and `run` share. Nothing here locks the stage.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::App;
use crate::config::{Host, SshSettings};
use crate::engine::connect::{close_all, connect_all};
use crate::engine::executor::tail;
use crate::engine::{Event, EventSink, HostSummary, StepOutcome, Summary};
use crate::outcome::Outcome;
use crate::redact::Redactor;
use crate::report;
use crate::transport::{CommandOutput, Transport, TransportError};

/// How one host's work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEnd {
    pub ok: bool,
    /// For the summary: `exit 0`, `exit 3`, `timed out after 600s`, ...
    pub state: String,
    /// Commands sent to the host.
    pub commands: usize,
}

/// What one command did.
#[derive(Debug, Clone)]
pub struct StepRun {
    pub ok: bool,
    /// `exit 0`, `exit 3`, `timed out after 60s`, `lost ...`; redacted.
    pub state: String,
}

/// A fan-out as `exec` and `run` report it.
pub struct Fan<'a> {
    /// The run's name in its events: `exec`, `run`.
    pub recipe: &'a str,
    pub stage: &'a str,
    /// The work, for the summary's headline: `the command`, ``task `build` ``.
    pub what: &'a str,
    /// Said once, before any host's work.
    pub notice: String,
    /// Host `i`'s name in the output.
    pub labels: Vec<String>,
    /// When the command started, for the summary's duration.
    pub started: Instant,
}

/// What one host's work is handed.
pub struct Slot {
    /// The host's index in `hosts` and `labels`.
    pub index: usize,
    pub label: String,
    /// The host's connection, or why there is none (redacted).
    pub transport: Result<Arc<dyn Transport>, String>,
    pub events: EventSink,
}

/// Connects to `hosts` (host `i` is labelled `fan.labels[i]`), runs `work`
/// for each as [`each_host`] does, then closes the connections. Reports
/// the start, the notice, the hosts' events and a [`summary`] through the
/// chosen output, and says how the run ended. Takes no lock.
pub async fn run<F, Fut>(
    app: &App,
    fan: Fan<'_>,
    hosts: &[&Host],
    ssh: &SshSettings,
    redactor: &Redactor,
    work: F,
) -> anyhow::Result<Outcome>
where
    F: Fn(Slot) -> Fut,
    Fut: Future<Output = HostEnd> + Send + 'static,
{
    let control = tempfile::Builder::new()
        .prefix("shipit-")
        .tempdir_in(std::env::temp_dir())
        .context("cannot create a directory for ssh control sockets")?;

    let (sink, rx) = EventSink::new();
    let reporter = tokio::spawn(report::drive_output(rx, app.output.clone()));
    sink.send(Event::RunStarted {
        recipe: fan.recipe.into(),
        stage: fan.stage.to_string(),
        release: String::new(),
        commit: String::new(),
        reference: String::new(),
        hosts: fan.labels.clone(),
    });
    sink.send(Event::Notice(fan.notice));

    let transports: Vec<Result<Arc<dyn Transport>, String>> =
        connect_all(hosts, ssh, control.path())
            .await
            .into_iter()
            .map(|c| c.map_err(|e| redactor.apply(&e.to_string()).into_owned()))
            .collect();
    let ends = each_host(
        fan.labels.len(),
        app.global.parallel,
        &app.shutdown,
        &sink,
        |i| {
            work(Slot {
                index: i,
                label: fan.labels[i].clone(),
                transport: transports[i].clone(),
                events: sink.clone(),
            })
        },
    )
    .await;
    let connected: Vec<Option<Arc<dyn Transport>>> = transports
        .iter()
        .map(|t| t.as_ref().ok().cloned())
        .collect();
    close_all(&connected).await;

    let interrupted = *app.shutdown.borrow();
    let summary = summary(
        fan.recipe,
        fan.stage,
        fan.what,
        &fan.labels,
        &ends,
        interrupted,
        fan.started.elapsed(),
    );
    let ok = summary.ok;
    sink.send(Event::Finished(summary));
    drop(sink);
    let _ = reporter.await;
    Ok(match (interrupted, ok) {
        (true, _) => Outcome::Interrupted,
        (false, true) => Outcome::Success,
        (false, false) => Outcome::Failed,
    })
}

/// Runs `work(i)` for each host `i` in `0..n`, at most `parallel` at once.
/// After an interrupt nothing new starts (those hosts are `None`); work
/// already running finishes (each has its time limit).
pub async fn each_host<F, Fut>(
    n: usize,
    parallel: usize,
    shutdown: &watch::Receiver<bool>,
    events: &EventSink,
    work: F,
) -> Vec<Option<HostEnd>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = HostEnd> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(parallel.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let permits = permits.clone();
        let stop = shutdown.clone();
        let job = work(i);
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if *stop.borrow() {
                return (i, None);
            }
            (i, Some(job.await))
        });
    }
    let mut ends: Vec<Option<HostEnd>> = vec![None; n];
    let mut shutdown = shutdown.clone();
    let mut told = *shutdown.borrow();
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                Some(Ok((i, end))) => ends[i] = end,
                Some(Err(e)) => events.send(Event::Notice(format!("internal error on a host: {e}"))),
                None => break,
            },
            changed = shutdown.changed(), if !told => {
                if changed.is_err() || *shutdown.borrow() {
                    told = true;
                }
                if *shutdown.borrow() {
                    events.send(Event::Notice(
                        "interrupted: starting nothing new; waiting for the running commands to finish".into(),
                    ));
                }
            }
        }
    }
    ends
}

/// Runs `script` on `transport` as step `step` of host `label`: sends
/// `StepStarted`, then the command's whole output (redacted) and
/// `StepFinished` with the usual tail. Never reads shipit's stdin.
pub async fn run_step(
    transport: Arc<dyn Transport>,
    label: &str,
    step: &str,
    script: &str,
    timeout: Duration,
    events: &EventSink,
    redactor: &Redactor,
) -> StepRun {
    events.send(Event::StepStarted {
        host: label.to_string(),
        step: step.to_string(),
    });
    let started = Instant::now();
    let res = transport.run(script, None, timeout).await;
    let duration = started.elapsed();
    let (outcome, tail_lines) = match &res {
        Ok(out) => {
            events.send(Event::Output {
                host: label.to_string(),
                step: step.to_string(),
                stdout: lines(&out.stdout_str(), redactor),
                stderr: lines(&out.stderr_str(), redactor),
            });
            if out.success() {
                (StepOutcome::Ok, Vec::new())
            } else {
                (StepOutcome::Failed(exit_reason(out)), tail(out, redactor))
            }
        }
        Err(e) => (
            StepOutcome::Failed(redactor.apply(&transport_reason(e)).into_owned()),
            Vec::new(),
        ),
    };
    let state = match &outcome {
        StepOutcome::Ok => "exit 0".to_string(),
        StepOutcome::Failed(why) => why.clone(),
    };
    events.send(Event::StepFinished {
        host: label.to_string(),
        step: step.to_string(),
        outcome: outcome.clone(),
        duration,
        tail: tail_lines,
    });
    StepRun {
        ok: outcome == StepOutcome::Ok,
        state,
    }
}

/// Reports step `step` of host `label` as failed before it could run.
pub fn fail_step(label: &str, step: &str, why: &str, events: &EventSink) -> HostEnd {
    events.send(Event::StepFinished {
        host: label.to_string(),
        step: step.to_string(),
        outcome: StepOutcome::Failed(why.to_string()),
        duration: Duration::ZERO,
        tail: Vec::new(),
    });
    HostEnd {
        ok: false,
        state: why.to_string(),
        commands: 0,
    }
}

fn exit_reason(out: &CommandOutput) -> String {
    match out.status {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".to_string(),
    }
}

fn transport_reason(e: &TransportError) -> String {
    match e {
        TransportError::Timeout { secs, .. } => format!("timed out after {secs}s"),
        other => other.to_string(),
    }
}

/// Output text as redacted lines, without trailing blank lines.
pub fn lines(text: &str, redactor: &Redactor) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(|l| redactor.apply(l).into_owned())
        .collect();
    while v.last().is_some_and(|l| l.trim().is_empty()) {
        v.pop();
    }
    v
}

/// The closing summary of a fan-out: `what` names the work in the
/// headline (`the command`, ``task `build` ``). `ok` only when every host
/// succeeded and nothing interrupted the run.
pub fn summary(
    recipe: &str,
    stage: &str,
    what: &str,
    names: &[String],
    ends: &[Option<HostEnd>],
    interrupted: bool,
    duration: Duration,
) -> Summary {
    let failed: Vec<&str> = names
        .iter()
        .zip(ends)
        .filter(|(_, e)| !e.as_ref().is_some_and(|e| e.ok))
        .map(|(n, _)| n.as_str())
        .collect();
    let ok_count = names.len() - failed.len();
    let headline = match (failed.is_empty(), interrupted) {
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
    };
    Summary {
        recipe: recipe.to_string(),
        stage: stage.to_string(),
        release: String::new(),
        commit: String::new(),
        // An interrupted run does not succeed (it exits 130).
        ok: failed.is_empty() && !interrupted,
        headline,
        hosts: names
            .iter()
            .zip(ends)
            .map(|(n, e)| HostSummary {
                host: n.clone(),
                ok: e.as_ref().is_some_and(|e| e.ok),
                state: e
                    .as_ref()
                    .map(|e| e.state.clone())
                    .unwrap_or_else(|| "not run: interrupted".to_string()),
                round_trips: e.as_ref().map(|e| e.commands).unwrap_or(0),
            })
            .collect(),
        duration,
        exit_code: match (failed.is_empty(), interrupted) {
            (_, true) => crate::outcome::exit_code(&Ok(crate::outcome::Outcome::Interrupted)),
            (true, false) => 0,
            (false, false) => 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn output_lines_are_redacted_and_trimmed() {
        let env: BTreeMap<String, String> =
            [("API_TOKEN".to_string(), "s3cr3t".to_string())].into();
        let r = Redactor::for_env(&[], &env);
        assert_eq!(
            lines("a s3cr3t b\n\nc\n\n", &r),
            vec!["a [redacted] b", "", "c"]
        );
    }

    #[test]
    fn summary_names_the_failed_hosts() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let end = |ok: bool, state: &str| {
            Some(HostEnd {
                ok,
                state: state.into(),
                commands: 1,
            })
        };
        let s = summary(
            "exec",
            "staging",
            "the command",
            &names,
            &[
                end(true, "exit 0"),
                end(false, "exit 3"),
                end(true, "exit 0"),
            ],
            false,
            Duration::ZERO,
        );
        assert!(!s.ok);
        assert_eq!(s.headline, "the command failed on b; ok on 2 of 3 hosts");
        assert_eq!(s.hosts[1].state, "exit 3");
        let s = summary(
            "exec",
            "staging",
            "the command",
            &names,
            &[end(true, "exit 0"), None, None],
            true,
            Duration::ZERO,
        );
        assert_eq!(
            s.headline,
            "interrupted: the command succeeded on 1 of 3 hosts; not ok: b, c"
        );
        assert_eq!(s.hosts[2].state, "not run: interrupted");
        let all = summary(
            "exec",
            "staging",
            "the command",
            &names[..1],
            &[end(true, "exit 0")],
            false,
            Duration::ZERO,
        );
        assert_eq!(all.headline, "the command succeeded on a");
        let stopped = summary(
            "exec",
            "staging",
            "the command",
            &names[..1],
            &[end(true, "exit 0")],
            true,
            Duration::ZERO,
        );
        assert!(!stopped.ok);
        assert_eq!(stopped.headline, "interrupted: the command succeeded on a");
    }
}
