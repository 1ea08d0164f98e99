//! The JUnit XML report (`--junit FILE`), for Jenkins: one test suite per
//! host, one test case per step that host ran (failures carry the command's
//! output tail), and one `outcome` case per host from the run's summary.
//! For `shipit check` the cases are the checks instead of the steps: one
//! per finding (`connect`, `disk`, `linked_files`, ...), a failed check a
//! failure carrying its text.
//!
//! [`Junit`] is built from events as they happen; [`Junit::render`] is a
//! pure function of what it saw. The report is written by
//! [`super::output::JunitFile`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::engine::event::{CheckStatus, Fact};
use crate::engine::{Event, StepOutcome, Summary};

/// The name of the per-host case that says how the host ended.
pub const OUTCOME_CASE: &str = "outcome";

#[derive(Debug, Clone, PartialEq, Eq)]
enum CaseState {
    Running,
    Ok,
    Failed {
        reason: String,
        exit_status: Option<i32>,
    },
    /// A check of `shipit check` that failed, with its text.
    CheckFailed(String),
}

#[derive(Debug, Clone)]
struct Case {
    host: String,
    step: String,
    time: Duration,
    state: CaseState,
    tail: Vec<String>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

/// What the report has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Junit {
    /// `deploy`, `exec`, ... until `RunStarted` says.
    recipe: String,
    stage: String,
    hosts: Vec<String>,
    cases: Vec<Case>,
    /// Output events wait here for their step's end.
    pending_output: HashMap<(String, String), (Vec<String>, Vec<String>)>,
    summary: Option<Summary>,
}

impl Junit {
    /// An empty report for a run of `command` (the subcommand's name, used
    /// until the run says what it is).
    pub fn new(command: &str) -> Self {
        Junit {
            recipe: command.to_string(),
            ..Junit::default()
        }
    }

    fn host_seen(&mut self, host: &str) {
        if !self.hosts.iter().any(|h| h == host) {
            self.hosts.push(host.to_string());
        }
    }

    pub fn record(&mut self, e: &Event) {
        match e {
            Event::RunStarted {
                recipe,
                stage,
                hosts,
                ..
            } => {
                self.recipe = recipe.clone();
                self.stage = stage.clone();
                for h in hosts {
                    self.host_seen(h);
                }
            }
            // A check's cases are its findings.
            Event::StepStarted { .. } | Event::StepFinished { .. } if self.recipe == "check" => {}
            Event::Fact {
                host,
                fact:
                    Fact::Check {
                        check,
                        status,
                        text,
                    },
            } => {
                self.host_seen(host);
                self.cases.push(Case {
                    host: host.clone(),
                    step: check.clone(),
                    time: Duration::ZERO,
                    state: match status {
                        CheckStatus::Failed => CaseState::CheckFailed(text.clone()),
                        CheckStatus::Ok | CheckStatus::Warning => CaseState::Ok,
                    },
                    tail: Vec::new(),
                    stdout: vec![text.clone()]
                        .into_iter()
                        .filter(|t| !t.is_empty())
                        .collect(),
                    stderr: Vec::new(),
                });
            }
            Event::StepStarted { host, step } => {
                self.host_seen(host);
                self.cases.push(Case {
                    host: host.clone(),
                    step: step.clone(),
                    time: Duration::ZERO,
                    state: CaseState::Running,
                    tail: Vec::new(),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                });
            }
            Event::Output {
                host,
                step,
                stdout,
                stderr,
            } => {
                self.pending_output.insert(
                    (host.clone(), step.clone()),
                    (stdout.clone(), stderr.clone()),
                );
            }
            Event::StepFinished {
                host,
                step,
                outcome,
                duration,
                tail,
            } => {
                self.host_seen(host);
                let i = match self.cases.iter().rposition(|c| {
                    c.host == *host && c.step == *step && c.state == CaseState::Running
                }) {
                    Some(i) => i,
                    None => {
                        self.cases.push(Case {
                            host: host.clone(),
                            step: step.clone(),
                            time: Duration::ZERO,
                            state: CaseState::Running,
                            tail: Vec::new(),
                            stdout: Vec::new(),
                            stderr: Vec::new(),
                        });
                        self.cases.len() - 1
                    }
                };
                let (stdout, stderr) = self
                    .pending_output
                    .remove(&(host.clone(), step.clone()))
                    .unwrap_or_default();
                let c = &mut self.cases[i];
                c.time = *duration;
                c.tail = tail.clone();
                c.stdout = stdout;
                c.stderr = stderr;
                c.state = match outcome {
                    StepOutcome::Ok => CaseState::Ok,
                    StepOutcome::Failed(why) => CaseState::Failed {
                        reason: why.clone(),
                        exit_status: outcome.exit_status(),
                    },
                };
            }
            Event::Finished(s) => {
                for h in &s.hosts {
                    self.host_seen(&h.host);
                }
                self.summary = Some(s.clone());
            }
            Event::BatchStarted { .. }
            | Event::Notice(_)
            | Event::Fact { .. }
            | Event::History(_)
            | Event::Approval(_)
            | Event::Warning(_)
            | Event::Report(_)
            | Event::Line { .. } => {}
        }
    }

