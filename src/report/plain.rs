//! Plain lines, one per step per host: `[web-03] publish ok 0.21s`.

use std::time::Duration;

use crate::exec::{Event, StepOutcome, Summary};

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
        Event::Finished(s) => summary(s),
    }
}

/// The closing summary: a headline and a row per host.
pub fn summary(s: &Summary) -> Vec<String> {
    let mut v = vec![
        String::new(),
        format!(
            "{} {}: {} — release {}, commit {}, {} host{} in {}",
            s.recipe,
            s.stage,
            if s.ok { "ok" } else { "FAILED" },
            s.release,
            short(&s.commit),
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
    use crate::exec::HostSummary;

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
}
