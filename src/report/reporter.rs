//! The reporter task: drains events and writes them in the chosen format.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::format::Format;
use super::human::Human;
use super::plain;
use crate::exec::Event;

/// How often plain mode says a long step is still running.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// Writes every event until the channel closes.
pub async fn drive(mut rx: mpsc::UnboundedReceiver<Event>, format: Format) {
    match format {
        Format::Human => {
            let mut h = Human::new();
            while let Some(e) = rx.recv().await {
                h.handle(&e);
            }
        }
        Format::Plain => {
            let mut running: HashMap<(String, String), Instant> = HashMap::new();
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.tick().await;
            loop {
                tokio::select! {
                    e = rx.recv() => {
                        let Some(e) = e else { break };
                        match &e {
                            Event::StepStarted { host, step } => {
                                running.insert((host.clone(), step.clone()), Instant::now());
                            }
                            Event::StepFinished { host, step, .. } => {
                                running.remove(&(host.clone(), step.clone()));
                            }
                            _ => {}
                        }
                        let mut out = std::io::stdout().lock();
                        for l in plain::lines(&e) {
                            let _ = writeln!(out, "{l}");
                        }
                        let _ = out.flush();
                    }
                    _ = tick.tick() => {
                        let mut out = std::io::stdout().lock();
                        let mut items: Vec<_> = running.iter().collect();
                        items.sort();
                        for ((host, step), since) in items {
                            if since.elapsed() >= HEARTBEAT {
                                let _ = writeln!(out, "{}", plain::heartbeat(host, step, since.elapsed()));
                            }
                        }
                        let _ = out.flush();
                    }
                }
            }
        }
    }
}
