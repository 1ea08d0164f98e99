//! Everything about a run's output decided up front: the format, colour,
//! and the JUnit report file. Chosen once in `main` by [`Output::choose`], a
//! pure function of the flags and the [`World`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::format::{self, Format, Requested, World};
use super::junit::Junit;
use crate::engine::Event;

/// The subcommands whose whole output goes through the reporters (every
/// one that touches hosts), so `--format json` keeps stdout valid JSON
/// lines and `--junit` sees every step. The others (`init`, `plan`) refuse
/// those flags (exit 2) rather than mix free text into a JSON stream.
pub const REPORTED_COMMANDS: [&str; 11] = [
    "deploy", "promote", "rollback", "exec", "run", "check", "releases", "history", "lock",
    "unlock", "approve",
];

/// How much a run says (`-q`, `-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Failures, notices and the summary only.
    Quiet,
    #[default]
    Normal,
    /// Also each step's start, and the output of steps that succeeded.
    Verbose,
}

impl Verbosity {
    pub fn from_flags(quiet: bool, verbose: bool) -> Verbosity {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        }
    }

    /// Whether plain output shows `e` at all.
    pub fn shows(self, e: &Event) -> bool {
        use crate::engine::StepOutcome;
        match (self, e) {
            (Verbosity::Quiet, Event::StepFinished { outcome, .. }) => *outcome != StepOutcome::Ok,
            (Verbosity::Quiet, Event::BatchStarted { .. }) => false,
            (
                Verbosity::Quiet,
                Event::Fact {
                    fact:
                        crate::engine::event::Fact::Check {
                            status: crate::engine::event::CheckStatus::Ok,
                            ..
                        },
                    ..
                },
            ) => false,
            _ => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    pub format: Format,
    pub verbosity: Verbosity,
    /// ANSI styling allowed (human output without `NO_COLOR`).
    pub color: bool,
    pub junit: Option<JunitFile>,
}

impl Output {
    /// `command` is the subcommand's name (for the report's names until
    /// the run says more).
    pub fn choose(
        requested: Requested,
        world: World,
        junit: Option<PathBuf>,
        command: &str,
    ) -> Output {
        let format = format::choose(requested, world);
        Output {
            format,
            verbosity: Verbosity::Normal,
            color: format::color(format, world),
            junit: junit.map(|path| JunitFile {
                path,
                report: Arc::new(Mutex::new(Junit::new(command))),
            }),
        }
    }

    /// Output in `format` alone: no JUnit report, colour on for human.
    pub fn simple(format: Format) -> Output {
        Output {
            format,
            verbosity: Verbosity::Normal,
            color: format == Format::Human,
            junit: None,
        }
    }

    /// Passes an event to the JUnit report, if there is one.
    pub fn record(&self, e: &Event) {
        if let Some(j) = &self.junit {
            if let Ok(mut r) = j.report.lock() {
                r.record(e);
            }
        }
    }
}

/// Why `--format json` or `--junit` cannot be used with `command`, if so.
pub fn unsupported(command: &str, requested: Requested, junit: bool) -> Option<String> {
    if REPORTED_COMMANDS.contains(&command) {
        return None;
    }
    let flag = match (requested, junit) {
        (Requested::Json, _) => "--format json",
        (_, true) => "--junit",
        _ => return None,
    };
    Some(format!(
        "`{flag}` is not available for `shipit {command}`; it works with {}",
        REPORTED_COMMANDS
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The `--junit FILE` report: collected from events, written at the start
/// (a placeholder that says shipit has not finished, so a killed run still
/// leaves a report that fails the build) and at the end.
#[derive(Debug, Clone)]
pub struct JunitFile {
    pub path: PathBuf,
    report: Arc<Mutex<Junit>>,
}

impl JunitFile {
    /// Writes the placeholder report; creates the file's directory.
    pub fn start(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let placeholder = Junit::default().render(Some(
            "shipit has not finished (still running, or it was killed)",
        ));
        write_atomically(&self.path, placeholder.as_bytes())
    }

    /// Writes the final report. `error` is why the command ended early.
    pub fn finish(&self, error: Option<&str>) -> std::io::Result<()> {
        let xml = match self.report.lock() {
            Ok(r) => r.render(error),
            Err(p) => p.into_inner().render(error),
        };
        write_atomically(&self.path, xml.as_bytes())
    }
}

/// Temp file in the same directory, then rename: a reader never sees half
/// a report.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_is_pure_and_complete() {
        let tty = World {
            stdout_is_terminal: true,
            ..World::default()
        };
        let o = Output::choose(Requested::Auto, tty, None, "deploy");
        assert_eq!(
            (o.format, o.color, o.junit.is_none()),
            (Format::Human, true, true)
        );
        let no_color = World {
            no_color: true,
            ..tty
        };
        let o = Output::choose(Requested::Auto, no_color, None, "deploy");
        assert_eq!((o.format, o.color), (Format::Human, false));
        let o = Output::choose(Requested::Json, tty, Some(PathBuf::from("r.xml")), "deploy");
        assert_eq!((o.format, o.color), (Format::Json, false));
        assert_eq!(o.junit.unwrap().path, PathBuf::from("r.xml"));
        let ci = World::default();
        assert_eq!(
            Output::choose(Requested::Auto, ci, None, "exec").format,
            Format::Plain
        );
    }

    #[test]
    fn json_and_junit_only_where_reported() {
        assert_eq!(unsupported("deploy", Requested::Json, true), None);
        assert_eq!(unsupported("exec", Requested::Json, false), None);
        for c in [
            "check", "releases", "history", "lock", "unlock", "approve", "rollback",
        ] {
            assert_eq!(unsupported(c, Requested::Json, true), None, "{c}");
        }
        assert_eq!(unsupported("plan", Requested::Plain, false), None);
        assert_eq!(unsupported("plan", Requested::Auto, false), None);
        let m = unsupported("plan", Requested::Json, false).unwrap();
        assert!(
            m.starts_with("`--format json` is not available for `shipit plan`"),
            "{m}"
        );
        let m = unsupported("init", Requested::Plain, true).unwrap();
        assert!(m.contains("`--junit`"), "{m}");
    }

    #[test]
    fn junit_file_placeholder_then_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports/shipit.xml");
        let o = Output::choose(
            Requested::Plain,
            World::default(),
            Some(path.clone()),
            "exec",
        );
        let j = o.junit.clone().unwrap();
        j.start().unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(first.contains("shipit has not finished"), "{first}");
        o.record(&Event::StepStarted {
            host: "h".into(),
            step: "exec".into(),
        });
        j.finish(Some("boom")).unwrap();
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.contains("<error message=\"boom\""), "{last}");
        assert!(!last.contains("has not finished"), "{last}");
    }
}
