//! The subcommands, and what they share: the world they run in.

pub mod check;
pub mod completions;
pub mod deploy;
pub mod exec;
pub mod fan_out;
pub mod history;
pub mod init;
pub mod lock;
pub mod man;
pub mod on_hosts;
pub mod plan;
pub mod promote;
pub mod releases;
pub mod rollback;
pub mod run_task;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::cli::{Cli, Command, Global};
use crate::config::{self, Config};
use crate::git;
use crate::lock::LockHolder;
use crate::outcome::Outcome;
use crate::plan::render::referenced_env;
use crate::plan::{release, Filters, ReleaseInfo};
use crate::redact::Redactor;
use crate::report::{Output, World};

/// The world a command runs in, gathered once by `main` and passed down.
pub struct App {
    pub global: Global,
    pub env: BTreeMap<String, String>,
    pub now: DateTime<Utc>,
    pub world: World,
    /// Becomes `true` on SIGINT/SIGTERM.
    pub shutdown: watch::Receiver<bool>,
    pub pid: u32,
    /// The name of the machine running shipit.
    pub machine: String,
    /// What the run is doing now, for the message a second Ctrl-C prints.
    pub status: Arc<Mutex<String>>,
    /// Both stdin and stdout are terminals: a person can answer a prompt.
    pub interactive: bool,
    /// Format, colour and JUnit report, chosen once by `main`.
    pub output: Output,
    /// What `SHIPIT_LOG` lines are redacted with; [`App::redactor`]
    /// extends it to the config's secrets.
    pub log_secrets: crate::logging::LogSecrets,
}

impl App {
    /// Records what the run is doing (undoing, unlocking), so a second
    /// Ctrl-C can say what it is waiting for.
    pub fn set_status(&self, what: &str) {
        if let Ok(mut s) = self.status.lock() {
            *s = what.to_string();
        }
    }

    pub fn load_config(&self) -> anyhow::Result<Config> {
        Ok(config::load(&self.global.config)?)
    }

    pub fn filters(&self) -> Filters {
        Filters {
            hosts: self.global.hosts.clone(),
            roles: self.global.roles.clone(),
        }
    }

    /// Who is running shipit: `SHIPIT_USER`, else git's `user.name`, else
    /// the OS user.
    pub fn user(&self) -> String {
        if let Some(u) = self.env.get("SHIPIT_USER").filter(|u| !u.is_empty()) {
            return u.clone();
        }
        if let Ok(name) = git2::Config::open_default().and_then(|c| c.get_string("user.name")) {
            if !name.trim().is_empty() {
                return name.trim().to_string();
            }
        }
        ["USER", "LOGNAME"]
            .iter()
            .find_map(|k| self.env.get(*k).filter(|v| !v.is_empty()).cloned())
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// Resolves the commit and mints the release id for a run.
    pub fn release_info(
        &self,
        config: &Config,
        stage: &str,
        revision: Option<&str>,
    ) -> anyhow::Result<ReleaseInfo> {
        let reference = revision.unwrap_or(&config.branch);
        let resolved = git::resolve(&config.repository, reference)?;
        Ok(ReleaseInfo {
            id: release::release_id(self.now),
            commit: resolved.commit,
            reference: reference.to_string(),
            user: self.user(),
            application: config.application.clone(),
            stage: stage.to_string(),
            build_url: self.env.get("BUILD_URL").cloned(),
            digest: None,
        })
    }

    /// Strategy copy: builds the release archive once and records its
    /// digest in `release`. `None` for strategy git.
    pub fn artifact(
        &self,
        config: &Config,
        release: &mut ReleaseInfo,
    ) -> anyhow::Result<Option<crate::artifact::Artifact>> {
        if config.strategy != crate::config::Strategy::Copy {
            return Ok(None);
        }
        let path = if git::is_remote(&config.repository) {
            git::local_mirror(&config.repository, &self.env)?
        } else {
            std::path::PathBuf::from(&config.repository)
        };
        let a = crate::artifact::build(&path, &release.commit)?;
        release.digest = Some(a.digest.clone());
        Ok(Some(a))
    }

    /// How this run tells a stale lock.
    pub fn staleness(&self) -> crate::lock::Staleness<'_> {
        crate::lock::Staleness {
            machine: &self.machine,
            now: self.now,
            ttl: self.global.lock_ttl,
        }
    }

    pub fn lock_holder(&self, stage: &str, release_id: &str, what: &str) -> LockHolder {
        LockHolder {
            user: self.user(),
            machine: self.machine.clone(),
            pid: self.pid,
            time: self.now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            stage: stage.to_string(),
            message: format!("{what} of `{stage}`"),
            token: format!(
                "{}-{}-{}-{}",
                self.machine,
                self.pid,
                release_id,
                self.now.timestamp_subsec_nanos()
            ),
        }
    }

    /// Masks every environment value that a template or task reads, and
    /// every one whose name marks it a secret (`*_PASSWORD`, `*_SECRET`,
    /// `*_TOKEN`, `*_KEY`).
    pub fn redactor(&self, config: &Config) -> anyhow::Result<Redactor> {
        let mut names = BTreeSet::new();
        for t in &config.tasks {
            names.extend(referenced_env(&t.run));
        }
        for t in &config.templates {
            let text = std::fs::read_to_string(&t.src_path)
                .with_context(|| format!("cannot read template `{}`", t.src))?;
            names.extend(referenced_env(&text));
        }
        let redactor = Redactor::for_env(&names, &self.env);
        self.log_secrets.set(&redactor);
        Ok(redactor)
    }
}

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
        Command::Init { path, force } => init::run(path, *force),
        Command::Plan {
            stage,
            recipe,
            revision,
        } => plan::run(&app, stage, *recipe, revision.as_deref()),
        Command::Deploy {
            stage,
            revision,
            wait_lock,
        } => deploy::run(&app, stage, revision.as_deref(), *wait_lock).await,
        Command::Check { stage } => check::run(&app, stage).await,
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
        Command::Promote { stages, yes } => {
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
                },
            )
            .await
        }
        Command::Approve {
            stage,
            release,
            as_user,
            reject,
            expires,
            sign_key,
            message,
        } => {
            promote::approve(
                &app,
                promote::ApproveArgs {
                    stage,
                    release: release.as_deref(),
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
