//! Steps of the release recipe and the phases they belong to.

use std::fmt;
use std::time::Duration;

use super::http_check::HttpCheck;

/// Where a step sits in the run. Phases are barriers: no host starts a
/// phase before every host has finished the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Take the deploy lock on every host.
    Prepare,
    /// Everything that builds the release without touching `current`.
    Staging,
    /// Switch, restart, smoke-test; batch by batch.
    Publish,
    /// Record, clean up, unlock.
    Finish,
    /// Only when the run fails or is interrupted: put back what the run
    /// changed on a host. Never run with the other phases.
    Undo,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Prepare => "prepare",
            Phase::Staging => "staging",
            Phase::Publish => "publish",
            Phase::Finish => "finish",
            Phase::Undo => "undo",
        })
    }
}

/// The built-in steps, in recipe order, with their phase.
pub const BUILTIN_STEPS: &[(&str, Phase)] = &[
    ("lock", Phase::Prepare),
    ("check", Phase::Staging),
    ("fetch", Phase::Staging),
    ("create_release", Phase::Staging),
    ("link_shared", Phase::Staging),
    ("render_templates", Phase::Staging),
    ("publish", Phase::Publish),
    ("restart", Phase::Publish),
    ("smoke_test", Phase::Publish),
    ("record", Phase::Finish),
    ("cleanup", Phase::Finish),
    ("unlock", Phase::Finish),
];

pub fn builtin_phase(name: &str) -> Option<Phase> {
    BUILTIN_STEPS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
}

/// What a step does, beyond its shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    Builtin,
    /// A user task from `tasks:`.
    Task,
}

/// What a node sends to its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run this script with `sh -c`.
    Shell(String),
    /// Render template number `template` of the config for this host and
    /// feed it to `script` on stdin.
    Upload { template: usize, script: String },
    /// Feed the release archive (strategy copy) to `script` on stdin. Runs
    /// in a round trip of its own: the archive is streamed, not embedded.
    Artifact(String),
    /// Run this script with `sh -c` on the machine running shipit, for the
    /// node's host (a load balancer's `local: true` drain or undrain):
    /// reported under the host's name, in a round trip of its own.
    Local(String),
    /// Check the node's host over HTTP from the machine running shipit (an
    /// `http:` smoke test); when it passes, run `then` on the host (it
    /// records `verified`; empty: nothing).
    Http { check: HttpCheck, then: String },
    /// Nothing to run: a barrier between phases or batches.
    Barrier,
}

impl Action {
    pub fn script(&self) -> &str {
        match self {
            Action::Shell(s) => s,
            Action::Upload { script, .. } => script,
            Action::Artifact(script) => script,
            Action::Local(script) => script,
            Action::Http { then, .. } => then,
            Action::Barrier => "",
        }
    }
}

/// One step of the plan (its per-host work is in the plan's nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    pub phase: Phase,
    /// Runs on the machine running shipit instead of on the hosts.
    pub local: bool,
    /// Runs even after a failure (unlock), on every host that got this far.
    pub always: bool,
    /// The time limit of one node of this step.
    pub timeout: Duration,
    /// Its output is data for shipit (the lock step's report of releases
    /// and ledger), not for people: not shown when the step succeeds.
    pub quiet: bool,
    /// Its output is the point (`exec`, `run`): the executor sends the whole
    /// redacted stdout and stderr as an `Output` event before the step's end.
    pub output: bool,
}
