//! A run's connections and one executor over them, kept for the whole
//! run (a deploy keeps its rendered templates and archive in it, a rollback
//! its round-trip counts across rounds): what `deploy` and `rollback` open
//! first and close last. The commands that send one plan per round use
//! [`super::session`].
//!
//! Opening connects to every selected host (a bounded number at once); a
//! host that cannot be reached is reported as a failed `connect` step and
//! kept, with why, so its nodes fail at once and the rest of the run goes
//! on. The control sockets live in a private temp dir removed on drop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use super::connect::{close_all, connect_all};
use super::event::{Event, StepOutcome};
use super::executor::{EventSink, Executor};
use crate::config::{Host, SshSettings};
use crate::lock::Staleness;
use crate::redact::Redactor;
use crate::transport::local::LocalTransport;
use crate::transport::Transport;

/// What the engine needs from the world a command runs in, passed in so
/// tests control it.
#[derive(Clone)]
pub struct RunCtx<'a> {
    pub env: &'a std::collections::BTreeMap<String, String>,
    /// Hosts worked at once (`-j`).
    pub parallel: usize,
    /// Becomes `true` on SIGINT/SIGTERM.
    pub shutdown: watch::Receiver<bool>,
    pub staleness: Staleness<'a>,
    /// The time the run started (release ids are minted from it).
    pub now: chrono::DateTime<chrono::Utc>,
    /// What the run is doing now, for the message a second Ctrl-C prints.
    pub status: Arc<Mutex<String>>,
}

impl RunCtx<'_> {
    pub fn set_status(&self, what: &str) {
        if let Ok(mut s) = self.status.lock() {
            *s = what.to_string();
        }
    }

    pub fn interrupted(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Open connections and the executor over them; index `i` is `hosts[i]`.
pub struct Fleet {
    pub exec: Executor,
    transports: Vec<Option<Arc<dyn Transport>>>,
    /// Why a host could not be reached, for its summary row.
    pub unreachable: Vec<Option<String>>,
    _control: tempfile::TempDir,
}

impl Fleet {
    /// Connects to `hosts`, reporting each failure as a failed `connect`
    /// step, and builds the executor over the connections.
    pub async fn open(
        hosts: &[&Host],
        ssh: &SshSettings,
        ctx: &RunCtx<'_>,
        events: &EventSink,
        redactor: &Redactor,
    ) -> anyhow::Result<Fleet> {
        let control = super::connect::control_dir(|n| events.send(Event::Notice(n)))
            .context("cannot create a directory for ssh control sockets")?;
        let conns = connect_all(hosts, ssh, control.path()).await;
        let mut unreachable = vec![None; hosts.len()];
        let transports: Vec<Option<Arc<dyn Transport>>> = conns
            .into_iter()
            .enumerate()
            .map(|(i, c)| match c {
                Ok(t) => Some(t),
                Err(e) => {
                    let why = redactor.apply(&e.to_string()).into_owned();
                    events.send(Event::StepFinished {
                        host: hosts[i].name.to_string(),
                        step: "connect".into(),
                        outcome: StepOutcome::Failed(why.clone()),
                        duration: Duration::ZERO,
                        tail: Vec::new(),
                    });
                    unreachable[i] = Some(why);
                    None
                }
            })
            .collect();
        let local: Arc<dyn Transport> = Arc::new(LocalTransport::new("local"));
        let exec = Executor::new(
            transports.clone(),
            local,
            HashMap::new(),
            events.clone(),
            redactor.clone(),
            ctx.parallel,
            ctx.shutdown.clone(),
        );
        Ok(Fleet {
            exec,
            transports,
            unreachable,
            _control: control,
        })
    }

    /// Closes every connection (the executor may still report counts).
    pub async fn close(&self) {
        close_all(&self.transports).await;
    }
}
