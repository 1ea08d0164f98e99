//! `shipit lock STAGE [-m MSG]` and `shipit unlock STAGE [--force]`: hold
//! or free the deploy lock on every host of a stage by hand (the protocol
//! is [`crate::engine::hand_lock`]).

use super::App;
use crate::engine::hand_lock::{self, Unlocker, DEFAULT_MESSAGE};
use crate::outcome::Outcome;
use crate::plan::planner;

pub use crate::lock::holder_seen;

pub async fn lock(app: &App, stage: &str, message: Option<&str>) -> anyhow::Result<Outcome> {
    let config = app.load_config_for(&[stage]).await?;
    let (_, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    let mut holder = app.lock_holder(stage, "lock", "lock").by_hand();
    holder.message = message
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_MESSAGE)
        .to_string();
    let staleness = app.staleness();
    app.reported(app.base_redactor(), |ctx| {
        hand_lock::lock(ctx, &config, stage, &hosts, &holder, &staleness)
    })
    .await
}

pub async fn unlock(app: &App, stage: &str, force: bool) -> anyhow::Result<Outcome> {
    let config = app.load_config_for(&[stage]).await?;
    let (_, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    let user = app.user();
    let unlocker = Unlocker {
        user: &user,
        force,
        application: &config.application,
        build_url: app.env.get("BUILD_URL").map(String::as_str),
    };
    let staleness = app.staleness();
    app.reported(app.base_redactor(), |ctx| {
        hand_lock::unlock(ctx, &config, stage, &hosts, &unlocker, &staleness)
    })
    .await
}
