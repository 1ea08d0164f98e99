//! `transport: local`: commands run through `sh -c` on this machine.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;

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
        self.run_inner(script, stdin, timeout, None).await
    }

    async fn run_streaming(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        progress: mpsc::UnboundedSender<Vec<u8>>,
    ) -> Result<CommandOutput, TransportError> {
        self.run_inner(script, stdin, timeout, Some(progress)).await
    }

    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

impl LocalTransport {
    async fn run_inner(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        progress: Option<mpsc::UnboundedSender<Vec<u8>>>,
    ) -> Result<CommandOutput, TransportError> {
        tracing::debug!(
            host = %self.host,
            timeout_s = timeout.as_secs(),
            "local: sh -c {}\nstdin: {}",
            crate::shell::quote(script),
            crate::logging::stdin_text(stdin)
        );
        let started = std::time::Instant::now();
        let result = self.run_command(script, stdin, timeout, progress).await;
        super::log_finished(&self.host, &result, started.elapsed());
        result
    }

    async fn run_command(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        progress: Option<mpsc::UnboundedSender<Vec<u8>>>,
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
        let pid = child.id();
        let mut out_pipe = child.stdout.take().expect("stdout was piped");
        let mut err_pipe = child.stderr.take().expect("stderr was piped");
        let work = async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let read_out = async {
                let mut buf = [0u8; 8192];
                loop {
                    match out_pipe.read(&mut buf).await {
                        Ok(0) => return Ok(()),
                        Ok(n) => {
                            stdout.extend_from_slice(&buf[..n]);
                            if let Some(p) = &progress {
                                let _ = p.send(buf[..n].to_vec());
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            let read_err = err_pipe.read_to_end(&mut stderr);
            let (a, b) = tokio::join!(read_out, read_err);
            a?;
            b?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>(CommandOutput {
                status: status.code(),
                stdout,
                stderr,
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(io_err(e)),
            Err(_) => {
                // The script runs in its own process group: end all of it,
                // not only the shell, so nothing it started lingers.
                if let Some(pid) = pid {
                    let _ = Command::new("kill")
                        .args(["-s", "KILL", "--"])
                        .arg(format!("-{pid}"))
                        .status()
                        .await;
                }
                Err(TransportError::Timeout {
                    host: self.host.clone(),
                    secs: timeout.as_secs(),
                })
            }
        }
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
