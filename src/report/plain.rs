//! Plain lines, one per step per host: `[web-03] publish ok 0.21s`.

use std::collections::HashMap;
use std::time::Duration;

use crate::engine::event::{Approval, CheckStatus, Fact, HistoryEntry, ReleaseRow};
use crate::engine::{Event, StepOutcome, Summary};

/// The recipes whose output is a report of what they found (per-host
/// facts, then closing lines) rather than a line per step and a summary
/// table: their step events and summary are left to JSON and JUnit.
pub const REPORTS: [&str; 6] = ["check", "releases", "history", "lock", "unlock", "approve"];

/// Whether runs of `recipe` print as a report (see [`REPORTS`]).
pub fn is_report(recipe: &str) -> bool {
    REPORTS.contains(&recipe)
}

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
        Event::Line {
            host: Some(host),
            text,
        } => vec![format!("[{host}] {text}")],
        Event::Line { host: None, text } => vec![text.clone()],
        Event::Output {
            host,
            stdout,
            stderr,
            ..
        } => output_lines(host, stdout, stderr),
        Event::Finished(s) => summary(s),
        Event::Fact { host, fact } => fact_lines(host, fact),
        Event::History(h) => vec![history_line(h)],
        Event::Approval(a) => vec![approval_line(a)],
        // Written to stderr (see [`warning_line`]).
        Event::Warning(_) => Vec::new(),
        Event::Report(lines) => std::iter::once(String::new())
            .chain(lines.iter().cloned())
            .collect(),
    }
}

/// A warning, as written to stderr.
pub fn warning_line(message: &str) -> String {
    format!("shipit: warning: {message}")
}

/// A host's finding: `[web-1] disk ok: 812 MiB free`, `[web-1] linked_files
/// FAILED: ...`, `[web-1] lock held by ...`, `[web-1] freed (yours): ...`.
pub fn fact_lines(host: &str, fact: &Fact) -> Vec<String> {
    match fact {
        Fact::Check {
            check,
            status,
            text,
        } => vec![match (status, text.is_empty()) {
            (CheckStatus::Ok, true) => format!("[{host}] {check} ok"),
            (CheckStatus::Ok, false) => format!("[{host}] {check} ok: {text}"),
            (CheckStatus::Failed, _) => format!("[{host}] {check} FAILED: {text}"),
            (CheckStatus::Warning, _) => format!("[{host}] {check} {text}"),
        }],
        Fact::Releases {
            releases,
            current,
            deploy_to_exists,
        } => releases_table(host, releases, current.as_deref(), *deploy_to_exists),
        Fact::Lock { text, .. } => vec![format!("[{host}] {text}")],
        Fact::Unread { reason } => vec![format!("[{host}] FAILED: {reason}")],
    }
}

