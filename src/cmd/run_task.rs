//! `shipit run STAGE TASK`: one task from deploy.yml on its hosts, outside
//! a deploy, as a deploy would run it after publish (the protocol is
//! [`crate::engine::remote_command`]). Takes no lock and writes nothing to
//! the ledger.

use super::App;
use crate::config::Host;
use crate::engine::remote_command::{self, TaskRun};
use crate::outcome::{Outcome, UsageError};
use crate::plan::host_step::targets;
use crate::plan::{planner, ReleaseInfo};

pub async fn run(app: &App, stage: &str, task_name: &str) -> anyhow::Result<Outcome> {
    let config = app.load_stage_config(stage).await?;
    let task = config.task(task_name).cloned().ok_or_else(|| {
        UsageError(format!(
            "unknown task `{task_name}`; deploy.yml defines {}",
            if config.tasks.is_empty() {
                "no tasks".to_string()
            } else {
                config
                    .tasks
                    .iter()
                    .map(|t| format!("`{}`", t.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))
    })?;
    if let Some(http) = &task.http {
        return Err(UsageError(format!(
            "task `{task_name}` is an HTTP check (`http: {}`), which deploy and rollback run from this machine; `shipit run` runs commands on hosts",
            http.url
        ))
        .into());
    }
    let (_, selected) = planner::select_hosts(&config, stage, &app.filters())?;
    let idx = targets(&task, &selected);
    if idx.is_empty() {
        return Err(UsageError(format!(
            "task `{task_name}` runs on hosts with role {}; no selected host of stage `{stage}` has one",
            task.roles
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ))
        .into());
    }
    let hosts: Vec<&Host> = idx.iter().map(|&i| selected[i]).collect();
    let release = ReleaseInfo {
        id: Default::default(),
        commit: Default::default(),
        reference: config.branch.clone(),
        user: app.user(),
        application: config.application.clone(),
        stage: stage.into(),
        build_url: app.env.get("BUILD_URL").cloned(),
        digest: None,
        commit_time: None,
    };
    let redactor = app.redactor(&config)?;
    let run = TaskRun {
        config: &config,
        stage,
        task: &task,
        hosts,
        release,
        env: &app.env,
    };
    // A missing secret fails before any host is touched, as in a deploy.
    run.validate()?;
    app.reported(redactor, |ctx| remote_command::run(ctx, run))
        .await
}
