//! The deploy lock protocol: take `.shipit/lock` on every host of the run
//! or on none, and free it on every path out.
//!
//! The lock is taken on the plan's first host first, and only when that
//! worked on the others (at once): every run takes a stage's hosts in the
//! same order, so of two runs started together exactly one proceeds and the
//! other touches no further host. A lock held by someone else ends the run
//! (exit 4) naming holder, time and message — or, with `--wait-lock`, the
//! run frees what it took and polls until the deadline. A stale lock (its
//! holder's process is gone, or older than `--lock-ttl`) is reported with
//! the exact commands that repair the fleet, including where a killed run
//! left hosts on different releases. A lock that a run certainly gone
//! (this machine and container saw its process end: see
//! [`crate::process`]; never a lock taken with `shipit lock`) holds on
//! every host, as a run killed mid-way leaves it, is taken over instead:
//! freed with its own token, once, with a notice saying whose it was and
//! where that run left the hosts; the deploy then brings every host to its
//! release. Each lock step also reports where
//! `current` pointed ([`Before`]) and which releases exist, from which the
//! run mints its release id.

use std::time::{Duration, Instant};

use super::event::Event;
use super::executor::{Executor, NodeResult, RunReport};
use super::fleet::RunCtx;
use crate::lock::{holder_seen, LockHolder};
use crate::plan::commands::{self, HostPaths, LOCKED_STATUS};
use crate::plan::inspect;
use crate::plan::queue::NodeState;
use crate::plan::{Phase, Plan};
use crate::process::Seen;

/// A host's state after step `step` failed: `failed at build: exit 2`.
pub fn failed_state(step: &str, r: Option<&NodeResult>) -> String {
    let why = r
        .and_then(|r| r.reason.clone())
        .unwrap_or_else(|| "failed".to_string());
    format!("failed at {step}: {why}")
}

/// Undo and unlock get their own time limit, separate from the steps'.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where each host stood before this run, from its lock step.
#[derive(Debug, Clone, Default)]
pub struct Before {
    pub current: Option<String>,
    pub commit: Option<String>,
    /// Everything the lock step read, when this run took the lock.
    pub found: Option<commands::LockReport>,
}

/// How often a deploy with `--wait-lock` tries the lock again.
pub const LOCK_POLL: Duration = Duration::from_secs(2);

pub type LockOutcome = (
    Vec<bool>,
    Vec<Before>,
    Vec<String>,
    Vec<(usize, LockHolder)>,
    bool,
);

/// Takes the lock on the plan's first host, and only when that worked on
/// the others (at once): every run takes the stage's hosts in the same
/// order, so of two runs started together exactly one gets the first host
/// and the other touches no further host, instead of each taking some and
/// both being refused. Also says which hosts were tried.
pub async fn lock_in_order(
    exec: &Executor,
    lock_plan: &Plan,
    states: &mut [Option<String>],
    ctx: &RunCtx<'_>,
) -> (LockOutcome, Vec<bool>) {
    let n_hosts = lock_plan.hosts.len();
    let prepare = |n: usize| lock_plan.phase_of(n) == Some(Phase::Prepare);
    let first = |n: usize| lock_plan.nodes[n].host == Some(0);
    let report = exec.run(lock_plan, |n| prepare(n) && first(n), 0).await;
    let mut got = collect_locks(lock_plan, &report, states, ctx, |h| h == 0);
    if got.4 || n_hosts < 2 || exec.interrupted() {
        let tried = (0..n_hosts).map(|h| h == 0).collect();
        return (got, tried);
    }
    let report = exec.run(lock_plan, |n| prepare(n) && !first(n), 0).await;
    let rest = collect_locks(lock_plan, &report, states, ctx, |h| h != 0);
    for h in 1..n_hosts {
        got.0[h] = rest.0[h];
        got.1[h] = rest.1[h].clone();
    }
    got.2.extend(rest.2);
    got.3.extend(rest.3);
    got.4 |= rest.4;
    (got, vec![true; n_hosts])
}

/// What to say after a deploy was refused by a stale lock (its run is
/// gone, killed mid-way): free it, and, when that run left the hosts on
/// different releases (a half-switched fleet), which host is on which and
/// the command that makes them agree again. Hosts whose lock step did not
/// say where `current` is are asked (read only).
pub async fn stale_lock_repair(exec: &Executor, plan: &Plan, before: &[Before]) -> String {
    let currents = known_currents(exec, plan, before).await;
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    repair_advice(&plan.stage, &names, &currents)
}

