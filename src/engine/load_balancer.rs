//! A stage's load balancer during the undo of a deploy: which hosts are out
//! of the pool, and taking hosts out and back around a switch back.
//!
//! Protocol (the deploy's plan does the same for its publish, with its
//! `drain` and `undrain` nodes):
//!
//! 1. After the executor's run, a host is **out of the pool** when its
//!    `drain` started (it succeeded, or it broke off part way) and its
//!    `undrain` did not succeed: its publish failed, or the run stopped
//!    before its turn came back.
//! 2. Hosts going back go batch by batch (the plan's publish batches), so
//!    the pool never loses more hosts at once than the rollout allows:
//!    each host of a batch is drained (then `wait`), switched back and
//!    restarted, smoke-tested (an `http:` smoke test from here), and
//!    undrained only when all of that passed.
//! 3. A host whose way back fails stays out of the pool, and the summary
//!    says so. Without a load balancer, all go back at once, as before.
//! 4. A host drained but never switched nor failed (the run stopped after
//!    its drain, before its publish) goes back into the pool: it still
//!    serves the release it served.
//!
//! The commands are the ones the plan rendered for the publish phase
//! (`Phase::Publish` nodes of steps `drain`, `undrain`, `smoke_test`).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use super::executor::{Executor, RunReport};
use crate::plan::queue::NodeState;
use crate::plan::{Action, Phase, Plan};

/// Which hosts are out of the load balancer's pool, kept up to date as the
/// undo drains and undrains them.
pub struct Pool<'p> {
    plan: &'p Plan,
    out: Mutex<BTreeSet<usize>>,
}

/// Host `h`'s node of publish step `step`, with the step's time limit.
fn planned<'p>(plan: &'p Plan, step: &str, h: usize) -> Option<(usize, &'p Action, Duration)> {
    plan.nodes.iter().enumerate().find_map(|(i, n)| {
        let s = &plan.steps[n.step?];
        (s.name == step && s.phase == Phase::Publish && n.host == Some(h))
            .then_some((i, &n.action, s.timeout))
    })
}

impl<'p> Pool<'p> {
    /// The pool as the executor's run left it.
    pub fn after_run(plan: &'p Plan, report: &RunReport) -> Pool<'p> {
        let out = (0..plan.hosts.len())
            .filter(|&h| {
                let state = |step| planned(plan, step, h).map(|(i, _, _)| report.queue.state(i));
                let drained = matches!(state("drain"), Some(NodeState::Done | NodeState::Failed));
                drained && state("undrain") != Some(NodeState::Done)
            })
            .collect();
        Pool {
            plan,
            out: Mutex::new(out),
        }
    }

    fn enabled(&self) -> bool {
        self.plan.step_index("drain").is_some()
    }

    /// Whether host `h` is out of the pool now.
    pub fn is_out(&self, h: usize) -> bool {
        self.out.lock().expect("not poisoned").contains(&h)
    }

    /// The hosts of `hosts` (indexes into the plan's hosts) grouped as
    /// they go back: one group without a load balancer, else by publish
    /// batch. Each group holds positions in `hosts`.
    pub fn groups(&self, hosts: &[usize]) -> Vec<Vec<usize>> {
        if !self.enabled() {
            return vec![(0..hosts.len()).collect()];
        }
        let mut groups: Vec<Vec<usize>> = self
            .plan
            .batches
            .iter()
            .map(|b| {
                (0..hosts.len())
                    .filter(|&k| b.contains(&hosts[k]))
                    .collect::<Vec<_>>()
            })
            .filter(|g| !g.is_empty())
            .collect();
        let grouped: BTreeSet<usize> = groups.iter().flatten().copied().collect();
        let rest: Vec<usize> = (0..hosts.len()).filter(|k| !grouped.contains(k)).collect();
        if !rest.is_empty() {
            groups.push(rest);
        }
        groups
    }

    /// Drains each of `hosts` (then waits), all at once. A host whose
    /// drain fails still goes back: it is on a release that failed, and
    /// it stays out of the pool afterwards only if its way back fails.
    pub async fn drain(&self, exec: &Executor, hosts: &[usize]) {
        if !self.enabled() {
            return;
        }
        futures::future::join_all(hosts.iter().map(|&h| self.run(exec, "drain", h))).await;
        self.out
            .lock()
            .expect("not poisoned")
            .extend(hosts.iter().copied());
    }

    /// For each host of `hosts` that is back (`back[k]`): the `http:` smoke
    /// test from here (when `check[k]`: a host with no previous release
    /// has nothing to check), then, with a load balancer, its undrain.
    /// Returns whether each host is back and healthy (a failed undrain
    /// leaves it healthy but out of the pool, which [`Pool::is_out`] then
    /// says).
    pub async fn check_and_undrain(
        &self,
        exec: &Executor,
        hosts: &[usize],
        back: Vec<bool>,
        check: &[bool],
    ) -> Vec<bool> {
        let each = hosts
            .iter()
            .zip(back)
            .zip(check)
            .map(|((&h, ok), &check)| self.check_and_undrain_one(exec, h, ok, check));
        futures::future::join_all(each).await
    }

    async fn check_and_undrain_one(
        &self,
        exec: &Executor,
        h: usize,
        back: bool,
        check: bool,
    ) -> bool {
        if !back {
            return false;
        }
        if let (true, Some((_, Action::Http { check, .. }, timeout))) =
            (check, planned(self.plan, "smoke_test", h))
        {
            // Only the check: the release it goes back to was verified
            // before.
            let action = Action::Http {
                check: check.clone(),
                then: String::new(),
            };
            let label = self.plan.hosts[h].name.to_string();
            if !exec
                .run_action(h, &label, "smoke_test", &action, timeout)
                .await
                .ok
            {
                return false;
            }
        }
        if self.enabled() && self.run(exec, "undrain", h).await {
            self.out.lock().expect("not poisoned").remove(&h);
        }
        true
    }

    /// Puts back the hosts of `hosts` that are out of the pool although
    /// this run never touched them (drained, then the run stopped before
    /// their switch): they still serve the release they served.
    pub async fn undrain_untouched(&self, exec: &Executor, hosts: &[usize]) {
        let out: Vec<usize> = hosts.iter().copied().filter(|&h| self.is_out(h)).collect();
        let done =
            futures::future::join_all(out.iter().map(|&h| self.run(exec, "undrain", h))).await;
        let mut pool = self.out.lock().expect("not poisoned");
        for (h, ok) in out.into_iter().zip(done) {
            if ok {
                pool.remove(&h);
            }
        }
    }

    async fn run(&self, exec: &Executor, step: &str, h: usize) -> bool {
        let Some((_, action, timeout)) = planned(self.plan, step, h) else {
            return true;
        };
        let label = self.plan.hosts[h].name.to_string();
        exec.run_action(h, &label, step, action, timeout).await.ok
    }

    /// What host `h`'s summary row adds when it is out of the pool.
    pub fn note(&self, h: usize) -> Option<&'static str> {
        self.is_out(h)
            .then_some("left drained: out of the load balancer's pool until someone undrains it")
    }

