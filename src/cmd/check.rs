//! `shipit check STAGE`: preflight on every host, changing nothing (the
//! protocol is [`crate::engine::check`]).

use super::App;
use crate::engine;
use crate::outcome::Outcome;
use crate::plan::planner;

pub async fn run(app: &App, stage: &str) -> anyhow::Result<Outcome> {
    let config = app.load_config_for(&[stage]).await?;
    let (_, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    let staleness = app.staleness();
    app.reported(app.base_redactor(), |ctx| {
        engine::check::run(ctx, &config, stage, &hosts, &staleness)
    })
    .await
}