/// The repair sentence of [`stale_lock_repair`], from each host's current
/// release (`None`: none, or not known).
pub fn repair_advice(stage: &str, hosts: &[&str], currents: &[Option<String>]) -> String {
    let mut groups: Vec<(Option<&str>, Vec<&str>)> = Vec::new();
    for (host, c) in hosts.iter().zip(currents) {
        match groups.iter_mut().find(|(g, _)| *g == c.as_deref()) {
            Some((_, hs)) => hs.push(host),
            None => groups.push((c.as_deref(), vec![host])),
        }
    }
    let unlock = format!("`shipit unlock {stage}`");
    if groups.len() < 2 {
        return format!("; the run that held it is gone: free it with {unlock}, then deploy again");
    }
    // Release ids sort by time: the oldest is where the fleet came from.
    groups.sort_by(|a, b| b.0.cmp(&a.0));
    let where_ = groups
        .iter()
        .map(|(c, hs)| format!("{} on {}", c.unwrap_or("no release"), hs.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    let back = groups
        .iter()
        .filter_map(|(c, _)| *c)
        .next_back()
        .filter(|_| groups.iter().all(|(c, _)| c.is_some()))
        .map(|oldest| {
            format!(", or `shipit rollback {stage} --to {oldest} --force` to put every host back on {oldest}")
        })
        .unwrap_or_default();
    format!(
        "; the run that held it is gone and left the hosts on different releases ({where_}): \
         free the lock with {unlock}, then run `shipit deploy {stage}` to bring every host to a new release{back}"
    )
}

/// Takes over the lock of a run that is gone, when that run held it on
/// every host of `plan`: what a run killed mid-way leaves (a run that
/// ended freed it wherever it could, so a lock left on some hosts only
/// marks hosts that need a person, and stays). Frees it on each host with
/// its own token (a lock taken meanwhile by someone else stays), and says
/// whose it was and where that run left the hosts. `None` when it is not
/// such a lock.
async fn take_over(exec: &Executor, plan: &Plan, got: &LockOutcome) -> Option<String> {
    let (_, before, _, holders, _) = got;
    let dead = &holders.first()?.1;
    let token = dead.token.as_str();
    let unknown = (0..plan.hosts.len()).filter(|h| !holders.iter().any(|(x, _)| x == h));
    let reads = unknown.map(|h| async move {
        let script = inspect::lock_state(&HostPaths::of_plan(&plan.hosts[h]));
        let r = exec
            .run_on(
                h,
                &plan.hosts[h].name,
                "lock_state",
                &script,
                CLEANUP_TIMEOUT,
            )
            .await;
        r.output
            .filter(|o| o.success())
            .and_then(|o| LockHolder::from_stderr(&lock_info(&o.stdout_str())))
    });
    let others = futures::future::join_all(reads).await;
    let everywhere = holders.iter().all(|(_, h)| h.token == token)
        && others
            .iter()
            .all(|h| h.as_ref().is_some_and(|h| h.token == token));
    if !everywhere {
        return None;
    }
    let frees = (0..plan.hosts.len()).map(|h| async move {
        let script = commands::unlock(&HostPaths::of_plan(&plan.hosts[h]), token);
        let r = exec
            .run_on(
                h,
                &plan.hosts[h].name,
                "free_stale_lock",
                &script,
                CLEANUP_TIMEOUT,
            )
            .await;
        (h, r.ok)
    });
    let freed = futures::future::join_all(frees).await;
    let not_freed: Vec<String> = freed
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(h, _)| format!("`{}`", plan.hosts[*h].name))
        .collect();
    let not_freed = if not_freed.is_empty() {
        String::new()
    } else {
        format!(" (not on {})", not_freed.join(", "))
    };
    let currents = known_currents(exec, plan, before).await;
    let hosts: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    let left = match where_hosts_are(&hosts, &currents) {
        Some(w) => format!("; it left the hosts on different releases ({w})"),
        None => String::new(),
    };
    Some(format!(
        "every host was locked by a run that is gone ({}): freed{not_freed}{left}",
        dead.describe()
    ))
}

/// The holder record in `lock_state.sh`'s output (its `lockinfo:` lines).
fn lock_info(stdout: &str) -> String {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("lockinfo:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where `current` points on each host: from the lock step, else read.
async fn known_currents(exec: &Executor, plan: &Plan, before: &[Before]) -> Vec<Option<String>> {
    let mut currents: Vec<Option<String>> = before.iter().map(|b| b.current.clone()).collect();
    let probes = (0..plan.hosts.len())
        .filter(|&h| currents[h].is_none())
        .map(|h| async move {
            let p = HostPaths::of_plan(&plan.hosts[h]);
            let r = exec
                .run_on(
                    h,
                    &plan.hosts[h].name,
                    "read_current",
                    &commands::read_current(&p),
                    CLEANUP_TIMEOUT,
                )
                .await;
            let current = r
                .output
                .filter(|o| o.success())
                .and_then(|o| commands::parse_lock_output(&o.stdout_str()).current);
            (h, current)
        });
    for (h, c) in futures::future::join_all(probes).await {
        currents[h] = c;
    }
    currents
}

/// `B on web-1; A on web-2, web-3` when the hosts are on different
/// releases (newest first), else `None`.
fn where_hosts_are(hosts: &[&str], currents: &[Option<String>]) -> Option<String> {
    let mut groups: Vec<(Option<&str>, Vec<&str>)> = Vec::new();
    for (host, c) in hosts.iter().zip(currents) {
        match groups.iter_mut().find(|(g, _)| *g == c.as_deref()) {
            Some((_, hs)) => hs.push(host),
            None => groups.push((c.as_deref(), vec![host])),
        }
    }
    if groups.len() < 2 {
        return None;
    }
    groups.sort_by(|a, b| b.0.cmp(&a.0));
    Some(
        groups
            .iter()
            .map(|(c, hs)| format!("{} on {}", c.unwrap_or("no release"), hs.join(", ")))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Reads the lock step's results: which hosts this run locked, where each
/// stood, the releases already there, who holds the others.
pub fn collect_locks(
    lock_plan: &Plan,
    report: &RunReport,
    states: &mut [Option<String>],
    ctx: &RunCtx<'_>,
    tried: impl Fn(usize) -> bool,
) -> LockOutcome {
    let (res, queue) = (&report.results, &report.queue);
    let n_hosts = lock_plan.hosts.len();
    let mut locked = vec![false; n_hosts];
    let mut before: Vec<Before> = vec![Before::default(); n_hosts];
    let mut existing: Vec<String> = Vec::new();
    let mut holders: Vec<(usize, LockHolder)> = Vec::new();
    let mut lock_failed = false;
    for (n, node) in lock_plan.nodes.iter().enumerate() {
        let (Some(h), Some(Phase::Prepare)) = (node.host, lock_plan.phase_of(n)) else {
            continue;
        };
        if !tried(h) {
            continue;
        }
        match (&res[n], queue.state(n)) {
            (Some(r), NodeState::Done) => {
                locked[h] = true;
                let rep = commands::parse_lock_output(
                    &r.output
                        .as_ref()
                        .map(|o| o.stdout_str())
                        .unwrap_or_default(),
                );
                existing.extend(rep.releases.iter().cloned());
                before[h] = Before {
                    current: rep.current.clone(),
                    commit: rep.current_commit.clone(),
                    found: Some(rep),
                };
            }
            (r, _) => {
                lock_failed = true;
                let out = r.as_ref().and_then(|r| r.output.as_ref());
                if let Some(o) = out.filter(|o| o.status == Some(LOCKED_STATUS)) {
                    // A held lock's script still says where `current` is.
                    let rep = commands::parse_lock_output(&o.stdout_str());
                    before[h] = Before {
                        current: rep.current,
                        commit: rep.current_commit,
                        found: None,
                    };
                    match LockHolder::from_stderr(&o.stderr_str()) {
                        Some(holder) => {
                            states[h] = Some(format!(
                                "locked by {}",
                                holder.describe_checked(&ctx.staleness, holder_seen)
                            ));
                            holders.push((h, holder));
                        }
                        None => states[h] = Some("locked (no holder record)".into()),
                    }
                } else if states[h].is_none() {
                    states[h] = Some(failed_state("lock", r.as_ref()));
                }
            }
        }
    }
    (locked, before, existing, holders, lock_failed)
}

/// Frees the lock on every host where this run took it.
pub async fn unlock(exec: &Executor, plan: &Plan, locked: &[bool]) {
    let Some(si) = plan.step_index("unlock") else {
        return;
    };
    let mut jobs = Vec::new();
    for (_, node) in plan.nodes_of_step(si) {
        let Some(h) = node.host else { continue };
        if locked[h] {
            jobs.push(exec.run_on(
                h,
                &plan.hosts[h].name,
                "unlock",
                node.action.script(),
                CLEANUP_TIMEOUT,
            ));
        }
    }
    futures::future::join_all(jobs).await;
}

/// What taking the lock on every host found.
pub struct Locks {
    /// Hosts this run locked.
    pub locked: Vec<bool>,
    /// Where each host stood.
    pub before: Vec<Before>,
    /// Release ids already on the hosts.
    pub existing: Vec<String>,
    /// Hosts whose lock someone else holds, and who.
    pub holders: Vec<(usize, LockHolder)>,
    /// Not every host could be locked.
    pub failed: bool,
}

/// Takes the lock on every host of `plan` (its `Prepare` nodes), first
/// host first; with `wait_lock`, frees what it took and tries again every
/// [`LOCK_POLL`] while the only obstacle is a lock someone else holds,
/// until the deadline or an interrupt.
pub async fn acquire(
    exec: &Executor,
    plan: &Plan,
    states: &mut [Option<String>],
    ctx: &RunCtx<'_>,
    wait_lock: Option<Duration>,
) -> Locks {
    let n_hosts = plan.hosts.len();
    let lock_plan = plan.clone();
    let deadline = wait_lock.map(|d| Instant::now() + d);
    let mut shutdown = ctx.shutdown.clone();
    let mut waited = false;
    let mut took_over = false;
    let (locked, before, existing, holders, failed) = loop {
        for s in states.iter_mut() {
            if s.as_deref().is_some_and(|x| x.starts_with("locked")) {
                *s = None;
            }
        }
        let (got, tried) = lock_in_order(exec, &lock_plan, states, ctx).await;
        let (locked, _, _, holders, failed) = &got;
        let only_held = *failed
            && !holders.is_empty()
            && (0..n_hosts).all(|h| !tried[h] || locked[h] || holders.iter().any(|(x, _)| *x == h));
        let dead = |h: &LockHolder| !h.taken_by_hand() && holder_seen(h) == Seen::Gone;
        if only_held && !took_over && !exec.interrupted() && dead(&holders[0].1) {
            if let Some(note) = take_over(exec, plan, &got).await {
                took_over = true;
                unlock(exec, plan, locked).await;
                exec.events().send(Event::Notice(note));
                continue;
            }
        }
        match deadline {
            Some(d) if only_held && Instant::now() < d && !exec.interrupted() => {
                unlock(exec, plan, locked).await;
                if !waited {
                    let (h, holder) = &holders[0];
                    exec.events().send(Event::Notice(format!(
                        "stage `{}` is locked on `{}` by {}; waiting for it (--wait-lock)",
                        plan.stage,
                        plan.hosts[*h].name,
                        holder.describe()
                    )));
                    waited = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(LOCK_POLL) => {}
                    _ = shutdown.changed() => {}
                }
            }
            _ => break got,
        }
    };
    Locks {
        locked,
        before,
        existing,
        holders,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_hosts_are_is_said_only_when_they_differ() {
        let (a, b) = ("20261120T080000Z", "20261124T190102Z");
        let hosts = ["w1", "w2", "w3"];
        let some = |v: &[Option<&str>]| v.iter().map(|c| c.map(str::to_string)).collect::<Vec<_>>();
        let cases: &[(&[Option<&str>], Option<&str>)] = &[
            (&[Some(a), Some(a), Some(a)], None),
            (
                &[Some(b), Some(a), Some(a)],
                Some("20261124T190102Z on w1; 20261120T080000Z on w2, w3"),
            ),
            (
                &[None, Some(a), Some(b)],
                Some("20261124T190102Z on w3; 20261120T080000Z on w2; no release on w1"),
            ),
        ];
        for (currents, want) in cases {
            assert_eq!(
                where_hosts_are(&hosts, &some(currents)).as_deref(),
                *want,
                "{currents:?}"
            );
        }
    }

    #[test]
    fn repair_advice_names_where_a_killed_run_left_each_host() {
        let (a, b) = ("20261120T080000Z", "20261124T190102Z");
        // (currents, what the advice says)
        let cases: &[(&[Option<&str>], &str)] = &[
            (
                &[Some(a), Some(a)],
                "; the run that held it is gone: free it with `shipit unlock s`, then deploy again",
            ),
            (
                &[Some(b), Some(a)],
                "; the run that held it is gone and left the hosts on different releases (20261124T190102Z on h1; 20261120T080000Z on h2): free the lock with `shipit unlock s`, then run `shipit deploy s` to bring every host to a new release, or `shipit rollback s --to 20261120T080000Z --force` to put every host back on 20261120T080000Z",
            ),
            (
                &[Some(b), None],
                "; the run that held it is gone and left the hosts on different releases (20261124T190102Z on h1; no release on h2): free the lock with `shipit unlock s`, then run `shipit deploy s` to bring every host to a new release",
            ),
        ];
        for (currents, want) in cases {
            let currents: Vec<Option<String>> =
                currents.iter().map(|c| c.map(str::to_string)).collect();
            assert_eq!(repair_advice("s", &["h1", "h2"], &currents), *want);
        }
    }

    #[test]
    fn a_failed_step_says_where_and_why() {
        assert_eq!(failed_state("build", None), "failed at build: failed");
        let r = NodeResult {
            ok: false,
            output: None,
            reason: Some("exit 2".into()),
            duration: Duration::ZERO,
        };
        assert_eq!(failed_state("build", Some(&r)), "failed at build: exit 2");
    }
}
