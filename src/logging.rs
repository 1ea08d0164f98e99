//! `SHIPIT_LOG=debug` (or `trace`, `info`, `warn`, `error`): diagnostic
//! logs on stderr through `tracing`, for finding out why a run did what it
//! did: each command as it was sent to a host (quoted as the shell gets it),
//! how long it took and how it ended, connections, the steps, and the
//! gate's decisions. Off unless `SHIPIT_LOG` is set, so normal output and
//! `--format json` on stdout are unchanged.
//!
//! Secrets never reach the log: every line passes, as it is written,
//! through the run's [`Redactor`] held by a [`LogSecrets`]. `main` fills it
//! with the values of secret-named environment variables at start, and a
//! command extends it with every value its config reads
//! ([`crate::cmd::App::redactor`]) before it runs anything.

use std::io::Write;
use std::sync::{Arc, RwLock};

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

use crate::redact::Redactor;

/// The redactor every log line goes through; shared, so a command can
/// extend it once it knows its config.
#[derive(Debug, Clone, Default)]
pub struct LogSecrets(Arc<RwLock<Redactor>>);

impl LogSecrets {
    pub fn new(redactor: Redactor) -> LogSecrets {
        LogSecrets(Arc::new(RwLock::new(redactor.with_quoted_forms())))
    }

    /// From now on, log lines are redacted with `redactor` (which should
    /// include what was masked before: [`Redactor::for_env`] does).
    pub fn set(&self, redactor: &Redactor) {
        let mut r = self.0.write().unwrap_or_else(|e| e.into_inner());
        *r = redactor.with_quoted_forms();
    }

    pub fn apply(&self, text: &str) -> String {
        let r = self.0.read().unwrap_or_else(|e| e.into_inner());
        r.apply(text).into_owned()
    }
}

/// The level `SHIPIT_LOG` asks for: `None` (no logs) when unset, empty or
/// `off`.
pub fn level(spec: Option<&str>) -> Result<Option<Level>, String> {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    Ok(Some(match spec.to_ascii_lowercase().as_str() {
        "off" => return Ok(None),
        "error" => Level::ERROR,
        "warn" => Level::WARN,
        "info" => Level::INFO,
        "debug" => Level::DEBUG,
        "trace" => Level::TRACE,
        _ => {
            return Err(format!(
                "invalid SHIPIT_LOG `{spec}`, expected off, error, warn, info, debug or trace"
            ))
        }
    }))
}

/// Sends shipit's logs at `level` and above to stderr, each line redacted
/// by `secrets`. Call once, before anything logs.
pub fn init(level: Level, secrets: LogSecrets) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(RedactedStderr(secrets))
        .try_init()
        .map_err(|e| format!("cannot start the SHIPIT_LOG logger: {e}"))
}

/// A [`MakeWriter`] whose writers hold a whole log line back until they
/// are dropped, then write it redacted to stderr in one piece (lines from
/// hosts worked in parallel never interleave).
struct RedactedStderr(LogSecrets);

impl<'a> MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine {
            secrets: &self.0,
            buf: Vec::new(),
        }
    }
}

struct RedactedLine<'a> {
    secrets: &'a LogSecrets,
    buf: Vec<u8>,
}

impl Write for RedactedLine<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = self.secrets.apply(&String::from_utf8_lossy(&self.buf));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// How a command's stdin shows in the log: the text itself when it is a
/// script (UTF-8), else only its size (an archive).
pub fn stdin_text(stdin: Option<&[u8]>) -> String {
    match stdin {
        None => "none".to_string(),
        Some(data) => match std::str::from_utf8(data) {
            Ok(text) => format!("{} bytes of text:\n{text}", data.len()),
            Err(_) => format!("{} bytes of binary data", data.len()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn shipit_log_levels() {
        let cases = [
            (None, Ok(None)),
            (Some(""), Ok(None)),
            (Some("off"), Ok(None)),
            (Some("debug"), Ok(Some(Level::DEBUG))),
            (Some("TRACE"), Ok(Some(Level::TRACE))),
            (Some(" info "), Ok(Some(Level::INFO))),
            (
                Some("verbose"),
                Err(
                    "invalid SHIPIT_LOG `verbose`, expected off, error, warn, info, debug or trace"
                        .to_string(),
                ),
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(level(spec), want, "{spec:?}");
        }
    }

    #[test]
    fn lines_are_redacted_raw_and_as_quoted_for_the_shell() {
        let env: BTreeMap<String, String> =
            [("DB_PASSWORD".to_string(), "it's!s3cret".to_string())].into();
        let secrets = LogSecrets::default();
        secrets.set(&Redactor::for_env([], &env));
        let quoted = crate::shell::quote("it's!s3cret");
        assert_eq!(
            secrets.apply(&format!("raw it's!s3cret, quoted {quoted}")),
            "raw [redacted], quoted '[redacted]'"
        );
    }
}
