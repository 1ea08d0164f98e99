//! `shipit exec STAGE -- CMD`: a command on every selected host at once,
//! each host's output printed in one piece, a summary per host. Takes no
//! lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fan_out::{self, HostEnd};
use super::App;
use crate::outcome::{Outcome, UsageError};
use crate::plan::planner;

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
    let fan = fan_out::Fan {
        recipe: "exec",
        stage,
        what: "the command",
        notice: format!("command: {}", redactor.apply(&script)),
        labels: hosts.iter().map(|h| h.name.clone()).collect(),
        started,
    };
    fan_out::run(app, fan, &hosts, &config.ssh, &redactor, |slot| {
        let script = script.clone();
        let redactor = redactor.clone();
        async move {
            match slot.transport {
                Err(why) => fan_out::fail_step(&slot.label, "connect", &why, &slot.events),
                Ok(t) => {
                    let r = fan_out::run_step(
                        t,
                        &slot.label,
                        STEP,
                        &script,
                        timeout,
                        &slot.events,
                        &redactor,
                    )
                    .await;
                    HostEnd {
                        ok: r.ok,
                        state: r.state,
                        commands: 1,
                    }
                }
            }
        }
    })
    .await
}
