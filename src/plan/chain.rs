//! Several steps of one host sent as one remote script, with each step's
//! result framed on stdout, so a phase costs one round trip while the graph
//! and the output keep their steps.
//!
//! The script is fed to `sh -s` on stdin (no argument-length limit, and
//! template contents can travel inside it). Each step runs as its own
//! `sh -c` with stdin from a file or `/dev/null`, its stdout and stderr
//! captured to files, under `timeout` when the host has it (the script is
//! `src/remote/chain.sh`). Frames:
//!
//! ```text
//! \x1eS <id>\n                                  step <id> started
//! \x1eE <id> <status> <out len> <err len>\n      then exactly that many bytes
//!                                               of stdout, then of stderr
//! ```
//!
//! After a failed step the script stops (exit 0: the frames tell).

use std::time::Duration;

use crate::remote;

/// The status `timeout` exits with when the limit was hit.
pub const TIMEOUT_STATUS: i32 = 124;

/// The status the script exits with when it stopped before a step because
/// the run was interrupted: the steps not reached were not run (they did
/// not fail).
pub const STOPPED_STATUS: i32 = 99;

/// The script to run: `sh -s`, with [`script`]'s text on stdin.
pub const RUNNER: &str = "exec sh -s";

/// One step of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStep<'a> {
    /// Echoed back in the frames (the plan's node index).
    pub id: usize,
    pub script: &'a str,
    /// Fed to the step on stdin (a rendered template).
    pub stdin: Option<&'a [u8]>,
    pub timeout: Duration,
}

fn limit(d: Duration) -> String {
    // `timeout` takes fractional seconds; at least one second.
    format!("{}", d.as_secs().max(1))
}

/// The chain's script (`chain.sh`). When the file `stop` exists, no further
/// step starts (the run was interrupted; the step running then finishes).
pub fn script(stop: Option<&str>, steps: &[ChainStep<'_>]) -> String {
    let args = steps.iter().flat_map(|st| {
        let (has_input, input) = match st.stdin {
            Some(data) => ("yes", String::from_utf8_lossy(data).into_owned()),
            None => ("no", String::new()),
        };
        [
            st.id.to_string(),
            limit(st.timeout),
            has_input.to_string(),
            input,
            st.script.to_string(),
        ]
    });
    remote::CHAIN
        .fill()
        .set_path("stop", stop.unwrap_or_default())
        .set("stopped_status", &STOPPED_STATUS.to_string())
        .args(args)
        .done()
}

/// What the frames say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Started(usize),
    Ended {
        id: usize,
        status: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
}

/// Incremental frame reader: feed it stdout as it arrives.
#[derive(Debug, Default)]
pub struct FrameParser {
    buf: Vec<u8>,
    /// Bytes of the stream that were not frames (should be none).
    pub stray: Vec<u8>,
}

impl FrameParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Frame> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            // Anything before a frame marker is stray output.
            match self.buf.iter().position(|&b| b == 0x1e) {
                None => {
                    self.stray.append(&mut self.buf);
                    return out;
                }
                Some(0) => {}
                Some(i) => {
                    self.stray.extend(self.buf.drain(..i));
                }
            }
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                return out;
            };
            let header = String::from_utf8_lossy(&self.buf[1..nl]).into_owned();
            let parts: Vec<&str> = header.split_whitespace().collect();
            match parts.as_slice() {
                ["S", id] => {
                    let id = id.parse().unwrap_or(usize::MAX);
                    self.buf.drain(..=nl);
                    out.push(Frame::Started(id));
                }
                ["E", id, status, olen, elen] => {
                    let (Ok(id), Ok(status), Ok(olen), Ok(elen)) = (
                        id.parse::<usize>(),
                        status.parse::<i32>(),
                        olen.parse::<usize>(),
                        elen.parse::<usize>(),
                    ) else {
                        self.stray.extend(self.buf.drain(..=nl));
                        continue;
                    };
                    if self.buf.len() < nl + 1 + olen + elen {
                        return out;
                    }
                    let body: Vec<u8> = self
                        .buf
                        .drain(..nl + 1 + olen + elen)
                        .skip(nl + 1)
                        .collect();
                    out.push(Frame::Ended {
                        id,
                        status,
                        stdout: body[..olen].to_vec(),
                        stderr: body[olen..].to_vec(),
                    });
                }
                _ => {
                    self.stray.extend(self.buf.drain(..=nl));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{local::LocalTransport, Transport};

    async fn run(steps: &[ChainStep<'_>]) -> Vec<Frame> {
        let t = LocalTransport::new("localhost");
        let s = script(None, steps);
        let out = t
            .run(RUNNER, Some(s.as_bytes()), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(out.status, Some(0), "{}", out.stderr_str());
        let mut p = FrameParser::default();
        // Byte by byte: frames must survive any chunking.
        let mut frames = Vec::new();
        for b in &out.stdout {
            frames.extend(p.push(std::slice::from_ref(b)));
        }
        assert!(
            p.stray.is_empty(),
            "stray: {:?}",
            String::from_utf8_lossy(&p.stray)
        );
        frames
    }

    #[tokio::test]
    async fn steps_report_status_and_output_and_stop_at_a_failure() {
        let d = Duration::from_secs(10);
        let frames = run(&[
            ChainStep {
                id: 3,
                script: "echo one; echo err >&2",
                stdin: None,
                timeout: d,
            },
            ChainStep {
                id: 4,
                script: "printf 'no newline'; exit 7",
                stdin: None,
                timeout: d,
            },
            ChainStep {
                id: 5,
                script: "echo never",
                stdin: None,
                timeout: d,
            },
        ])
        .await;
        assert_eq!(
            frames,
            vec![
                Frame::Started(3),
                Frame::Ended {
                    id: 3,
                    status: 0,
                    stdout: b"one\n".to_vec(),
                    stderr: b"err\n".to_vec()
                },
                Frame::Started(4),
                Frame::Ended {
                    id: 4,
                    status: 7,
                    stdout: b"no newline".to_vec(),
                    stderr: vec![]
                },
            ]
        );
    }

    #[tokio::test]
    async fn stdin_reaches_the_step_and_steps_cannot_eat_the_script() {
        let d = Duration::from_secs(10);
        let data = b"it's $(not run) `x`\n\x1eS 9\n".to_vec();
        let frames = run(&[
            ChainStep {
                id: 1,
                script: "cat",
                stdin: Some(&data),
                timeout: d,
            },
            ChainStep {
                id: 2,
                script: "cat; echo after",
                stdin: None,
                timeout: d,
            },
        ])
        .await;
        assert_eq!(frames.len(), 4);
        assert_eq!(
            frames[1],
            Frame::Ended {
                id: 1,
                status: 0,
                stdout: data.clone(),
                stderr: vec![]
            }
        );
        assert_eq!(
            frames[3],
            Frame::Ended {
                id: 2,
                status: 0,
                stdout: b"after\n".to_vec(),
                stderr: vec![]
            }
        );
    }

    #[tokio::test]
    async fn a_step_over_its_limit_is_stopped() {
        let frames = run(&[ChainStep {
            id: 1,
            script: "sleep 30",
            stdin: None,
            timeout: Duration::from_secs(1),
        }])
        .await;
        assert!(
            matches!(
                frames[1],
                Frame::Ended {
                    status: TIMEOUT_STATUS,
                    ..
                }
            ),
            "{frames:?}"
        );
    }
}
