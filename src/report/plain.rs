//! Plain lines, one per step per host: `[web-03] publish ok 0.21s`.

use std::collections::HashMap;
use std::time::Duration;

use crate::engine::{Event, StepOutcome, Summary};

pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// The lines an event prints in plain mode (none for step starts).
pub fn lines(e: &Event) -> Vec<String> {
    match e {
        Event::RunStarted {
            recipe,
            stage,
            release,
            commit,
            reference,
            hosts,
        } if release.is_empty() => vec![format!(
            "{recipe} {stage}: {} host{}: {}",
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            hosts.join(", ")
        )],
        Event::RunStarted {
            recipe,
            stage,
            release,
            commit,
            reference,
            hosts,
        } => vec![format!(
            "{recipe} {stage}: release {release}, commit {} ({reference}), {} host{}: {}",
            short(commit),
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            hosts.join(", ")
        )],
        Event::StepStarted { .. } => Vec::new(),
        Event::StepFinished {
            host,
            step,
            outcome,
            duration,
            tail,
        } => match outcome {
            StepOutcome::Ok => vec![format!("[{host}] {step} ok {}", secs(*duration))],
            StepOutcome::Failed(why) => {
                let mut v = vec![format!("[{host}] {step} FAILED {}: {why}", secs(*duration))];
                v.extend(tail.iter().map(|l| format!("[{host}]   | {l}")));
                v
            }
        },
        Event::BatchStarted { index, of, hosts } => {
            vec![format!("batch {index}/{of}: {}", hosts.join(", "))]
        }
        Event::Notice(text) => vec![format!("shipit: {text}")],
        Event::Warning(text) => vec![format!("shipit: warning: {text}")],
        Event::Report {
            host: Some(host),
            text,
        } => vec![format!("[{host}] {text}")],
        Event::Report { host: None, text } => vec![text.clone()],
        Event::Output {
            host,
            stdout,
            stderr,
            ..
        } => output_lines(host, stdout, stderr),
        Event::Finished(s) => summary(s),
    }
}

/// A command's whole output under its host: `[web-03]   | line` for
/// stdout, `[web-03]   ! line` for stderr (stdout first).
pub fn output_lines(host: &str, stdout: &[String], stderr: &[String]) -> Vec<String> {
    stdout
        .iter()
        .map(|l| format!("[{host}]   | {l}"))
        .chain(stderr.iter().map(|l| format!("[{host}]   ! {l}")))
        .collect()
}

/// Plain lines for a stream of events: a command's output (`exec`, `run`)
/// is held back until its step ends, then printed in one piece under the
/// step's line, in place of the failure tail it contains.
#[derive(Debug, Default)]
pub struct Printer {
    pending: HashMap<(String, String), (Vec<String>, Vec<String>)>,
}

impl Printer {
    pub fn lines(&mut self, e: &Event) -> Vec<String> {
        match e {
            Event::Output {
                host,
                step,
                stdout,
                stderr,
            } => {
                self.pending.insert(
                    (host.clone(), step.clone()),
                    (stdout.clone(), stderr.clone()),
                );
                Vec::new()
            }
            Event::StepFinished {
                host,
                step,
                outcome,
                duration,
                ..
            } => match self.pending.remove(&(host.clone(), step.clone())) {
                Some((out, err)) => {
                    let mut v = vec![match outcome {
                        StepOutcome::Ok => format!("[{host}] {step} ok {}", secs(*duration)),
                        StepOutcome::Failed(why) => {
                            format!("[{host}] {step} FAILED {}: {why}", secs(*duration))
                        }
                    }];
                    v.extend(output_lines(host, &out, &err));
                    v
                }
                None => lines(e),
            },
            Event::Finished(_) => {
                let mut v = self.flush();
                v.extend(lines(e));
                v
            }
            _ => lines(e),
        }
    }

    /// Whether output of `host`'s `step` is waiting for the step's end.
    pub fn has_output(&self, host: &str, step: &str) -> bool {
        self.pending
            .contains_key(&(host.to_string(), step.to_string()))
    }

    /// Output whose step never ended.
    pub fn flush(&mut self) -> Vec<String> {
        let mut held: Vec<_> = self.pending.drain().collect();
        held.sort();
        held.into_iter()
            .flat_map(|((host, _), (out, err))| output_lines(&host, &out, &err))
            .collect()
    }
}

