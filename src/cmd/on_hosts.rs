//! One script on each host of a stage at once, for the commands that work
//! on a stage outside a deploy (`check`, `releases`, `lock`, `unlock`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{watch, Semaphore};

use crate::config::{Host, SshSettings};
use crate::exec::connect::{close_all, connect_all};
use crate::transport::{CommandOutput, Transport};

/// How long one of these scripts may run on a host. They only read a few
/// files or make a dir: a host that takes longer is not answering.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

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

    /// Ends every connection.
    pub async fn close(&self) {
        close_all(&self.transports).await;
    }
}

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