/// The table of one host's releases, newest first, each line starting
/// with `[host]`.
pub fn releases_table(
    host: &str,
    releases: &[ReleaseRow],
    current: Option<&str>,
    deploy_to_exists: bool,
) -> Vec<String> {
    let mut v = Vec::new();
    if releases.is_empty() {
        v.push(format!(
            "[{host}] no releases{}",
            if deploy_to_exists {
                ""
            } else {
                " (deploy_to does not exist)"
            }
        ));
    } else {
        v.push(format!(
            "[{host}] {:16}  {:11}  commit",
            "release", "status"
        ));
        for r in releases {
            let mut line = format!("[{host}] {:16}  {:11}  {:12}", r.id, r.status, r.commit);
            if r.current {
                line.push_str("  current");
            }
            v.push(line.trim_end().to_string());
        }
    }
    match current {
        None => v.push(format!("[{host}] no current release")),
        Some(c) if !releases.iter().any(|r| r.id == c) => v.push(format!(
            "[{host}] current points at `{c}`, which is not a release here"
        )),
        Some(_) => {}
    }
    v
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// A line of history: time, event, release, short commit, user, hosts,
/// then the detail in parentheses and the build URL when there are.
pub fn history_line(h: &HistoryEntry) -> String {
    let mut s = format!(
        "{:20}  {:11}  {:16}  {:12}  {}  {}",
        h.time,
        h.kind,
        or_dash(&h.release),
        or_dash(short(&h.commit)),
        or_dash(&h.user),
        h.hosts.join(", ")
    );
    if let Some(d) = &h.detail {
        s.push_str(&format!("  ({d})"));
    }
    if let Some(u) = &h.build_url {
        s.push_str(&format!("  {u}"));
    }
    s
}

/// `approved release R (commit C) of `staging` for `production` as bob,
/// valid until T`.
pub fn approval_line(a: &Approval) -> String {
    format!(
        "{} release {} (commit {}) of `{}` for `{}` as {}{}, valid until {}",
        a.decision,
        a.release,
        short(&a.commit),
        a.from_stage,
        a.stage,
        a.user,
        if a.signed { ", signed" } else { "" },
        a.expires
    )
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
    /// The run is a report (see [`is_report`]).
    report: bool,
    /// `run`: a host's lines are held until its task's output is printed,
    /// so each host's lines (reading `current`, then the task) stay one
    /// block. Hosts in order of their first line.
    group: bool,
    held: Vec<(String, Vec<String>)>,
}

impl Printer {
    pub fn lines(&mut self, e: &Event) -> Vec<String> {
        if let Event::RunStarted { recipe, .. } = e {
            self.report = is_report(recipe);
            self.group = recipe == "run";
        }
        if self.group {
            if let Event::StepFinished { host, step, .. } = e {
                let had_output = self.has_output(host, step);
                let lines = self.step_lines(e);
                let at = match self.held.iter().position(|(h, _)| h == host) {
                    Some(i) => i,
                    None => {
                        self.held.push((host.clone(), Vec::new()));
                        self.held.len() - 1
                    }
                };
                self.held[at].1.extend(lines);
                return if had_output {
                    self.held.remove(at).1
                } else {
                    Vec::new()
                };
            }
        }
        if self.report {
            return match e {
                Event::StepStarted { .. }
                | Event::StepFinished { .. }
                | Event::Output { .. }
                | Event::Finished(_) => Vec::new(),
                _ => lines(e),
            };
        }
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
            Event::StepFinished { .. } => self.step_lines(e),
            Event::Finished(_) => {
                let mut v = self.flush();
                v.extend(lines(e));
                v
            }
            _ => lines(e),
        }
    }

    /// A step's line, with its output when it had some (in place of the
    /// failure tail it contains).
    fn step_lines(&mut self, e: &Event) -> Vec<String> {
        match e {
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
            _ => lines(e),
        }
    }

    /// Whether output of `host`'s `step` is waiting for the step's end.
    pub fn has_output(&self, host: &str, step: &str) -> bool {
        self.pending
            .contains_key(&(host.to_string(), step.to_string()))
    }

    /// Lines held back: those of hosts whose task never printed (`run`),
    /// then output whose step never ended.
    pub fn flush(&mut self) -> Vec<String> {
        let mut v: Vec<String> = self.held.drain(..).flat_map(|(_, l)| l).collect();
        let mut held: Vec<_> = self.pending.drain().collect();
        held.sort();
        v.extend(
            held.into_iter()
                .flat_map(|((host, _), (out, err))| output_lines(&host, &out, &err)),
        );
        v
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

    fn started(recipe: &str) -> Event {
        Event::RunStarted {
            recipe: recipe.into(),
            stage: "staging".into(),
            release: String::new(),
            commit: String::new(),
            reference: String::new(),
            hosts: vec!["a".into(), "b".into()],
        }
    }

    fn step(host: &str, step: &str, ok: bool) -> Event {
        Event::StepFinished {
            host: host.into(),
            step: step.into(),
            outcome: if ok {
                StepOutcome::Ok
            } else {
                StepOutcome::Failed("exit 1".into())
            },
            duration: Duration::from_millis(10),
            tail: vec![],
        }
    }

    #[test]
    fn reports_print_their_facts_and_closing_lines_only() {
        let mut p = Printer::default();
        let mut out = Vec::new();
        for e in [
            started("check"),
            step("a", "preflight", true),
            Event::Fact {
                host: "a".into(),
                fact: Fact::Check {
                    check: "connect".into(),
                    status: CheckStatus::Ok,
                    text: String::new(),
                },
            },
            Event::Fact {
                host: "a".into(),
                fact: Fact::Check {
                    check: "disk".into(),
                    status: CheckStatus::Failed,
                    text: "10 MiB free".into(),
                },
            },
            Event::Fact {
                host: "b".into(),
                fact: Fact::Check {
                    check: "lock".into(),
                    status: CheckStatus::Warning,
                    text: "held by `bob`".into(),
                },
            },
            Event::Fact {
                host: "b".into(),
                fact: Fact::Unread {
                    reason: "gone".into(),
                },
            },
            Event::Warning("`b`: skipped line 3".into()),
            Event::Report(vec![
                "check staging: FAILED — 1 of 2 hosts not ready: a".into()
            ]),
            Event::Finished(Summary {
                recipe: "check".into(),
                stage: "staging".into(),
                release: String::new(),
                commit: String::new(),
                ok: false,
                headline: String::new(),
                hosts: vec![],
                duration: Duration::ZERO,
                exit_code: 1,
            }),
        ] {
            out.extend(p.lines(&e));
        }
        assert_eq!(
            out,
            vec![
                "check staging: 2 hosts: a, b",
                "[a] connect ok",
                "[a] disk FAILED: 10 MiB free",
                "[b] lock held by `bob`",
                "[b] FAILED: gone",
                "",
                "check staging: FAILED — 1 of 2 hosts not ready: a",
            ]
        );
        assert_eq!(
            warning_line("`b`: skipped line 3"),
            "shipit: warning: `b`: skipped line 3"
        );
    }

    #[test]
    fn a_run_keeps_each_hosts_lines_together() {
        let mut p = Printer::default();
        let mut out = Vec::new();
        for e in [
            started("run"),
            step("a", "current", true),
            step("b", "current", true),
            Event::Output {
                host: "b".into(),
                step: "t".into(),
                stdout: vec!["hi b".into()],
                stderr: vec![],
            },
            step("b", "t", true),
            Event::Output {
                host: "a".into(),
                step: "t".into(),
                stdout: vec!["hi a".into()],
                stderr: vec![],
            },
            step("a", "t", true),
        ] {
            out.extend(p.lines(&e));
        }
        assert_eq!(
            out,
            vec![
                "run staging: 2 hosts: a, b",
                "[b] current ok 0.01s",
                "[b] t ok 0.01s",
                "[b]   | hi b",
                "[a] current ok 0.01s",
                "[a] t ok 0.01s",
                "[a]   | hi a",
            ]
        );
    }

    #[test]
    fn history_and_releases_lines() {
        let h = HistoryEntry {
            time: "2026-11-24T19:06:00Z".into(),
            kind: "unlocked".into(),
            release: String::new(),
            commit: String::new(),
            user: "tester".into(),
            detail: Some("forced unlock".into()),
            build_url: Some("https://ci/job/7/".into()),
            hosts: vec!["fleet-3".into()],
        };
        assert_eq!(
            history_line(&h),
            "2026-11-24T19:06:00Z  unlocked     -                 -             tester  fleet-3  (forced unlock)  https://ci/job/7/"
        );
        let h = HistoryEntry {
            kind: "verified".into(),
            release: "20261124T190102Z".into(),
            commit: "e02a4e2c4457aaaaaaaa".into(),
            detail: None,
            build_url: None,
            hosts: vec!["fleet-1".into(), "fleet-2".into()],
            ..h
        };
        assert_eq!(
            history_line(&h),
            "2026-11-24T19:06:00Z  verified     20261124T190102Z  e02a4e2c4457  tester  fleet-1, fleet-2"
        );
        let rows = vec![ReleaseRow {
            id: "20261124T190102Z".into(),
            status: "verified".into(),
            commit: "e02a4e2c4457".into(),
            current: true,
        }];
        assert_eq!(
            releases_table("a", &rows, Some("20261124T190102Z"), true),
            vec![
                "[a] release           status       commit",
                "[a] 20261124T190102Z  verified     e02a4e2c4457  current",
            ]
        );
        assert_eq!(
            releases_table("a", &[], None, false),
            vec![
                "[a] no releases (deploy_to does not exist)",
                "[a] no current release"
            ]
        );
        assert_eq!(
            approval_line(&Approval {
                decision: "approved".into(),
                release: "R".into(),
                commit: "0123456789abcdef".into(),
                from_stage: "staging".into(),
                stage: "production".into(),
                user: "bob".into(),
                signed: true,
                expires: "T".into(),
            }),
            "approved release R (commit 0123456789ab) of `staging` for `production` as bob, signed, valid until T"
        );
    }
}