    /// The hosts out of the pool now.
    pub fn drained(&self) -> Vec<usize> {
        self.out
            .lock()
            .expect("not poisoned")
            .iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::queue::Queue;
    use crate::plan::{Node, PlanHost, Recipe, Step, StepKind};

    fn plan() -> Plan {
        let step = |name: &str| Step {
            name: name.into(),
            kind: StepKind::Builtin,
            phase: Phase::Publish,
            local: true,
            always: false,
            timeout: Duration::from_secs(1),
            quiet: false,
            output: false,
        };
        let host = |name: &str| PlanHost {
            name: name.into(),
            roles: vec![],
            transport: crate::config::TransportKind::Local,
            deploy_to: "/srv".into(),
            current: "current".into(),
        };
        let mut nodes = Vec::new();
        for h in 0..3 {
            for s in 0..2 {
                nodes.push(Node {
                    step: Some(s),
                    host: Some(h),
                    action: Action::Local("true".into()),
                    deps: Vec::new(),
                });
            }
        }
        Plan {
            recipe: Recipe::Deploy,
            stage: "s".into(),
            release: crate::plan::rollback::tests::rel("20261124T190102Z"),
            hosts: vec![host("a"), host("b"), host("c")],
            steps: vec![step("drain"), step("undrain")],
            nodes,
            batches: vec![vec![0], vec![1], vec![2]],
        }
    }

    #[test]
    fn a_host_is_out_when_drained_and_not_undrained() {
        let p = plan();
        let mut queue = Queue::new(&p, |_| true);
        // a: drained and undrained; b: drained, its undrain never ran;
        // c: never drained.
        for n in [0, 1, 2] {
            assert_eq!(queue.dequeue(), Some(n));
            queue.finish(n, true);
        }
        // b's undrain failed.
        assert_eq!(queue.dequeue(), Some(3));
        queue.finish(3, false);
        let report = RunReport {
            results: vec![None; p.nodes.len()],
            queue,
            tolerated: Vec::new(),
        };
        let pool = Pool::after_run(&p, &report);
        assert_eq!(pool.drained(), vec![1]);
        assert!(pool.note(1).is_some() && pool.note(0).is_none());
        assert_eq!(pool.groups(&[2, 0]), vec![vec![1], vec![0]]);
    }
}
