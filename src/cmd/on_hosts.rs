//! One script on each host of a stage at once, for the commands that work
//! on a stage outside a deploy (`check`, `releases`, `history`, `lock`,
//! `unlock`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch, Semaphore};

use super::App;
use crate::config::{Config, Host, SshSettings};
use crate::engine::connect::{close_all, connect_all};
use crate::outcome::Outcome;
use crate::plan::chain::{self, ChainStep, Frame, FrameParser};
use crate::plan::commands::HostPaths;
use crate::plan::planner;
use crate::transport::{CommandOutput, Transport};

/// How long one of these scripts may run on a host. They only read a few
/// files or make a dir: a host that takes longer is not answering.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// What one host's script did: its output, or why it did not run to the
/// end (not connected, timed out, connection lost), as a message.
pub type HostRun = Result<CommandOutput, String>;

/// The selected hosts of a stage after one round of [`on_stage`]: index
/// `i` is the same host in every field.
pub struct StageRound<'c> {
    pub names: Vec<&'c str>,
    pub paths: Vec<HostPaths>,
    /// Still open, for a second round; the caller closes them.
    pub conns: Connections,
    /// What each host's script did; `None` when interrupted first.
    pub results: Option<Vec<HostRun>>,
}

/// Selects the hosts of `stage`, prints the heading
/// `{command} {stage}: N hosts: a, b{note}`, connects and runs
/// `script(paths[i])` on every host at once, giving up when the shutdown
/// signal comes.
pub async fn on_stage<'c>(
    app: &App,
    config: &'c Config,
    command: &str,
    stage: &str,
    note: &str,
    script: impl Fn(&HostPaths) -> String,
) -> anyhow::Result<StageRound<'c>> {
    let (_, hosts) = planner::select_hosts(config, stage, &app.filters())?;
    let paths: Vec<HostPaths> = hosts.iter().map(|h| HostPaths::new(&h.deploy_to)).collect();
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    println!(
        "{command} {stage}: {} host{}: {}{note}",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    let conns = Connections::open(&hosts, &config.ssh).await?;
    let scripts: Vec<Option<String>> = paths.iter().map(|p| Some(script(p))).collect();
    let results = conns
        .run_each(
            &scripts,
            app.global.parallel,
            SCRIPT_TIMEOUT,
            Some(&app.shutdown),
        )
        .await
        .map(|r| {
            r.into_iter()
                .map(|r| r.expect("every host has a script"))
                .collect()
        });
    Ok(StageRound {
        names,
        paths,
        conns,
        results,
    })
}

/// What [`read_stage`] read: each host's name, paths and script result;
/// index `i` is the same host in each.
pub type StageReads<'c> = (Vec<&'c str>, Vec<HostPaths>, Vec<HostRun>);

/// [`on_stage`] for a command that only reads: closes the connections
/// at once. `None` when interrupted, after printing
/// `{command} {stage}: interrupted`.
pub async fn read_stage<'c>(
    app: &App,
    config: &'c Config,
    command: &str,
    stage: &str,
    script: impl Fn(&HostPaths) -> String,
) -> anyhow::Result<Option<StageReads<'c>>> {
    let round = on_stage(app, config, command, stage, "", script).await?;
    round.conns.close().await;
    let Some(results) = round.results else {
        println!("\n{command} {stage}: interrupted");
        return Ok(None);
    };
    Ok(Some((round.names, round.paths, results)))
}

