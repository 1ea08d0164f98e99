//! The plan: a task graph of (step x host) nodes with dependencies.

use super::release::ReleaseInfo;
use super::step::{Action, Phase, Step};
use crate::config::TransportKind;
use crate::ids::HostName;

/// What the run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    Deploy,
    /// A rollback's rounds: lock and read, then switch (and, where the
    /// target fails, switch back), each a plan of per-host chains.
    Rollback,
    /// `shipit check`: preflight on every host, changing nothing.
    Check,
    /// `shipit releases`: each host's releases and ledger.
    Releases,
    /// `shipit history`: the stage's ledger.
    History,
    /// `shipit lock`: take the deploy lock by hand.
    Lock,
    /// `shipit unlock`: free the deploy lock.
    Unlock,
    /// `shipit approve`: record a decision on TO's hosts.
    Approve,
    /// `shipit exec`: a command on every host.
    Exec,
    /// `shipit run`: one task on its hosts.
    Run,
}

impl std::fmt::Display for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Recipe::Deploy => "deploy",
            Recipe::Rollback => "rollback",
            Recipe::Check => "check",
            Recipe::Releases => "releases",
            Recipe::History => "history",
            Recipe::Lock => "lock",
            Recipe::Unlock => "unlock",
            Recipe::Approve => "approve",
            Recipe::Exec => "exec",
            Recipe::Run => "run",
        })
    }
}

/// A host as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanHost {
    pub name: HostName,
    pub roles: Vec<String>,
    pub transport: TransportKind,
    pub deploy_to: String,
    /// The name of the link to the live release (`current_path`).
    pub current: String,
}

/// One unit of work: a step on one host (or on the shipit machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Index into [`Plan::steps`]; `None` for a barrier between phases or
    /// batches (it does no work).
    pub step: Option<usize>,
    /// Index into [`Plan::hosts`]; `None` for a local task.
    pub host: Option<usize>,
    pub action: Action,
    /// Nodes that must have succeeded first.
    pub deps: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub recipe: Recipe,
    pub stage: String,
    pub release: ReleaseInfo,
    pub hosts: Vec<PlanHost>,
    pub steps: Vec<Step>,
    /// In an order where every node comes after its deps.
    pub nodes: Vec<Node>,
    /// Host indexes per publish batch, in order (canary first).
    pub batches: Vec<Vec<usize>>,
}

impl Plan {
    pub fn nodes_of_step(&self, step: usize) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.step == Some(step))
    }

    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    pub fn phase_of(&self, node: usize) -> Option<Phase> {
        self.nodes[node].step.map(|s| self.steps[s].phase)
    }
}
