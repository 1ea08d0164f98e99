//! The plan: a pure function from (config, stage, recipe) to a task graph
//! of (step x host) nodes, and the shell commands each node runs.

pub mod chain;
pub mod cleanup;
pub mod commands;
pub mod current;
pub mod display;
pub mod failure_hooks;
pub mod graph;
pub mod host_step;
pub mod http_check;
pub mod inspect;
pub mod notify;
pub mod planner;
pub mod queue;
pub mod release;
pub mod render;
pub mod rollback;
pub mod step;
pub mod targeting;

pub use graph::{Node, Plan, PlanHost, Recipe};
pub use planner::{plan, Filters, PlanError, PlanInput};
pub use release::ReleaseInfo;
pub use step::{Action, Phase, Step, StepKind};