/// `parse` of what `script` printed on a host, or why there is none, as a
/// message: the host's error, `the {script} script exited 1: ...`, or
/// `the {script} script's output is incomplete`.
pub fn parse_output<T>(
    run: &HostRun,
    script: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, String> {
    match run {
        Err(e) => Err(e.clone()),
        Ok(o) if !o.success() => Err(format!("the {script} script {}", stderr_tail(o))),
        Ok(o) => parse(&o.stdout_str())
            .ok_or_else(|| format!("the {script} script's output is incomplete")),
    }
}

/// Prints the report `out` of a command that reads hosts, ending with
/// `{command} {stage}: FAILED — could not read a, b` when some could not
/// be read: then it failed.
pub fn print_report(mut out: Vec<String>, command: &str, stage: &str, unread: &[&str]) -> Outcome {
    let outcome = if unread.is_empty() {
        Outcome::Success
    } else {
        out.push(format!(
            "{command} {stage}: FAILED — could not read {}",
            unread.join(", ")
        ));
        Outcome::Failed
    };
    println!("{}", out.join("\n"));
    outcome
}

/// Open connections to the selected hosts; index `i` is `hosts[i]`.
pub struct Connections {
    transports: Vec<Option<Arc<dyn Transport>>>,
    errors: Vec<Option<String>>,
    /// Holds the ssh control sockets; removed on drop.
    _control: tempfile::TempDir,
}

impl Connections {
    /// Connects to every host (a bounded number at once). A host that
    /// cannot be reached is kept, with why, for its script to fail.
    pub async fn open(hosts: &[&Host], ssh: &SshSettings) -> anyhow::Result<Connections> {
        let control = tempfile::Builder::new()
            .prefix("shipit-")
            .tempdir_in(std::env::temp_dir())
            .context("cannot create a directory for ssh control sockets")?;
        let mut transports = Vec::new();
        let mut errors = Vec::new();
        for c in connect_all(hosts, ssh, control.path()).await {
            match c {
                Ok(t) => {
                    transports.push(Some(t));
                    errors.push(None);
                }
                Err(e) => {
                    transports.push(None);
                    errors.push(Some(e.to_string()));
                }
            }
        }
        Ok(Connections {
            transports,
            errors,
            _control: control,
        })
    }

    /// Runs `scripts[i]` on host `i` (none where it is `None`), at most
    /// `parallel` at once, each within `timeout`. With `shutdown`, gives up
    /// as soon as it turns `true` and returns `None` (the running scripts
    /// are ended); without, always runs to the end.
    pub async fn run_each(
        &self,
        scripts: &[Option<String>],
        parallel: usize,
        timeout: Duration,
        shutdown: Option<&watch::Receiver<bool>>,
    ) -> Option<Vec<Option<HostRun>>> {
        let gate = Arc::new(Semaphore::new(parallel.max(1)));
        let jobs = scripts.iter().enumerate().map(|(i, script)| {
            let transport = self.transports[i].clone();
            let error = self.errors[i].clone();
            let gate = gate.clone();
            async move {
                let script = script.as_ref()?;
                let Some(t) = transport else {
                    return Some(Err(error.unwrap_or_else(|| "not connected".into())));
                };
                let _permit = gate.acquire_owned().await;
                Some(
                    t.run(script, None, timeout)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
        });
        let all = futures::future::join_all(jobs);
        match shutdown {
            None => Some(all.await),
            Some(rx) => {
                let mut rx = rx.clone();
                tokio::select! {
                    biased;
                    _ = interrupted(&mut rx) => None,
                    r = all => Some(r),
                }
            }
        }
    }

    /// Runs `steps` on host `i` as one chained script (see
    /// [`crate::plan::chain`]): one round trip. Returns the frames of the
    /// steps that got that far, and why the chain did not run to its end
    /// (not connected, timed out, connection lost), if it did not. Always
    /// runs to the end (or its time limit, the steps' limits summed).
    pub async fn run_chain(&self, i: usize, steps: &[ChainStep<'_>]) -> ChainRun {
        let Some(t) = self.transports[i].clone() else {
            return ChainRun {
                frames: Vec::new(),
                error: None,
                failed: Some(
                    self.errors[i]
                        .clone()
                        .unwrap_or_else(|| "not connected".into()),
                ),
            };
        };
        let script = chain::script(None, steps);
        let budget = steps.iter().map(|s| s.timeout).sum::<Duration>() + CHAIN_SLACK;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let result = t
            .run_streaming(chain::RUNNER, Some(script.as_bytes()), budget, tx)
            .await;
        // What arrived before a timeout or a lost connection still tells
        // which steps ended.
        let mut parser = FrameParser::default();
        let mut frames = Vec::new();
        while let Some(chunk) = rx.recv().await {
            frames.extend(parser.push(&chunk));
        }
        let (error, failed) = match result {
            Err(e) => (Some(e.to_string()), None),
            Ok(o) if !o.success() => (None, Some(format!("the script {}", stderr_tail(&o)))),
            Ok(_) => (None, None),
        };
        ChainRun {
            frames,
            error,
            failed,
        }
    }

    /// Ends every connection.
    pub async fn close(&self) {
        close_all(&self.transports).await;
    }
}

/// What [`Connections::run_chain`] saw.
#[derive(Debug, Clone, Default)]
pub struct ChainRun {
    pub frames: Vec<Frame>,
    /// Why the chain broke off part way (timed out, connection lost): a
    /// step may have been left half done.
    pub error: Option<String>,
    /// Why the chain failed without breaking off (not connected, the
    /// script could not start): the frames say which steps ran.
    pub failed: Option<String>,
}

/// Time a chain may take beyond its steps' limits (connecting, framing).
const CHAIN_SLACK: Duration = Duration::from_secs(30);

/// Resolves once `rx` is `true`; never when its sender is gone first.
async fn interrupted(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The last few lines of a failed script's stderr, for a message.
pub fn stderr_tail(out: &CommandOutput) -> String {
    let err = out.stderr_str();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    match out.status {
        Some(s) if tail.is_empty() => format!("exited {s}"),
        Some(s) => format!("exited {s}: {tail}"),
        None => "ended by a signal".to_string(),
    }
}
