//! `shipit history STAGE [-n N]`: the stage's ledger, every host's merged
//! into one list, newest first (see [`crate::engine::history`]).
//!
//! ```text
//! 2026-11-24T19:01:02Z  verified     20261124T190102Z  e02a4e2c4457  tester  fleet-1, fleet-2, fleet-3
//! 2026-11-24T19:03:40Z  rolled_back  20261124T190102Z  e02a4e2c4457  tester  fleet-1  (to 20261120T080000Z)
//! ```

use super::App;
use crate::engine;
use crate::outcome::Outcome;
use crate::plan::planner;

pub async fn run(app: &App, stage: &str, limit: usize) -> anyhow::Result<Outcome> {
    let config = app.load_config_for(&[stage]).await?;
    let (_, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    app.reported(app.base_redactor(), |ctx| {
        engine::ledger_read::history(ctx, &config, stage, &hosts, limit)
    })
    .await
}
