//! `shipit releases STAGE`: per host, the releases, which one is current,
//! and each one's status from the host's ledger; then where hosts disagree
//! (the protocol is [`crate::engine::ledger_read`]).

use super::App;
use crate::engine;
use crate::outcome::Outcome;
use crate::plan::planner;

pub async fn run(app: &App, stage: &str) -> anyhow::Result<Outcome> {
    let config = app.load_config_for(&[stage]).await?;
    let (_, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    app.reported(app.base_redactor(), |ctx| {
        engine::ledger_read::releases(ctx, &config, stage, &hosts)
    })
    .await
}
