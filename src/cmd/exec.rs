//! `shipit exec STAGE -- CMD`: a command on every selected host at once,
//! each host's output in one piece, a summary per host. Takes no lock (the
//! protocol is [`crate::engine::remote_command`]).

use std::time::Duration;

use super::App;
use crate::engine::remote_command;
use crate::outcome::{Outcome, UsageError};
use crate::plan::planner;

pub async fn run(
    app: &App,
    stage: &str,
    command: &[String],
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let script = command.join(" ");
    if script.trim().is_empty() {
        return Err(UsageError("`shipit exec` needs a command after `--`".into()).into());
    }
    let config = app.load_stage_config(stage).await?;
    let (_, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    let redactor = app.redactor(&config)?;
    app.reported(redactor, |ctx| {
        remote_command::exec(ctx, &config, stage, &hosts, &script, timeout)
    })
    .await
}
