//! Terminal output: a spinner line per host showing its current step, the
//! failures printed above them as they happen, the summary at the end.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plain;
use crate::engine::{Event, StepOutcome};

/// The spinner line's and the finished line's templates.
pub fn templates(color: bool) -> (&'static str, &'static str) {
    if color {
        (
            "{spinner} {prefix:.bold} {msg} {elapsed:.dim}",
            "  {prefix:.bold} {msg}",
        )
    } else {
        ("{spinner} {prefix} {msg} {elapsed}", "  {prefix} {msg}")
    }
}

pub struct Human {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    style: ProgressStyle,
    done_style: ProgressStyle,
    /// Holds `exec`/`run` output until its step ends.
    printer: plain::Printer,
    /// The run is a report (`check`, `releases`, ...): plain lines as they
    /// come, no spinners.
    report: bool,
}

impl Default for Human {
    fn default() -> Self {
        Self::new()
    }
}

impl Human {
    pub fn new() -> Self {
        Self::with_color(true)
    }

    /// Without colour (`NO_COLOR`), the templates carry no styles: indicatif
    /// writes ANSI codes for `{prefix:.bold}` whatever the environment says.
    pub fn with_color(color: bool) -> Self {
        let (style, done) = templates(color);
        Human {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: HashMap::new(),
            style: ProgressStyle::with_template(style)
                .expect("static template")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            done_style: ProgressStyle::with_template(done).expect("static template"),
            printer: plain::Printer::default(),
            report: false,
        }
    }

    fn bar(&mut self, host: &str) -> &ProgressBar {
        if !self.bars.contains_key(host) {
            let b = self.multi.add(ProgressBar::new_spinner());
            b.set_style(self.style.clone());
            b.set_prefix(format!("[{host}]"));
            b.enable_steady_tick(Duration::from_millis(120));
            self.bars.insert(host.to_string(), b);
        }
        &self.bars[host]
    }

    fn println(&self, line: &str) {
        // indicatif drops lines when stdout is not a terminal (`--format
        // human` in a log): they still go out, as plain lines.
        if self.multi.is_hidden() || self.multi.println(line).is_err() {
            println!("{line}");
        }
    }

    pub fn handle(&mut self, e: &Event) {
        if let Event::RunStarted { recipe, .. } = e {
            self.report = plain::is_report(recipe);
        }
        if let Event::Warning(m) = e {
            eprintln!("{}", plain::warning_line(m));
            return;
        }
        if self.report {
            for l in self.printer.lines(e) {
                println!("{l}");
            }
            return;
        }
        match e {
            Event::RunStarted { hosts, .. } => {
                for l in plain::lines(e) {
                    self.println(&l);
                }
                for h in hosts {
                    self.bar(h).set_message("waiting");
                }
            }
            Event::StepStarted { host, step } => {
                let b = self.bar(host);
                b.set_message(step.clone());
            }
            Event::Output { .. } => {
                self.printer.lines(e);
            }
            Event::StepFinished {
                host,
                step,
                outcome,
                ..
            } => {
                // A command's output (exec, run) is printed whatever the
                // outcome; otherwise only failures are.
                let failed = matches!(outcome, StepOutcome::Failed(_));
                let with_output = self.printer.has_output(host, step);
                let lines = self.printer.lines(e);
                if failed || with_output {
                    for l in &lines {
                        self.println(l);
                    }
                }
                let b = self.bar(host).clone();
                b.set_message(if failed {
                    format!("{step} FAILED")
                } else {
                    format!("{step} ok")
                });
            }
            Event::BatchStarted { .. }
            | Event::Notice(_)
            | Event::Fact { .. }
            | Event::History(_)
            | Event::Approval(_)
            | Event::Report(_)
            | Event::Line { .. } => {
                for l in plain::lines(e) {
                    self.println(&l);
                }
            }
            Event::Warning(_) => {}
            Event::Finished(s) => {
                for l in self.printer.flush() {
                    self.println(&l);
                }
                for (host, b) in self.bars.drain() {
                    let state = s
                        .hosts
                        .iter()
                        .find(|h| h.host == host)
                        .map(|h| h.state.clone())
                        .unwrap_or_default();
                    b.set_style(self.done_style.clone());
                    b.finish_with_message(state);
                }
                let _ = self.multi.clear();
                for l in plain::summary(s) {
                    println!("{l}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_templates_carry_no_styles() {
        let (a, b) = templates(false);
        assert!(!a.contains(".bold") && !a.contains(".dim") && !b.contains('.'));
        let (a, _) = templates(true);
        assert!(a.contains("{prefix:.bold}"));
    }

    /// Feeds a fixed run (src/report/fixtures.rs) to a reporter drawing on
    /// an in-memory terminal. Returns each host's line just before the
    /// summary (its last step and how it went) and what stays on the
    /// screen once the bars are cleared: the lines printed above them.
    fn drive(events: &[Event]) -> (String, String) {
        let term = indicatif::InMemoryTerm::new(200, 120);
        let mut h = Human::with_color(false);
        h.multi =
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
        let (last, rest) = events.split_last().expect("a run has events");
        for e in rest {
            h.handle(e);
        }
        let mut bars: Vec<String> = h
            .bars
            .values()
            .map(|b| format!("{} {}", b.prefix(), b.message()))
            .collect();
        bars.sort();
        assert!(matches!(last, Event::Finished(_)), "{last:?}");
        h.handle(last);
        (bars.join("\n"), term.contents())
    }

    /// What a person watching the terminal sees: failures, batches and
    /// notices above the bars, and each host's bar saying its last step.
    /// (The summary table after them is `plain::summary`, snapshot in
    /// plain.rs.)
    #[test]
    fn snapshots_of_the_fixed_runs() {
        for (name, events) in crate::report::fixtures::all() {
            let (bars, screen) = drive(&events);
            insta::assert_snapshot!(
                name,
                format!("--- bars before the summary\n{bars}\n--- screen after it\n{screen}")
            );
        }
    }
}
