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
    /// `Ok` without a reason to fail, `Failed` with it.
    pub fn from_reason(reason: Option<&str>) -> StepOutcome {
        match reason {
            None => StepOutcome::Ok,
            Some(r) => StepOutcome::Failed(r.to_string()),
        }
    }

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
    /// A line of a run that is not a step: what a rollback decided for a
    /// host (`on A: target B`), how a host's rollback ended, where hosts
    /// disagree. `host` is the host it is about, if one.
    Line {
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
    /// What a command that inspects or changes a stage's state found on
    /// one host (`check`, `releases`, `lock`, `unlock`).
    Fact {
        host: String,
        fact: Fact,
    },
    /// One line of the stage's history: an event of the ledger and the
    /// hosts that recorded it.
    History(HistoryEntry),
    /// A release manager's decision recorded by `shipit approve`.
    Approval(Approval),
    /// Something a person should know that is not the run's result (ledger
    /// lines that do not parse and were skipped). Text output writes it to
    /// stderr.
    Warning(String),
    /// The closing lines of a report (`check`, `releases`, `history`,
    /// `lock`, `unlock`, `approve`) as printed for people: the verdict,
    /// what hosts disagree on. Sent just before `Finished`.
    Report(Vec<String>),
    Finished(Summary),
}

/// How one check of `shipit check` ended on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Ok,
    Failed,
    /// Worth knowing, not a failure: a held deploy lock.
    Warning,
}

/// A per-host finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// One check of `shipit check`: `connect`, `deploy_to`, `git`, `tar`,
    /// `disk`, `linked_files`, `lock`, or `check` when the host's answer
    /// could not be read.
    Check {
        check: String,
        status: CheckStatus,
        text: String,
    },
    /// A host's releases, newest first (`shipit releases`).
    Releases {
        releases: Vec<ReleaseRow>,
        /// The release `current` points at, if any.
        current: Option<String>,
        deploy_to_exists: bool,
    },
    /// What `lock` or `unlock` found or did on a host.
    Lock {
        /// `locked`, `held`, `freed`, `already_free`, `refused`,
        /// `changed_hands`, `released` (taken, then freed again because
        /// another host refused), `stuck` (taken and not freed again),
        /// `failed`.
        state: String,
        holder: Option<Holder>,
        /// The line for people, after the host's name.
        text: String,
    },
    /// The host could not be read (`releases`, `history`).
    Unread { reason: String },
}

/// A release as `shipit releases` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRow {
    pub id: String,
    /// The ledger's last word on it: `verified`, `published`, `failed`,
    /// ..., or `unknown`.
    pub status: String,
    /// The commit, short (12 characters), or `-` when unknown.
    pub commit: String,
    pub current: bool,
}

/// Who holds a deploy lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user: String,
    pub machine: String,
    pub pid: u32,
    pub time: String,
    pub message: String,
    /// The holder is gone (its process ended, or `--lock-ttl` passed).
    pub stale: bool,
}

/// One line of `shipit history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The earliest host's time, as the ledger wrote it.
    pub time: String,
    /// The ledger event: `published`, `verified`, `rolled_back`, ...
    pub kind: String,
    pub release: String,
    pub commit: String,
    pub user: String,
    pub detail: Option<String>,
    pub build_url: Option<String>,
    /// The hosts that recorded it, in stage order.
    pub hosts: Vec<String>,
}

/// A decision recorded by `shipit approve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// `approved` or `rejected`.
    pub decision: String,
    pub release: String,
    pub commit: String,
    pub from_stage: String,
    pub stage: String,
    pub user: String,
    pub signed: bool,
    pub expires: String,
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
