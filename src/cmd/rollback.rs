//! `shipit rollback STAGE [--to ID] [--force]`: every host back to the
//! previous good release its ledger names (or `ID`). The protocol is
//! [`crate::engine::rollback`].

use std::collections::BTreeSet;

use super::App;
use crate::config::Config;
use crate::engine::rollback::{self, Request};
use crate::outcome::{Outcome, UsageError};
use crate::plan::planner;
use crate::plan::release::{check_fixed_id, is_release_id};
use crate::plan::render::{env_references, referenced_env};
use crate::redact::Redactor;

/// Masks the secrets the tasks read. Unlike a deploy's, it does not need
/// the templates (a rollback renders none), so a missing template file
/// does not stop it.
fn redactor(app: &App, config: &Config) -> Redactor {
    app.redactor(config).unwrap_or_else(|_| {
        let mut names = BTreeSet::new();
        for t in &config.tasks {
            names.extend(referenced_env(&t.run));
        }
        names.extend(env_references(config));
        Redactor::new(&names, &app.env)
    })
}

pub async fn run(app: &App, stage: &str, to: Option<&str>, force: bool) -> anyhow::Result<Outcome> {
    if let Some(id) = to {
        if !is_release_id(id) && check_fixed_id(id).is_err() {
            return Err(UsageError(format!(
                "`{id}` is not a release id (like 20261124T190102Z; `shipit releases {stage}` lists them)"
            ))
            .into());
        }
    }
    let config = app.load_stage_config(stage).await?;
    let (_, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    let req = Request {
        config: &config,
        stage,
        hosts,
        to,
        force,
        holder: app.lock_holder(stage, "rollback", "rollback"),
        redactor: redactor(app, &config),
    };
    let reporting = app.reporting();
    let result = rollback::run(req, &app.run_ctx(), &reporting.events).await;
    reporting.finish().await;
    result
}
