//! `shipit exec STAGE -- CMD`: a command on every selected host at once,
//! each host's output printed in one piece, a summary per host. Takes no
//! lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::fan_out::{self, HostEnd};
use super::App;
use crate::exec::connect::{close_all, connect_all};
use crate::exec::{Event, EventSink};
use crate::outcome::{Outcome, UsageError};
use crate::plan::planner;
use crate::report;
use crate::transport::Transport;

/// The step name `exec`'s command is reported under.
pub const STEP: &str = "exec";

pub async fn run(
    app: &App,
    stage: &str,
    command: &[String],
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let script = command.join(" ");
    if script.trim().is_empty() {
        return Err(UsageError("`shipit exec` needs a command after `--`".into()).into());
    }
    let config = app.load_config()?;
    let (_, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    let redactor = Arc::new(app.redactor(&config)?);
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let control = tempfile::Builder::new()
        .prefix("shipit-")
        .tempdir_in(std::env::temp_dir())
        .context("cannot create a directory for ssh control sockets")?;

    let (sink, rx) = EventSink::new();
    let reporter = tokio::spawn(report::drive_output(rx, app.output.clone()));
    sink.send(Event::RunStarted {
        recipe: "exec".into(),
        stage: stage.to_string(),
        release: String::new(),
        commit: String::new(),
        reference: String::new(),
        hosts: names.clone(),
    });
    sink.send(Event::Notice(format!(
        "command: {}",
        redactor.apply(&script)
    )));

    let transports: Vec<Result<Arc<dyn Transport>, String>> =
        connect_all(&hosts, &config.ssh, control.path())
            .await
            .into_iter()
            .map(|c| c.map_err(|e| redactor.apply(&e.to_string()).into_owned()))
            .collect();
    let ends = fan_out::each_host(
        names.len(),
        app.global.parallel,
        &app.shutdown,
        &sink,
        |i| {
            let label = names[i].clone();
            let transport = transports[i].clone();
            let script = script.clone();
            let sink = sink.clone();
            let redactor = redactor.clone();
            async move {
                match transport {
                    Err(why) => fan_out::fail_step(&label, "connect", &why, &sink),
                    Ok(t) => {
                        let r =
                            fan_out::run_step(t, &label, STEP, &script, timeout, &sink, &redactor)
                                .await;
                        HostEnd {
                            ok: r.ok,
                            state: r.state,
                            commands: 1,
                        }
                    }
                }
            }
        },
    )
    .await;
    let connected: Vec<Option<Arc<dyn Transport>>> = transports
        .iter()
        .map(|t| t.as_ref().ok().cloned())
        .collect();
    close_all(&connected).await;

    let interrupted = *app.shutdown.borrow();
    let summary = fan_out::summary(
        "exec",
        stage,
        "the command",
        &names,
        &ends,
        interrupted,
        started.elapsed(),
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
