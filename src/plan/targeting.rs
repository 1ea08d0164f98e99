//! Where a task runs: the one function every caller uses (the deploy's
//! planner, the undo of a failed publish, rollback, `shipit run`, `plan`).
//!
//! The hosts given are already the stage's hosts after `--hosts`/`--roles`.
//! A task runs on those with one of its roles (a task without roles on all
//! of them), only on the first of them with `once: true`, and with
//! `local: true` once on the machine running shipit instead, rendered with
//! the first selected host's context.

use crate::config::{Host, Task};

/// Where one task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Once, on the machine running shipit.
    Local,
    /// On these hosts (indexes into the hosts given), in stage order;
    /// empty when no selected host has one of the task's roles.
    Hosts(Vec<usize>),
}

impl Targets {
    /// Whether host `i` runs the task.
    pub fn on_host(&self, i: usize) -> bool {
        matches!(self, Targets::Hosts(v) if v.contains(&i))
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Targets::Local)
    }

    /// Whether the task runs anywhere at all.
    pub fn is_empty(&self) -> bool {
        matches!(self, Targets::Hosts(v) if v.is_empty())
    }
}

/// Where `task` runs among `hosts`.
pub fn targets(task: &Task, hosts: &[&Host]) -> Targets {
    if task.local {
        return if hosts.is_empty() {
            Targets::Hosts(Vec::new())
        } else {
            Targets::Local
        };
    }
    let matching = (0..hosts.len()).filter(|&i| hosts[i].has_any_role(&task.roles));
    Targets::Hosts(if task.once {
        matching.take(1).collect()
    } else {
        matching.collect()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::model::{Host, Task, TransportKind};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn host(name: &str, roles: &[&str]) -> Host {
        Host {
            name: name.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            transport: TransportKind::Ssh,
            deploy_to: "/srv/app".into(),
            user: None,
            port: None,
            vars: BTreeMap::new(),
            env: Vec::new(),
        }
    }

    /// A task `t` with these roles, `once` and `local`, for tests.
    pub(crate) fn task(roles: &[&str], once: bool, local: bool) -> Task {
        Task {
            name: "t".into(),
            after: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            once,
            local,
            run: "true".into(),
            retries: 0,
            interval: Duration::from_secs(1),
            timeout: None,
            http: None,
        }
    }

    #[test]
    fn roles_once_and_local_decide() {
        let hs = [host("a", &["app"]), host("b", &["db"]), host("c", &["app"])];
        let hosts: Vec<&Host> = hs.iter().collect();
        // (roles, once, local) -> targets
        let cases: &[(&[&str], bool, bool, Targets)] = &[
            (&["app"], false, false, Targets::Hosts(vec![0, 2])),
            (&["app"], true, false, Targets::Hosts(vec![0])),
            (&["db"], true, false, Targets::Hosts(vec![1])),
            (&[], false, false, Targets::Hosts(vec![0, 1, 2])),
            (&["web"], false, false, Targets::Hosts(vec![])),
            (&["app"], false, true, Targets::Local),
            (&["app"], true, true, Targets::Local),
        ];
        for (roles, once, local, want) in cases {
            assert_eq!(
                &targets(&task(roles, *once, *local), &hosts),
                want,
                "{roles:?} once={once} local={local}"
            );
        }
        assert_eq!(
            targets(&task(&["app"], false, true), &[]),
            Targets::Hosts(vec![])
        );
        assert!(Targets::Local.is_local() && !Targets::Local.on_host(0));
    }
}
