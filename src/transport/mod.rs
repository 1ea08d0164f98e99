//! How commands reach a host: over ssh (one multiplexed connection per host)
//! or locally through `sh -c` for `transport: local` hosts.

pub mod leftovers;
pub mod local;
pub mod ssh;

use std::time::Duration;

use async_trait::async_trait;

/// What a command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit status; `None` when the command was ended by a signal.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Failures of the transport itself, as opposed to a command that ran and
/// exited non-zero (that is a [`CommandOutput`] with a non-zero status).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The host could not be reached or refused us (DNS, TCP, auth, host key).
    #[error("cannot connect to `{host}`: {reason}")]
    Connect { host: String, reason: String },
    /// The command did not finish within its time limit; it was killed.
    #[error("`{host}` did not finish within {secs}s")]
    Timeout { host: String, secs: u64 },
    /// The connection broke while the command ran, or the command could not
    /// be started.
    #[error("lost `{host}`: {reason}")]
    Io { host: String, reason: String },
}

/// Logs (`SHIPIT_LOG=debug`) how a command on `host` ended and how long it
/// took; the command line was logged when it started.
pub(crate) fn log_finished(
    host: &str,
    result: &Result<CommandOutput, TransportError>,
    elapsed: Duration,
) {
    let ms = elapsed.as_millis();
    match result {
        Ok(out) => tracing::debug!(
            host = %host,
            status = ?out.status,
            stdout_bytes = out.stdout.len(),
            stderr_bytes = out.stderr.len(),
            ms,
            "command finished"
        ),
        Err(e) => tracing::debug!(host = %host, error = %e, ms, "command failed"),
    }
}

/// Runs shell scripts on one host.
///
/// Implementations run `script` with `sh -c` in the login user's home
/// directory, feed `stdin` (or nothing) to it, and kill it when `timeout`
/// passes. They never print.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The host's name as configured, for messages.
    fn host(&self) -> &str;

    async fn run(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<CommandOutput, TransportError>;

    /// Like [`Transport::run`], and also sends stdout to `progress` as it
    /// arrives, so a caller can follow a long script step by step. The
    /// default sends it all at the end.
    async fn run_streaming(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        progress: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    ) -> Result<CommandOutput, TransportError> {
        let out = self.run(script, stdin, timeout).await?;
        let _ = progress.send(out.stdout.clone());
        Ok(out)
    }

    /// Closes the connection (ends the ssh master); a no-op for local.
    async fn close(&self) -> Result<(), TransportError>;
}
