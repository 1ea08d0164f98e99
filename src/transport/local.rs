//! `transport: local`: commands run through `sh -c` on this machine.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{CommandOutput, Transport, TransportError};

/// Runs scripts on the machine running shipit, in its working directory.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    host: String,
}

impl LocalTransport {
    pub fn new(host: impl Into<String>) -> Self {
        LocalTransport { host: host.into() }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.host
    }

    async fn run(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<CommandOutput, TransportError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a Ctrl-C at the terminal reaches
            // shipit (which decides what to stop) and not the step directly.
            .process_group(0);
        let io_err = |e: std::io::Error| TransportError::Io {
            host: self.host.clone(),
            reason: e.to_string(),
        };
        let mut child = cmd.spawn().map_err(io_err)?;
        if let Some(data) = stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            let data = data.to_vec();
            // Written concurrently with reading output, so a large upload
            // cannot deadlock against a full stdout pipe.
            tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
                let _ = pipe.shutdown().await;
            });
        }
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(CommandOutput {
                status: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Ok(Err(e)) => Err(io_err(e)),
            Err(_) => Err(TransportError::Timeout {
                host: self.host.clone(),
                secs: timeout.as_secs(),
            }),
        }
    }

    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_a_script_and_reports_status_and_output() {
        let t = LocalTransport::new("localhost");
        let out = t
            .run(
                "echo out; echo err >&2; exit 3",
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_str(), "err\n");
    }

    #[tokio::test]
    async fn feeds_stdin() {
        let t = LocalTransport::new("localhost");
        let out = t
            .run("cat", Some(b"hello"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hello");
    }

    #[tokio::test]
    async fn a_hung_command_times_out() {
        let t = LocalTransport::new("localhost");
        let err = t
            .run("sleep 30", None, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
    }
}
