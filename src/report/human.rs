//! Terminal output: a spinner line per host showing its current step, the
//! failures printed above them as they happen, the summary at the end.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plain;
use crate::exec::{Event, StepOutcome};

pub struct Human {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    style: ProgressStyle,
    done_style: ProgressStyle,
}

impl Default for Human {
    fn default() -> Self {
        Self::new()
    }
}

impl Human {
    pub fn new() -> Self {
        Human {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: HashMap::new(),
            style: ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} {elapsed:.dim}")
                .expect("static template")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            done_style: ProgressStyle::with_template("  {prefix:.bold} {msg}")
                .expect("static template"),
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
        if self.multi.println(line).is_err() {
            println!("{line}");
        }
    }

    pub fn handle(&mut self, e: &Event) {
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
            Event::StepFinished {
                host,
                step,
                outcome,
                ..
            } => {
                if let StepOutcome::Failed(_) = outcome {
                    for l in plain::lines(e) {
                        self.println(&l);
                    }
                    let b = self.bar(host).clone();
                    b.set_message(format!("{step} FAILED"));
                } else {
                    let b = self.bar(host).clone();
                    b.set_message(format!("{step} ok"));
                }
            }
            Event::BatchStarted { .. } | Event::Notice(_) => {
                for l in plain::lines(e) {
                    self.println(&l);
                }
            }
            Event::Finished(s) => {
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
