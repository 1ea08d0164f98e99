//! shipit: a deployment orchestrator in the Capistrano tradition.
//!
//! Four layers, one direction: [`config`] (what the user wrote, validated),
//! [`plan`] (a pure task graph of step x host), [`engine`] (runs the graph over
//! a [`transport::Transport`], emitting events) and [`report`] (events in,
//! output out). [`cmd`] wires them into the subcommands.

pub mod artifact;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod engine;
pub mod git;
pub mod ids;
pub mod ledger;
pub mod lock;
pub mod logging;
pub mod outcome;
pub mod plan;
pub mod process;
pub mod quick_exit;
pub mod redact;
pub mod remote;
pub mod report;
pub mod secrets;
pub use remote::shell;
pub mod terminal;
pub mod transport;
