//! Connections and scripts for `rollback`'s own protocol, which does not
//! run through the executor yet. Every other command that touches hosts
//! runs its plans through [`crate::engine::session`]; this module goes
//! away once rollback does too.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::{Host, SshSettings};
use crate::engine::connect::{close_all, connect_all};
use crate::plan::chain::{self, ChainStep, Frame, FrameParser};
use crate::transport::{CommandOutput, Transport};

pub use crate::plan::host_step::SCRIPT_TIMEOUT;

/// What one host's script did: its output, or why it did not run to the
/// end (not connected, timed out, connection lost), as a message.
pub type HostRun = Result<CommandOutput, String>;

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