    /// The XML. `error` is why the command ended early, if it did: it
    /// becomes an errored case of its own. A step that started and never
    /// finished is an error too, and so is a run with no summary.
    pub fn render(&self, error: Option<&str>) -> String {
        let prefix = if self.stage.is_empty() {
            format!("shipit.{}", self.recipe)
        } else {
            format!("shipit.{}.{}", self.recipe, class_part(&self.stage))
        };
        let mut suites: Vec<Suite> = Vec::new();
        for host in &self.hosts {
            let classname = format!("{prefix}.{}", class_part(host));
            let mut cases: Vec<XmlCase> = self
                .cases
                .iter()
                .filter(|c| c.host == *host)
                .map(|c| XmlCase::from_case(c, &classname))
                .collect();
            if let Some(h) = self
                .summary
                .as_ref()
                .and_then(|s| s.hosts.iter().find(|h| h.host == *host))
            {
                cases.push(XmlCase {
                    name: OUTCOME_CASE.to_string(),
                    classname: classname.clone(),
                    time: Duration::ZERO,
                    failure: (!h.ok).then(|| Problem {
                        kind: Kind::Failure,
                        message: h.state.clone(),
                        type_: "outcome".into(),
                        body: String::new(),
                    }),
                    system_out: Some(h.state.clone()).filter(|s| !s.is_empty()),
                });
            }
            suites.push(Suite {
                name: classname,
                hostname: Some(host.clone()),
                cases,
            });
        }
        let mut ended_early = Vec::new();
        if let Some(e) = error {
            ended_early.push(e.to_string());
        } else if self.summary.is_none() {
            ended_early.push("shipit ended before the run's summary".to_string());
        }
        if !ended_early.is_empty() {
            suites.push(Suite {
                name: prefix.clone(),
                hostname: None,
                cases: vec![XmlCase {
                    name: "shipit".into(),
                    classname: prefix.clone(),
                    time: Duration::ZERO,
                    failure: Some(Problem {
                        kind: Kind::Error,
                        message: ended_early.join("; "),
                        type_: "error".into(),
                        body: String::new(),
                    }),
                    system_out: None,
                }],
            });
        }

        let count = |f: &dyn Fn(&XmlCase) -> bool| -> usize {
            suites
                .iter()
                .flat_map(|s| &s.cases)
                .filter(|c| f(c))
                .count()
        };
        let tests = count(&|_| true);
        let failures = count(&|c| matches!(&c.failure, Some(p) if p.kind == Kind::Failure));
        let errors = count(&|c| matches!(&c.failure, Some(p) if p.kind == Kind::Error));
        let total: Duration = self
            .summary
            .as_ref()
            .map(|s| s.duration)
            .unwrap_or_else(|| self.cases.iter().map(|c| c.time).sum());
        let title = if self.stage.is_empty() {
            format!("shipit {}", self.recipe)
        } else {
            format!("shipit {} {}", self.recipe, self.stage)
        };

        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{}\">",
            attr(&title),
            secs(total)
        );
        for s in &suites {
            s.write(&mut x);
        }
        x.push_str("</testsuites>\n");
        x
    }
}

/// A name made safe to be one part of a dotted Java-style class name:
/// Jenkins splits `classname` at its last `.` into package and class, so a
/// host's dots (`web-1.acme.internal`) become `_`.
fn class_part(s: &str) -> String {
    s.replace('.', "_")
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Failure,
    Error,
}

struct Problem {
    kind: Kind,
    message: String,
    type_: String,
    body: String,
}

struct XmlCase {
    name: String,
    classname: String,
    time: Duration,
    failure: Option<Problem>,
    system_out: Option<String>,
}

