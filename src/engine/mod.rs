//! The executor: runs a plan's nodes over transports with bounded
//! concurrency, emitting events. It never prints and never `?`s out of its
//! loop: failures are recorded, dependents skipped, running work finished.

pub mod deploy;
pub mod event;
pub mod executor;
pub mod failure_hooks;
pub mod fleet;
pub mod gate;
pub mod http_probe;
pub mod load_balancer;
pub mod lock_protocol;
pub mod promote;
pub mod rollback;
pub mod rollback_target;
pub mod settle;
pub mod trust_root;

pub use event::{Event, HostSummary, StepOutcome, Summary};
pub use executor::{EventSink, Executor, NodeResult};
pub mod approve;
pub mod check;
pub mod connect;
pub mod hand_lock;
pub mod history;
pub mod ledger_read;
pub mod remote_command;
pub mod session;
pub mod sync;
