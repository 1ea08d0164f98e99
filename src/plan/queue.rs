//! Which nodes may run now: Cargo's `DependencyQueue` shape (queue,
//! dequeue, finish -> newly ready), with failure propagation.

use std::collections::VecDeque;

use super::graph::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Waiting,
    Ready,
    Running,
    Done,
    Failed,
    /// Not run because a dependency failed or was skipped.
    Skipped,
}

#[derive(Debug, Clone)]
pub struct Queue {
    missing: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    state: Vec<NodeState>,
    ready: VecDeque<usize>,
    /// Barriers between phases and batches (they do no work).
    barrier: Vec<bool>,
}

impl Queue {
    /// A queue over `plan`'s nodes; `include(node)` false leaves a node out
    /// (it never runs, and does not hold up its dependents).
    pub fn new(plan: &Plan, include: impl Fn(usize) -> bool) -> Self {
        let n = plan.nodes.len();
        let mut q = Queue {
            missing: vec![0; n],
            dependents: vec![Vec::new(); n],
            state: vec![NodeState::Waiting; n],
            ready: VecDeque::new(),
            barrier: plan.nodes.iter().map(|x| x.step.is_none()).collect(),
        };
        for (i, node) in plan.nodes.iter().enumerate() {
            if !include(i) {
                q.state[i] = NodeState::Skipped;
                continue;
            }
            for &d in &node.deps {
                if include(d) {
                    q.missing[i] += 1;
                    q.dependents[d].push(i);
                }
            }
        }
        for i in 0..n {
            if q.state[i] == NodeState::Waiting && q.missing[i] == 0 {
                q.state[i] = NodeState::Ready;
                q.ready.push_back(i);
            }
        }
        q
    }

    /// The next node to run, if any is ready.
    pub fn dequeue(&mut self) -> Option<usize> {
        let i = self.ready.pop_front()?;
        self.state[i] = NodeState::Running;
        Some(i)
    }

    /// Marks `node` finished. On success its dependents may become ready;
    /// on failure every node depending on it, directly or not, is skipped.
    /// Returns the nodes skipped by this call.
    pub fn finish(&mut self, node: usize, ok: bool) -> Vec<usize> {
        if ok {
            self.state[node] = NodeState::Done;
            for k in 0..self.dependents[node].len() {
                let d = self.dependents[node][k];
                self.missing[d] -= 1;
                if self.missing[d] == 0 && self.state[d] == NodeState::Waiting {
                    self.state[d] = NodeState::Ready;
                    self.ready.push_back(d);
                }
            }
            return Vec::new();
        }
        self.state[node] = NodeState::Failed;
        self.skip_dependents(node)
    }

    fn skip_dependents(&mut self, node: usize) -> Vec<usize> {
        let mut skipped = Vec::new();
        let mut stack = self.dependents[node].clone();
        while let Some(d) = stack.pop() {
            if matches!(self.state[d], NodeState::Waiting | NodeState::Ready) {
                self.state[d] = NodeState::Skipped;
                self.ready.retain(|&r| r != d);
                skipped.push(d);
                stack.extend(self.dependents[d].iter().copied());
            }
        }
        skipped.sort_unstable();
        skipped
    }

    /// Stops everything not yet started (an interrupt); returns those nodes.
    pub fn cancel_pending(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, s) in self.state.iter_mut().enumerate() {
            if matches!(s, NodeState::Waiting | NodeState::Ready) {
                *s = NodeState::Skipped;
                out.push(i);
            }
        }
        self.ready.clear();
        out
    }

    pub fn dependents(&self, node: usize) -> &[usize] {
        &self.dependents[node]
    }

    /// Claims a waiting node whose only unfinished dependency is running in
    /// the same batch of work (a chain of one host's steps): it counts as
    /// running from now on and is finished with the rest of the chain.
    pub fn claim(&mut self, node: usize) {
        debug_assert_eq!(self.state[node], NodeState::Waiting);
        self.state[node] = NodeState::Running;
    }

    /// A claimed node that never ran because the chain stopped before it:
    /// it and everything after it is skipped. Returns what was skipped.
    pub fn skip(&mut self, node: usize) -> Vec<usize> {
        self.state[node] = NodeState::Skipped;
        let mut out = vec![node];
        out.extend(self.skip_dependents(node));
        out
    }

    /// A failure the run tolerates (`max_failures`): the node is failed and
    /// the rest of its host's work skipped, but barriers count it as
    /// finished, so other hosts and later batches go on.
    pub fn finish_tolerated(&mut self, node: usize) -> Vec<usize> {
        self.state[node] = NodeState::Failed;
        self.release_tolerantly(node)
    }

    /// Skips a node (waiting, ready or claimed) the way a tolerated failure
    /// does: barriers after it are not held up.
    pub fn skip_tolerated(&mut self, node: usize) -> Vec<usize> {
        self.state[node] = NodeState::Skipped;
        self.ready.retain(|&r| r != node);
        let mut out = vec![node];
        out.extend(self.release_tolerantly(node));
        out
    }

    fn release_tolerantly(&mut self, node: usize) -> Vec<usize> {
        let mut skipped = Vec::new();
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            for k in 0..self.dependents[n].len() {
                let d = self.dependents[n][k];
                if self.barrier[d] {
                    self.missing[d] -= 1;
                    if self.missing[d] == 0 && self.state[d] == NodeState::Waiting {
                        self.state[d] = NodeState::Ready;
                        self.ready.push_back(d);
                    }
                } else if matches!(self.state[d], NodeState::Waiting | NodeState::Ready) {
                    self.state[d] = NodeState::Skipped;
                    self.ready.retain(|&r| r != d);
                    skipped.push(d);
                    stack.push(d);
                }
            }
        }
        skipped
    }

    pub fn state(&self, node: usize) -> NodeState {
        self.state[node]
    }

    /// True when nothing is ready or running.
    pub fn is_idle(&self) -> bool {
        self.ready.is_empty() && !self.state.contains(&NodeState::Running)
    }
}
