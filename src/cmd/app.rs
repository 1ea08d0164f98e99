//! The world a command runs in, gathered once by `main` and passed down:
//! [`App`], and the reporter its events go to.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::cli::Global;
use crate::config::{self, Config};
use crate::engine::session::Ctx;
use crate::engine::EventSink;
use crate::git;
use crate::lock::LockHolder;
use crate::outcome::Outcome;
use crate::outcome::UsageError;
use crate::plan::render::{env_references, referenced_env, referenced_secrets};
use crate::plan::{release, Filters, ReleaseInfo};
use crate::redact::Redactor;
use crate::report::{Output, World};
use crate::secrets::SecretsFile;

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
    /// Where the commands that print no events (`init`, `plan`) write
    /// their text: stdout, from `main`.
    pub stdout: Arc<Mutex<dyn std::io::Write + Send>>,
}

/// The reporter of a command's events, running until [`Reporting::finish`].
pub struct Reporting {
    pub events: crate::engine::EventSink,
    task: tokio::task::JoinHandle<()>,
}

impl Reporting {
    /// Waits until every event sent so far is written.
    pub async fn finish(self) {
        drop(self.events);
        let _ = self.task.await;
    }
}

impl App {
    /// What the deploy and rollback protocols need of the world.
    pub fn run_ctx(&self) -> crate::engine::fleet::RunCtx<'_> {
        crate::engine::fleet::RunCtx {
            env: &self.env,
            parallel: self.global.parallel,
            shutdown: self.shutdown.clone(),
            staleness: self.staleness(),
            now: self.now,
            status: self.status.clone(),
        }
    }

    /// Starts the reporter chosen for this run; events go to it.
    pub fn reporting(&self) -> Reporting {
        let (events, rx) = crate::engine::EventSink::new();
        let task = tokio::spawn(crate::report::drive_output(rx, self.output.clone()));
        Reporting { events, task }
    }

    /// Writes `text` as it is to the command's output (see `stdout`).
    pub fn write_out(&self, text: &str) -> std::io::Result<()> {
        let mut out = self
            .stdout
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// Runs `work` with a [`Ctx`] whose events go to the reporter chosen
    /// for this run (human, plain or JSON, and the JUnit report), and waits
    /// until the reporter has written them all.
    pub async fn reported<F, Fut>(&self, redactor: Redactor, work: F) -> anyhow::Result<Outcome>
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Outcome>>,
    {
        let (sink, rx) = EventSink::new();
        let reporter = tokio::spawn(crate::report::drive_output(rx, self.output.clone()));
        let ctx = Ctx {
            events: sink,
            redactor: Arc::new(redactor),
            parallel: self.global.parallel,
            shutdown: self.shutdown.clone(),
        };
        let result = work(ctx).await;
        // Every sender is gone with `work`: the reporter ends.
        let _ = reporter.await;
        result
    }

    /// Masks the environment values whose names mark them secrets, for
    /// the commands that run nothing from deploy.yml.
    pub fn base_redactor(&self) -> Redactor {
        Redactor::for_env(&BTreeSet::new(), &self.env)
    }

    /// Records what the run is doing (undoing, unlocking), so a second
    /// Ctrl-C can say what it is waiting for.
    pub fn set_status(&self, what: &str) {
        if let Ok(mut s) = self.status.lock() {
            *s = what.to_string();
        }
    }

    /// The config, with the vars of `-o/--set` over its own; the hosts of
    /// `hosts_from` are not there yet (see [`App::load_config_for`]).
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = config::load(&self.global.config)?;
        config.override_vars(&self.global.set);
        Ok(config)
    }

    /// The config, with the hosts that `stages`' `hosts_from` commands
    /// print added to them.
    pub async fn load_config_for(&self, stages: &[&str]) -> anyhow::Result<Config> {
        let mut config = self.load_config()?;
        self.resolve_inventories(&mut config, stages).await?;
        Ok(config)
    }

    /// Runs the `hosts_from` commands of `stages` and adds the hosts they
    /// print (with the vars of `-o/--set`).
    pub async fn resolve_inventories(
        &self,
        config: &mut Config,
        stages: &[&str],
    ) -> anyhow::Result<()> {
        for stage in stages {
            config::inventory::resolve(config, stage)
                .await
                .map_err(|e| crate::outcome::UsageError(e.to_string()))?;
        }
        config.override_vars(&self.global.set);
        Ok(())
    }

    /// The config for a run on `stage`: its `hosts_from` hosts added
    /// ([`App::load_config_for`]), and the stage's secrets decrypted in
    /// memory when a task, an `env:` value or a template reads
    /// `secrets.NAME` (a missing key or name fails here, before anything
    /// runs). A template that reads secrets is uploaded private: its mode
    /// loses every group and other bit.
    pub async fn load_stage_config(&self, stage: &str) -> anyhow::Result<Config> {
        let mut config = self.load_config_for(&[stage]).await?;
        if config.stage(stage).is_none() {
            // The command names the unknown stage.
            return Ok(config);
        }
        let mut wanted = BTreeSet::new();
        for t in &config.tasks {
            wanted.extend(referenced_secrets(&t.run));
        }
        for s in &config.stages {
            for h in &s.hosts {
                for (_, value) in &h.env {
                    wanted.extend(referenced_secrets(value));
                }
            }
        }
        for t in &mut config.templates {
            let text = std::fs::read_to_string(&t.src_path)
                .with_context(|| format!("cannot read template `{}`", t.src))?;
            let names = referenced_secrets(&text);
            if !names.is_empty() {
                t.mode &= 0o700;
            }
            wanted.extend(names);
        }
        if wanted.is_empty() {
            return Ok(config);
        }
        let file = SecretsFile::for_stage(&config, stage)?;
        let secrets = file.open(&self.env)?;
        if let Some(missing) = wanted.iter().find(|n| !secrets.0.contains_key(*n)) {
            return Err(UsageError(format!(
                "secret `{missing}` is read as `secrets.{missing}` but `{}` has no `{missing}`: `shipit secrets set {stage} {missing}` adds it",
                file.shown
            ))
            .into());
        }
        config.secret_values = config::SecretValues::new(secrets.0);
        Ok(config)
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
            id: release::mint(
                self.now,
                &release::run_suffix(&self.machine, self.pid, self.now),
            )
            .into(),
            commit: resolved.commit.into(),
            reference: reference.to_string(),
            user: self.user(),
            application: config.application.clone(),
            stage: stage.into(),
            build_url: self.env.get("BUILD_URL").cloned(),
            digest: None,
            commit_time: resolved.time,
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
        let open = |url: &str| -> Result<std::path::PathBuf, String> {
            if git::is_remote(url) {
                git::local_mirror(url, &self.env).map_err(|e| e.to_string())
            } else {
                Ok(std::path::PathBuf::from(url))
            }
        };
        let submodules = crate::artifact::Submodules {
            base: &config.repository,
            open: &open,
        };
        let a = crate::artifact::build_with(
            &path,
            &release.commit,
            config.repo_tree.as_ref().map(|t| t.as_str()),
            config.submodules.then_some(&submodules),
        )?;
        release.digest = Some(a.digest.clone());
        release.commit_time = release.commit_time.or(Some(a.commit_time));
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
            process: crate::process::ProcessIdentity::of(self.pid).map(Box::new),
        }
    }

    /// Masks every environment value that a template or task reads, and
    /// every one whose name marks it a secret (`*_PASSWORD`, `*_SECRET`,
    /// `*_TOKEN`, `*_KEY`), and every secret of the stage decrypted by
    /// [`App::load_stage_config`].
    pub fn redactor(&self, config: &Config) -> anyhow::Result<Redactor> {
        let mut names = BTreeSet::new();
        for t in &config.tasks {
            names.extend(referenced_env(&t.run));
        }
        names.extend(env_references(config));
        for t in &config.templates {
            let text = std::fs::read_to_string(&t.src_path)
                .with_context(|| format!("cannot read template `{}`", t.src))?;
            names.extend(referenced_env(&text));
        }
        let redactor =
            Redactor::for_env(&names, &self.env).and_values(config.secret_values.map().values());
        self.log_secrets.set(&redactor);
        Ok(redactor)
    }
}
