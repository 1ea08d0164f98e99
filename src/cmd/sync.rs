//! `shipit sync STAGE [--hosts H]`: hosts of the stage without a current
//! release (a new or replaced instance) get exactly the release the
//! others run, through the deploy protocol with that id, commit and
//! archive; the others are left alone. The read and the decision are
//! [`crate::engine::sync`].

use std::time::Duration;

use super::App;
use crate::engine::deploy::{self, Request};
use crate::engine::event::Event;
use crate::engine::session::{summary, Ctx, HostEnd};
use crate::engine::{sync, EventSink};
use crate::outcome::{GateError, Outcome};
use crate::plan::{planner, Filters};

pub async fn run(app: &App, stage: &str, wait_lock: Option<Duration>) -> anyhow::Result<Outcome> {
    let config = app.load_stage_config(stage).await?;
    let filters = app.filters();
    let (_, selected) = planner::select_hosts(&config, stage, &filters)?;
    let selected: Vec<String> = selected.iter().map(|h| h.name.to_string()).collect();
    // Every host of the stage says what it runs, whatever the filters.
    let (_, all) = planner::select_hosts(&config, stage, &Filters::default())?;
    let read = {
        let (events, _) = EventSink::new();
        let ctx = Ctx {
            events,
            redactor: std::sync::Arc::new(app.base_redactor()),
            parallel: app.global.parallel,
            shutdown: app.shutdown.clone(),
        };
        sync::read(&ctx, &config, stage, &all).await?
    };
    let names: Vec<String> = all.iter().map(|h| h.name.to_string()).collect();
    let pairs: Vec<(&str, &_)> = names.iter().map(String::as_str).zip(read.iter()).collect();
    let d = sync::decide(stage, &pairs).map_err(anyhow::Error::msg)?;
    let targets: Vec<String> = d
        .behind
        .iter()
        .filter(|h| selected.contains(h))
        .cloned()
        .collect();
    if targets.is_empty() {
        return nothing_to_do(app, stage, &d, &selected).await;
    }

    let mut release = app.release_info(&config, stage, Some(&d.commit))?;
    release.id = d.release.as_str().into();
    release.reference = format!("sync of release {}", d.release);
    let artifact = app.artifact(&config, &mut release)?;
    if let (Some(want), Some(got)) = (&d.digest, &release.digest) {
        if want != got {
            return Err(GateError(format!(
                "the archive built here for commit {} has digest {got}, but the hosts of `{stage}` run {want}: refusing to sync a different archive",
                release.commit
            ))
            .into());
        }
    }
    let only = Filters {
        hosts: targets.clone(),
        roles: Vec::new(),
    };
    let holder = app.lock_holder(stage, &release.id, "sync");
    let mut req = Request {
        config: &config,
        stage,
        filters: &only,
        release,
        artifact: artifact.map(|a| a.bytes),
        promotion: None,
        holder,
        redactor: app.redactor(&config)?,
        wait_lock,
        fixed_id: true,
    };
    deploy::prepare(&mut req, &app.env)?;
    let reporting = app.reporting();
    reporting.events.send(Event::Notice(format!(
        "sync: {} onto release {} (commit {}), which {} run{}",
        targets.join(", "),
        d.release,
        &d.commit[..d.commit.len().min(12)],
        d.on.join(", "),
        if d.on.len() == 1 { "s" } else { "" }
    )));
    let result = deploy::run(req, &app.run_ctx(), &reporting.events).await;
    reporting.finish().await;
    result
}

/// Every selected host is already on the release (or has one): a summary
/// saying so, changing nothing.
async fn nothing_to_do(
    app: &App,
    stage: &str,
    d: &sync::Decision,
    selected: &[String],
) -> anyhow::Result<Outcome> {
    let reporting = app.reporting();
    let headline = format!(
        "every selected host of `{stage}` is on release {}; nothing to sync",
        d.release
    );
    reporting.events.send(Event::RunStarted {
        recipe: "sync".into(),
        stage: stage.to_string(),
        release: d.release.clone(),
        commit: d.commit.clone(),
        reference: format!("sync of release {}", d.release),
        hosts: selected.to_vec(),
    });
    let ends: Vec<HostEnd> = selected
        .iter()
        .map(|_| HostEnd {
            ok: true,
            state: format!("on {}", d.release),
        })
        .collect();
    let mut s = summary(
        "sync",
        stage,
        selected,
        &ends,
        &vec![1; selected.len()],
        headline,
        Outcome::Success,
        Duration::ZERO,
    );
    s.release = d.release.clone();
    s.commit = d.commit.clone();
    reporting.events.send(Event::Finished(s));
    reporting.finish().await;
    Ok(Outcome::Success)
}