impl XmlCase {
    fn from_case(c: &Case, classname: &str) -> XmlCase {
        let failure = match &c.state {
            CaseState::Ok => None,
            CaseState::CheckFailed(text) => Some(Problem {
                kind: Kind::Failure,
                message: text.clone(),
                type_: "check".into(),
                body: String::new(),
            }),
            CaseState::Running => Some(Problem {
                kind: Kind::Error,
                message: "did not finish: shipit ended while this step ran".into(),
                type_: "unfinished".into(),
                body: String::new(),
            }),
            CaseState::Failed {
                reason,
                exit_status,
            } => {
                let body = if c.tail.is_empty() {
                    let n = c
                        .stderr
                        .len()
                        .saturating_sub(crate::engine::executor::TAIL_LINES);
                    c.stderr[n..].join("\n")
                } else {
                    c.tail.join("\n")
                };
                Some(Problem {
                    kind: Kind::Failure,
                    message: reason.clone(),
                    type_: match exit_status {
                        Some(_) => "exit".into(),
                        None if reason.starts_with("timed out") => "timeout".into(),
                        None => "error".into(),
                    },
                    body,
                })
            }
        };
        let mut out = c.stdout.join("\n");
        if !c.stderr.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&c.stderr.join("\n"));
        }
        XmlCase {
            name: c.step.clone(),
            classname: classname.to_string(),
            time: c.time,
            failure,
            system_out: Some(out).filter(|o| !o.is_empty()),
        }
    }
}

struct Suite {
    name: String,
    hostname: Option<String>,
    cases: Vec<XmlCase>,
}

impl Suite {
    fn write(&self, x: &mut String) {
        let failures = self
            .cases
            .iter()
            .filter(|c| matches!(&c.failure, Some(p) if p.kind == Kind::Failure))
            .count();
        let errors = self
            .cases
            .iter()
            .filter(|c| matches!(&c.failure, Some(p) if p.kind == Kind::Error))
            .count();
        let time: Duration = self.cases.iter().map(|c| c.time).sum();
        let _ = write!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{}\"",
            attr(&self.name),
            self.cases.len(),
            secs(time)
        );
        if let Some(h) = &self.hostname {
            let _ = write!(x, " hostname=\"{}\"", attr(h));
        }
        x.push_str(">\n");
        for c in &self.cases {
            let _ = write!(
                x,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
                attr(&c.name),
                attr(&c.classname),
                secs(c.time)
            );
            if c.failure.is_none() && c.system_out.is_none() {
                x.push_str("/>\n");
                continue;
            }
            x.push_str(">\n");
            if let Some(p) = &c.failure {
                let tag = match p.kind {
                    Kind::Failure => "failure",
                    Kind::Error => "error",
                };
                let _ = writeln!(
                    x,
                    "      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>",
                    attr(&p.message),
                    attr(&p.type_),
                    text(&p.body)
                );
            }
            if let Some(o) = &c.system_out {
                let _ = writeln!(x, "      <system-out>{}</system-out>", text(o));
            }
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
}

/// Characters XML 1.0 cannot carry at all (most control characters, such
/// as the ESC of colour codes in a command's output) become U+FFFD.
fn xml_char(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => c,
        '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
        _ => c,
    }
}

