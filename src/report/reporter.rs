//! The reporter task: drains events and writes them in the chosen format,
//! and hands each to the JUnit report when there is one.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::format::Format;
use super::human::Human;
use super::output::{Output, Verbosity};
use super::{json, plain};
use crate::engine::Event;

/// How often plain and JSON output say a long step is still running.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// Writes every event in `format` until the channel closes.
pub async fn drive(rx: mpsc::UnboundedReceiver<Event>, format: Format) {
    drive_output(rx, Output::simple(format)).await
}

/// Writes every event as `output` says until the channel closes. Each
/// event's lines are written under one lock of stdout, so lines of
/// different hosts never interleave.
pub async fn drive_output(mut rx: mpsc::UnboundedReceiver<Event>, output: Output) {
    // Quiet human output is quiet plain output: no progress to watch.
    let human = output.format == Format::Human && output.verbosity != Verbosity::Quiet;
    if human {
        let mut h = Human::with_color(output.color);
        while let Some(e) = rx.recv().await {
            output.record(&e);
            h.handle(&e);
        }
        return;
    }
    let json = output.format == Format::Json;
    let mut printer = plain::Printer::default();
    let mut running: HashMap<(String, String), Instant> = HashMap::new();
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.tick().await;
    loop {
        tokio::select! {
            e = rx.recv() => {
                let Some(e) = e else { break };
                output.record(&e);
                match &e {
                    Event::StepStarted { host, step } => {
                        running.insert((host.clone(), step.clone()), Instant::now());
                    }
                    Event::StepFinished { host, step, .. } => {
                        running.remove(&(host.clone(), step.clone()));
                    }
                    _ => {}
                }
                if let (false, Event::Warning(m)) = (json, &e) {
                    eprintln!("{}", plain::warning_line(m));
                }
                let lines = if json {
                    vec![json::line(&json::event(&e))]
                } else if !output.verbosity.shows(&e) {
                    Vec::new()
                } else if output.verbosity == Verbosity::Verbose {
                    verbose_lines(&e, printer.lines(&e))
                } else {
                    printer.lines(&e)
                };
                write_lines(&lines);
            }
            _ = tick.tick() => {
                let mut items: Vec<_> = running.iter().collect();
                items.sort();
                let lines: Vec<String> = items
                    .into_iter()
                    .filter(|(_, since)| since.elapsed() >= HEARTBEAT)
                    .map(|((host, step), since)| {
                        if json {
                            json::line(&json::heartbeat(host, step, since.elapsed()))
                        } else {
                            plain::heartbeat(host, step, since.elapsed())
                        }
                    })
                    .collect();
                write_lines(&lines);
            }
        }
    }
    if !json {
        write_lines(&printer.flush());
    }
}

fn write_lines(lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

/// `-v`: a line when a step starts, and the output of steps that succeeded
/// under their line.
fn verbose_lines(e: &Event, mut lines: Vec<String>) -> Vec<String> {
    match e {
        Event::StepStarted { host, step } => vec![format!("[{host}] {step} started")],
        Event::StepFinished {
            host,
            outcome: crate::engine::StepOutcome::Ok,
            tail,
            ..
        } => {
            lines.extend(tail.iter().map(|l| format!("[{host}]   | {l}")));
            lines
        }
        _ => lines,
    }
}

#[cfg(test)]
mod verbosity_tests {
    use super::*;
    use crate::engine::StepOutcome;
    use std::time::Duration;

    fn finished(ok: bool) -> Event {
        Event::StepFinished {
            host: "web-1".into(),
            step: "build".into(),
            outcome: if ok {
                StepOutcome::Ok
            } else {
                StepOutcome::Failed("exit 1".into())
            },
            duration: Duration::from_millis(10),
            tail: vec!["compiled 3 files".into()],
        }
    }

    #[test]
    fn quiet_hides_successes_and_verbose_shows_their_output() {
        assert!(!Verbosity::Quiet.shows(&finished(true)));
        assert!(Verbosity::Quiet.shows(&finished(false)));
        assert!(Verbosity::Normal.shows(&finished(true)));
        let lines = verbose_lines(&finished(true), vec!["[web-1] build ok 0.01s".into()]);
        assert_eq!(
            lines,
            vec!["[web-1] build ok 0.01s", "[web-1]   | compiled 3 files"]
        );
        let started = Event::StepStarted {
            host: "web-1".into(),
            step: "build".into(),
        };
        assert_eq!(
            verbose_lines(&started, vec![]),
            vec!["[web-1] build started"]
        );
        assert_eq!(Verbosity::from_flags(true, false), Verbosity::Quiet);
        assert_eq!(Verbosity::from_flags(false, true), Verbosity::Verbose);
    }
}
