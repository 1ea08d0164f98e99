//! The subcommands, and what they share: the world they run in.

mod app;
pub mod approve;
pub mod check;
pub mod completions;
pub mod deploy;
pub mod exec;
pub mod history;
pub mod init;
pub mod lock;
pub mod man;
pub mod plan;
pub mod promote;
pub mod releases;
pub mod rollback;
pub mod run_task;
pub mod schema;
pub mod secrets;
pub mod sync;

pub use app::{App, Reporting};

use crate::cli::{Cli, Command};
use crate::outcome::Outcome;

/// The output of the commands that print text made from shipit itself
/// (completions, manual pages, the deploy.yml schema): no config, no
/// hosts, no runtime. `None` for every other command. `main` prints it.
pub fn generated(command: &Command) -> Option<anyhow::Result<Vec<u8>>> {
    use clap::CommandFactory;
    Some(match command {
        Command::Completions { shell } => Ok(completions::script(Cli::command(), *shell)),
        Command::Man { command, dir: None } => man::page(Cli::command(), command.as_deref()),
        Command::Man { dir: Some(dir), .. } => {
            man::write_pages(Cli::command(), dir).map(|written| {
                written
                    .iter()
                    .map(|p| format!("wrote {}\n", p.display()))
                    .collect::<String>()
                    .into_bytes()
            })
        }
        Command::Schema => Ok(schema::text().into_bytes()),
        _ => return None,
    })
}

pub async fn run(cli: Cli, app: App) -> anyhow::Result<Outcome> {
    match &cli.command {
        Command::Completions { .. } | Command::Man { .. } | Command::Schema => {
            // `main` prints these through `generated` before it gets here.
            Err(anyhow::anyhow!(
                "this command prints through `cmd::generated`"
            ))
        }
        Command::Init {
            path,
            force,
            stages,
        } => {
            let text = init::run(path, *force, stages)?;
            app.write_out(&text)?;
            Ok(Outcome::Success)
        }
        Command::Plan {
            stage,
            recipe,
            revision,
        } => {
            let text = plan::run(&app, stage, *recipe, revision.as_deref()).await?;
            app.write_out(&text)?;
            Ok(Outcome::Success)
        }
        Command::Deploy {
            stage,
            revision,
            release,
            wait_lock,
        } => {
            deploy::run(
                &app,
                stage,
                revision.as_deref(),
                release.as_deref(),
                *wait_lock,
            )
            .await
        }
        Command::Check { stage } => check::run(&app, stage).await,
        Command::Sync { stage, wait_lock } => sync::run(&app, stage, *wait_lock).await,
        Command::Releases { stage } => releases::run(&app, stage).await,
        Command::Lock { stage, message } => lock::lock(&app, stage, message.as_deref()).await,
        Command::Unlock { stage, force } => lock::unlock(&app, stage, *force).await,
        Command::Rollback { stage, to, force } => {
            rollback::run(&app, stage, to.as_deref(), *force).await
        }
        Command::History { stage, limit } => history::run(&app, stage, *limit).await,
        Command::Exec {
            stage,
            timeout,
            command,
        } => exec::run(&app, stage, command, *timeout).await,
        Command::Run { stage, task } => run_task::run(&app, stage, task).await,
        Command::Secrets { action } => secrets::run(&app, action, &mut std::io::stdin().lock()),
        Command::Promote {
            stages,
            yes,
            check,
            sign_key,
            wait_lock,
        } => {
            let (from, to) = match stages.as_slice() {
                [to] => (None, to.as_str()),
                [from, to] => (Some(from.as_str()), to.as_str()),
                _ => {
                    return Err(crate::outcome::UsageError(
                        "`shipit promote` takes `TO` or `FROM TO`".into(),
                    )
                    .into())
                }
            };
            promote::promote(
                &app,
                promote::PromoteArgs {
                    from,
                    to,
                    yes: *yes,
                    check: *check,
                    sign_key: sign_key.as_deref(),
                    wait_lock: *wait_lock,
                },
            )
            .await
        }
        Command::Approve {
            stage,
            release,
            commit,
            as_user,
            reject,
            expires,
            sign_key,
            message,
        } => {
            approve::run(
                &app,
                approve::ApproveArgs {
                    stage,
                    release: release.as_deref(),
                    commit: commit.as_deref(),
                    as_user: as_user.as_deref(),
                    reject: *reject,
                    expires: *expires,
                    sign_key: sign_key.as_deref(),
                    message: message.as_deref(),
                },
            )
            .await
        }
    }
}
