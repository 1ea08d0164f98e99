//! Plans of one step per host, for the commands that work on a stage
//! outside a deploy: `check`, `releases`, `history`, `lock`, `unlock`,
//! `approve`, `exec` and `run`. Each host's script is independent of the
//! others' (no dependencies, no phases, no batches), so the executor runs
//! them all at once, `-j` at a time. Pure: no I/O.

use std::time::Duration;

use super::graph::{Node, Plan, PlanHost, Recipe};
use super::release::ReleaseInfo;
use super::step::{Action, Phase, Step, StepKind};
use crate::config::{Host, Task};

/// How long one of the reading scripts (`check`, `releases`, `lock`, ...)
/// may run on a host. They only read a few files or make a dir: a host
/// that takes longer is not answering.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the step is and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStep {
    pub recipe: Recipe,
    pub stage: String,
    /// The step's name in events: `preflight`, `releases`, `exec`, ...
    pub name: String,
    pub timeout: Duration,
    /// The command's output is the point (`exec`, `run`).
    pub output: bool,
}

/// Where a node runs: on host `i` of the plan's hosts, or on the machine
/// running shipit (a `local: true` task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Host(usize),
    Local,
}

/// A plan of `step` with one node per `(target, script)`; `hosts` are the
/// plan's hosts (index `i` of [`Target::Host`]). A host with no script has
/// no node. The plan creates no release: its release id is empty, so the
/// executor never writes a stop flag under a host's `deploy_to`.
pub fn plan(step: &HostStep, hosts: &[&Host], scripts: Vec<(Target, String)>) -> Plan {
    let nodes = scripts
        .into_iter()
        .map(|(target, script)| Node {
            step: Some(0),
            host: match target {
                Target::Host(i) => Some(i),
                Target::Local => None,
            },
            action: Action::Shell(script),
            deps: Vec::new(),
        })
        .collect();
    Plan {
        recipe: step.recipe,
        stage: step.stage.clone(),
        release: ReleaseInfo {
            id: Default::default(),
            commit: Default::default(),
            reference: String::new(),
            user: String::new(),
            application: String::new(),
            stage: step.stage.clone().into(),
            build_url: None,
            digest: None,
            commit_time: None,
        },
        hosts: hosts
            .iter()
            .map(|h| PlanHost {
                name: h.name.clone(),
                roles: h.roles.clone(),
                transport: h.transport,
                deploy_to: h.deploy_to.clone(),
                // The scripts come ready-made, built with the config's
                // `current_path`; nothing here reads this.
                current: crate::config::DEFAULT_CURRENT_PATH.to_string(),
            })
            .collect(),
        steps: vec![Step {
            name: step.name.clone(),
            kind: StepKind::Builtin,
            phase: Phase::Staging,
            local: false,
            always: false,
            timeout: step.timeout,
            output: step.output,
            quiet: false,
        }],
        nodes,
        batches: Vec::new(),
    }
}

/// The same script on every host: `script(i)` for host `i`.
pub fn on_every_host(step: &HostStep, hosts: &[&Host], script: impl Fn(usize) -> String) -> Plan {
    let scripts = (0..hosts.len())
        .map(|i| (Target::Host(i), script(i)))
        .collect();
    plan(step, hosts, scripts)
}

/// The hosts (indexes into `hosts`) whose context a task runs with
/// outside a deploy (`shipit run`), as [`super::targeting::targets`]
/// decides: a local task runs once on this machine with the first host's
/// context, so it is `[0]`.
pub fn targets(task: &Task, hosts: &[&Host]) -> Vec<usize> {
    match super::targeting::targets(task, hosts) {
        super::targeting::Targets::Local => vec![0],
        super::targeting::Targets::Hosts(v) => v,
    }
}

/// The node of host `h`, if it has one.
pub fn node_of(plan: &Plan, h: usize) -> Option<usize> {
    plan.nodes.iter().position(|n| n.host == Some(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TransportKind;
    use crate::plan::targeting::tests::task;

    fn host(name: &str) -> Host {
        Host {
            name: name.into(),
            roles: vec!["app".into()],
            transport: TransportKind::Ssh,
            deploy_to: format!("/srv/{name}"),
            user: None,
            port: None,
            vars: Default::default(),
            env: Vec::new(),
        }
    }

    fn step() -> HostStep {
        HostStep {
            recipe: Recipe::Check,
            stage: "staging".into(),
            name: "preflight".into(),
            timeout: SCRIPT_TIMEOUT,
            output: false,
        }
    }

    #[test]
    fn one_independent_node_per_host_and_no_release() {
        let hs = [host("a"), host("b")];
        let hosts: Vec<&Host> = hs.iter().collect();
        let p = on_every_host(&step(), &hosts, |i| format!("echo {i}"));
        assert_eq!(p.recipe, Recipe::Check);
        assert_eq!(p.release.id, "");
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].name, "preflight");
        assert_eq!(p.nodes.len(), 2);
        for (i, n) in p.nodes.iter().enumerate() {
            assert_eq!(n.host, Some(i));
            assert!(n.deps.is_empty());
            assert_eq!(n.action, Action::Shell(format!("echo {i}")));
        }
        assert_eq!(p.hosts[1].deploy_to, "/srv/b");
        assert!(p.batches.is_empty());
    }

    fn host_with(name: &str, roles: &[&str]) -> Host {
        Host {
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..host(name)
        }
    }

    #[test]
    fn targets_follow_roles_once_and_local() {
        let hs = [
            host_with("a", &["app"]),
            host_with("b", &["db"]),
            host_with("c", &["app", "db"]),
        ];
        let hosts: Vec<&Host> = hs.iter().collect();
        assert_eq!(targets(&task(&[], false, false), &hosts), vec![0, 1, 2]);
        assert_eq!(targets(&task(&["db"], false, false), &hosts), vec![1, 2]);
        assert_eq!(targets(&task(&["db"], true, false), &hosts), vec![1]);
        assert_eq!(targets(&task(&["db"], false, true), &hosts), vec![0]);
        assert!(targets(&task(&["web"], false, false), &hosts).is_empty());
    }

    #[test]
    fn hosts_without_a_script_have_no_node_and_local_work_has_no_host() {
        let hs = [host("a"), host("b"), host("c")];
        let hosts: Vec<&Host> = hs.iter().collect();
        let p = plan(
            &step(),
            &hosts,
            vec![(Target::Host(2), "x".into()), (Target::Local, "y".into())],
        );
        assert_eq!(node_of(&p, 2), Some(0));
        assert_eq!(node_of(&p, 0), None);
        assert_eq!(p.nodes[1].host, None);
    }
}