/// `s` without terminal escape sequences (colours, cursor moves, window
/// titles): a report read in a browser shows the text they decorate.
pub fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // CSI: parameters and intermediates, then one final byte.
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            '\u{9b}' => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            // OSC, DCS, PM, APC: a string ended by BEL or ESC \.
            '\u{1b}' if matches!(chars.peek(), Some(']' | 'P' | '^' | '_')) => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' {
                        if chars.peek() == Some(&'\\') {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            // Any other escape: intermediates, then one final character.
            '\u{1b}' => {
                while let Some(&c) = chars.peek() {
                    chars.next();
                    if !('\u{20}'..='\u{2f}').contains(&c) {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Escaped for element content, terminal escapes removed.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in strip_escapes(s).chars().map(xml_char) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escaped for a double-quoted attribute (newlines kept as references, so
/// they survive attribute normalisation), terminal escapes removed.
pub fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in strip_escapes(s).chars().map(xml_char) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HostSummary;

    fn started(host: &str, step: &str) -> Event {
        Event::StepStarted {
            host: host.into(),
            step: step.into(),
        }
    }

    fn finished(host: &str, step: &str, outcome: StepOutcome, tail: &[&str]) -> Event {
        Event::StepFinished {
            host: host.into(),
            step: step.into(),
            outcome,
            duration: Duration::from_millis(250),
            tail: tail.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn summary(hosts: &[(&str, bool, &str)]) -> Event {
        Event::Finished(Summary {
            recipe: "deploy".into(),
            stage: "staging".into(),
            release: "R".into(),
            commit: "C".into(),
            ok: hosts.iter().all(|h| h.1),
            headline: String::new(),
            hosts: hosts
                .iter()
                .map(|(h, ok, state)| HostSummary {
                    host: h.to_string(),
                    ok: *ok,
                    state: state.to_string(),
                    round_trips: 1,
                })
                .collect(),
            duration: Duration::from_secs(2),
            exit_code: if hosts.iter().all(|h| h.1) { 0 } else { 1 },
        })
    }

    fn run_started(hosts: &[&str]) -> Event {
        Event::RunStarted {
            recipe: "deploy".into(),
            stage: "staging".into(),
            release: "R".into(),
            commit: "C".into(),
            reference: "main".into(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_case_per_host_and_step_with_failures() {
        let mut j = Junit::new("deploy");
        for e in [
            run_started(&["web-1.acme", "web-2"]),
            started("web-1.acme", "fetch"),
            started("web-2", "fetch"),
            finished("web-1.acme", "fetch", StepOutcome::Ok, &[]),
            finished(
                "web-2",
                "fetch",
                StepOutcome::Failed("exit 2".into()),
                &["fatal: <no> & \"such\" ref", "\u{1b}[31mred\u{1b}[0m"],
            ),
            summary(&[
                ("web-1.acme", false, "staged, not switched"),
                ("web-2", false, "failed at fetch: exit 2"),
            ]),
        ] {
            j.record(&e);
        }
        let x = j.render(None);
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"shipit deploy staging\" tests=\"4\" failures=\"3\" errors=\"0\" time=\"2.000\">\n"), "{x}");
        assert!(x.contains("  <testsuite name=\"shipit.deploy.staging.web-1_acme\" tests=\"2\" failures=\"1\" errors=\"0\" skipped=\"0\" time=\"0.250\" hostname=\"web-1.acme\">\n    <testcase name=\"fetch\" classname=\"shipit.deploy.staging.web-1_acme\" time=\"0.250\"/>\n"), "{x}");
        assert!(x.contains("<failure message=\"exit 2\" type=\"exit\">fatal: &lt;no&gt; &amp; \"such\" ref\nred</failure>"), "{x}");
        assert!(x.contains("<testcase name=\"outcome\" classname=\"shipit.deploy.staging.web-2\" time=\"0.000\">\n      <failure message=\"failed at fetch: exit 2\" type=\"outcome\"></failure>"), "{x}");
        assert!(!x.contains("name=\"shipit\""), "no early-end case: {x}");
    }

    #[test]
    fn output_goes_to_system_out_and_unfinished_steps_are_errors() {
        let mut j = Junit::new("exec");
        for e in [
            started("h", "exec"),
            Event::Output {
                host: "h".into(),
                step: "exec".into(),
                stdout: vec!["hello".into()],
                stderr: vec!["oops".into()],
            },
            finished("h", "exec", StepOutcome::Failed("exit 3".into()), &[]),
            started("h", "exec"),
        ] {
            j.record(&e);
        }
        let x = j.render(Some("cannot write `x`"));
        assert!(
            x.contains("<failure message=\"exit 3\" type=\"exit\">oops</failure>\n      <system-out>hello\noops</system-out>"),
            "{x}"
        );
        assert!(x.contains("<error message=\"did not finish: shipit ended while this step ran\" type=\"unfinished\"></error>"), "{x}");
        assert!(
            x.contains("<testcase name=\"shipit\" classname=\"shipit.exec\" time=\"0.000\">\n      <error message=\"cannot write `x`\" type=\"error\"></error>"),
            "{x}"
        );
        assert!(x.contains("tests=\"3\" failures=\"1\" errors=\"2\""), "{x}");
    }

    #[test]
    fn a_run_without_summary_says_so() {
        let j = Junit::new("deploy");
        let x = j.render(None);
        assert!(
            x.contains("<error message=\"shipit ended before the run's summary\""),
            "{x}"
        );
    }

    #[test]
    fn terminal_escapes_are_removed() {
        let cases = [
            ("\u{1b}[31mred\u{1b}[0m", "red"),
            ("\u{1b}[1;38;5;208mbold\u{1b}[m!", "bold!"),
            ("a\u{1b}]0;title\u{7}b", "ab"),
            (
                "a\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\b",
                "alinkb",
            ),
            ("\u{1b}(Bplain\u{1b}=", "plain"),
            ("\u{9b}2Kcleared", "cleared"),
            ("cut \u{1b}[", "cut "),
            ("no escapes\n", "no escapes\n"),
        ];
        for (input, want) in cases {
            assert_eq!(strip_escapes(input), want, "{input:?}");
        }
        assert_eq!(text("\u{1b}[31m<x>\u{1b}[0m\u{7}"), "&lt;x&gt;\u{fffd}");
    }

    #[test]
    fn escaping() {
        assert_eq!(attr("a\"<&>\nb\u{7}"), "a&quot;&lt;&amp;&gt;&#10;b\u{fffd}");
        assert_eq!(text("x < y && \"z\"\n"), "x &lt; y &amp;&amp; \"z\"\n");
    }

    /// The report of each fixed run (src/report/fixtures.rs).
    #[test]
    fn snapshots_of_the_fixed_runs() {
        for (name, events) in crate::report::fixtures::all() {
            let mut j = Junit::new("deploy");
            for e in &events {
                j.record(e);
            }
            insta::assert_snapshot!(name, j.render(None));
        }
    }
}
