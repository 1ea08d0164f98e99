//! What the executor tells the reporters. The executor never prints.

use std::time::Duration;

/// The label of work done on the shipit machine rather than on a host.
pub const LOCAL_LABEL: &str = "local";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Ok,
    /// The command ran and failed, or the transport failed; the reason says
    /// which (`exit 1`, `timed out after 60s`, `lost connection: ...`).
    Failed(String),
}

impl StepOutcome {
    /// The command's exit status: `Some(0)` for a step that succeeded, the
    /// status of a command that ran and exited non-zero (`exit N`), `None`
    /// when it did not run to an exit (timed out, lost connection, killed).
    pub fn exit_status(&self) -> Option<i32> {
        match self {
            StepOutcome::Ok => Some(0),
            StepOutcome::Failed(why) => why.strip_prefix("exit ")?.parse().ok(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    RunStarted {
        recipe: String,
        stage: String,
        release: String,
        commit: String,
        reference: String,
        hosts: Vec<String>,
    },
    StepStarted {
        host: String,
        step: String,
    },
    StepFinished {
        host: String,
        step: String,
        outcome: StepOutcome,
        duration: Duration,
        /// The last lines of stderr (or stdout when stderr is empty),
        /// already redacted.
        tail: Vec<String>,
    },
    BatchStarted {
        index: usize,
        of: usize,
        hosts: Vec<String>,
    },
    /// A run-level note: undoing, unlocking, why the run stops.
    Notice(String),
    /// Something a person should look at that does not change the outcome
    /// (a ledger line that did not parse). Text output writes it to stderr.
    Warning(String),
    /// A line of a command's report that is not a step: what a rollback
    /// decided for a host (`on A: target B`), how a host's rollback ended,
    /// where hosts disagree. `host` is the host it is about, if one.
    Report {
        host: Option<String>,
        text: String,
    },
    /// The whole output of a command whose output is the point (`exec`,
    /// `run`), already redacted; sent just before the step's
    /// `StepFinished`. Reporters print it grouped under the host.
    Output {
        host: String,
        step: String,
        stdout: Vec<String>,
        stderr: Vec<String>,
    },
    Finished(Summary),
}

/// How one host ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSummary {
    pub host: String,
    pub ok: bool,
    /// What a person needs to know: `on 20261124T190102Z`, `failed at
    /// build: exit 1; staged release removed; current unchanged`.
    pub state: String,
    /// Commands sent to the host during the run.
    pub round_trips: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub recipe: String,
    pub stage: String,
    pub release: String,
    pub commit: String,
    pub ok: bool,
    /// One sentence: what happened to the fleet.
    pub headline: String,
    pub hosts: Vec<HostSummary>,
    pub duration: Duration,
    /// The exit code the command ends with (see [`crate::outcome::exit_code`]).
    pub exit_code: u8,
}
