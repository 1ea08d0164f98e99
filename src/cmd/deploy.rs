//! `shipit deploy STAGE [--revision REF] [--release ID] [--wait-lock D]`:
//! resolves the commit and mints the release id (or takes the given one)
//! here, then runs the deploy protocol of
//! [`crate::engine::deploy`].

use std::time::Duration;

use super::App;
pub use crate::engine::deploy::Promotion;
use crate::engine::deploy::{self, Request};
use crate::outcome::{Outcome, UsageError};
use crate::plan::release;

pub async fn run(
    app: &App,
    stage: &str,
    revision: Option<&str>,
    release_id: Option<&str>,
    wait_lock: Option<Duration>,
) -> anyhow::Result<Outcome> {
    if let Some(id) = release_id {
        release::check_fixed_id(id).map_err(UsageError)?;
    }
    run_with(app, stage, revision, release_id, wait_lock, None).await
}

/// A deploy; with `promotion`, of exactly the promoted commit and archive.
pub async fn run_with(
    app: &App,
    stage: &str,
    revision: Option<&str>,
    release_id: Option<&str>,
    wait_lock: Option<Duration>,
    promotion: Option<&Promotion>,
) -> anyhow::Result<Outcome> {
    let config = app.load_stage_config(stage).await?;
    let filters = app.filters();
    // The stage and filters are checked before the commit is resolved.
    crate::plan::planner::select_hosts(&config, stage, &filters)?;
    let mut release = app.release_info(&config, stage, revision)?;
    if let Some(id) = release_id {
        release.id = id.into();
    }
    let artifact = app.artifact(&config, &mut release)?;
    let holder = app.lock_holder(stage, &release.id, "deploy");
    let mut req = Request {
        config: &config,
        stage,
        filters: &filters,
        release,
        artifact: artifact.map(|a| a.bytes),
        promotion,
        holder,
        redactor: app.redactor(&config)?,
        wait_lock,
        fixed_id: release_id.is_some(),
    };
    // Everything that can fail without a host fails before connecting.
    deploy::prepare(&mut req, &app.env)?;
    let reporting = app.reporting();
    let result = deploy::run(req, &app.run_ctx(), &reporting.events).await;
    reporting.finish().await;
    result
}