/// The closing summary: a headline and a row per host.
pub fn summary(s: &Summary) -> Vec<String> {
    let release = if s.release.is_empty() {
        String::new()
    } else {
        format!("release {}, commit {}, ", s.release, short(&s.commit))
    };
    let mut v = vec![
        String::new(),
        format!(
            "{} {}: {} — {release}{} host{} in {}",
            s.recipe,
            s.stage,
            if s.ok { "ok" } else { "FAILED" },
            s.hosts.len(),
            if s.hosts.len() == 1 { "" } else { "s" },
            secs(s.duration)
        ),
        format!("  {}", s.headline),
    ];
    let w = s
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    v.push(format!(
        "  {:w$}  {:6}  {:>8}  state",
        "host", "result", "commands"
    ));
    for h in &s.hosts {
        v.push(format!(
            "  {:w$}  {:6}  {:>8}  {}",
            h.host,
            if h.ok { "ok" } else { "FAILED" },
            h.round_trips,
            h.state
        ));
    }
    v
}

/// A line for a step still running after a while, so CI logs never look
/// hung.
pub fn heartbeat(host: &str, step: &str, running_for: Duration) -> String {
    format!("[{host}] {step} still running ({}s)", running_for.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HostSummary;

    #[test]
    fn step_lines_name_the_host() {
        let ok = Event::StepFinished {
            host: "web-03".into(),
            step: "publish".into(),
            outcome: StepOutcome::Ok,
            duration: Duration::from_millis(210),
            tail: vec![],
        };
        assert_eq!(lines(&ok), vec!["[web-03] publish ok 0.21s"]);
        let failed = Event::StepFinished {
            host: "web-03".into(),
            step: "build".into(),
            outcome: StepOutcome::Failed("exit 2".into()),
            duration: Duration::from_secs(1),
            tail: vec!["make: *** no rule".into()],
        };
        assert_eq!(
            lines(&failed),
            vec![
                "[web-03] build FAILED 1.00s: exit 2",
                "[web-03]   | make: *** no rule"
            ]
        );
    }

    #[test]
    fn output_is_printed_under_its_step_instead_of_the_tail() {
        let mut p = Printer::default();
        let out = Event::Output {
            host: "h".into(),
            step: "exec".into(),
            stdout: vec!["hello".into()],
            stderr: vec!["boom".into()],
        };
        assert!(p.lines(&out).is_empty());
        let done = Event::StepFinished {
            host: "h".into(),
            step: "exec".into(),
            outcome: StepOutcome::Failed("exit 3".into()),
            duration: Duration::from_millis(40),
            tail: vec!["boom".into()],
        };
        assert_eq!(
            p.lines(&done),
            vec![
                "[h] exec FAILED 0.04s: exit 3",
                "[h]   | hello",
                "[h]   ! boom"
            ]
        );
        // Without output, the tail as usual.
        assert_eq!(
            p.lines(&done),
            vec!["[h] exec FAILED 0.04s: exit 3", "[h]   | boom"]
        );
    }

    #[test]
    fn runs_without_a_release_do_not_mention_one() {
        let started = Event::RunStarted {
            recipe: "exec".into(),
            stage: "staging".into(),
            release: String::new(),
            commit: String::new(),
            reference: String::new(),
            hosts: vec!["a".into(), "b".into()],
        };
        assert_eq!(lines(&started), vec!["exec staging: 2 hosts: a, b"]);
        let s = Summary {
            recipe: "exec".into(),
            stage: "staging".into(),
            release: String::new(),
            commit: String::new(),
            ok: false,
            headline: "1 of 2 hosts failed: b".into(),
            hosts: vec![],
            duration: Duration::from_millis(300),
            exit_code: 1,
        };
        assert_eq!(summary(&s)[1], "exec staging: FAILED — 0 hosts in 0.30s");
    }

    #[test]
    fn summary_has_a_row_per_host() {
        let s = Summary {
            recipe: "deploy".into(),
            stage: "staging".into(),
            release: "20261124T190102Z".into(),
            commit: "0123456789abcdef".into(),
            ok: true,
            headline: "every host is on release 20261124T190102Z".into(),
            hosts: vec![HostSummary {
                host: "stg-1".into(),
                ok: true,
                state: "on 20261124T190102Z".into(),
                round_trips: 9,
            }],
            duration: Duration::from_millis(1500),
            exit_code: 0,
        };
        let out = summary(&s).join("\n");
        assert!(out.contains(
            "deploy staging: ok — release 20261124T190102Z, commit 0123456789ab, 1 host in 1.50s"
        ));
        assert!(
            out.contains("stg-1  ok             9  on 20261124T190102Z"),
            "{out}"
        );
    }

    /// The exact lines of each fixed run (src/report/fixtures.rs), as the
    /// reporter task writes them: each event through the printer, then
    /// what it still holds.
    #[test]
    fn snapshots_of_the_fixed_runs() {
        for (name, events) in crate::report::fixtures::all() {
            let mut p = Printer::default();
            let mut out: Vec<String> = events.iter().flat_map(|e| p.lines(e)).collect();
            out.extend(p.flush());
            insta::assert_snapshot!(name, out.join("\n"));
        }
    }
}
