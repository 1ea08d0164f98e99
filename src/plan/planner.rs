//! From (config, stage, recipe) to the task graph. Pure: no I/O.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::cleanup;
use super::commands::{self, CheckSpec, HostPaths, LockReport};
use super::failure_hooks;
use super::graph::{Node, Plan, PlanHost, Recipe};
use super::host_step::Target;
use super::http_check::HttpCheck;
use super::release::ReleaseInfo;
use super::render::{self, RenderError};
use super::step::{builtin_phase, Action, Phase, Step, StepKind, BUILTIN_STEPS};
use super::targeting;
use crate::config::validate::LB_STEPS;
use crate::config::{Batch, Config, Host, HttpCheckSpec, LoadBalancer, Stage, Strategy, Task};
use crate::ledger::EventKind;
use crate::lock::LockHolder;

/// `--hosts` / `--roles`: which hosts of the stage the run touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub hosts: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("unknown stage `{stage}`, expected one of {known}")]
    UnknownStage { stage: String, known: String },
    #[error("no host `{host}` in stage `{stage}` (given in --hosts)")]
    UnknownHost { host: String, stage: String },
    #[error("no host of stage `{stage}` has role `{role}` (given in --roles)")]
    UnknownRole { role: String, stage: String },
    #[error("no host of stage `{stage}` is left after --hosts/--roles")]
    NoHosts { stage: String },
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// Everything the planner needs; the world is passed in.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub config: &'a Config,
    pub stage: &'a str,
    pub recipe: Recipe,
    pub release: &'a ReleaseInfo,
    pub filters: &'a Filters,
    pub env: &'a BTreeMap<String, String>,
    pub holder: &'a LockHolder,
    /// What the lock step read on each host, by host name: the deploy
    /// decides its cleanup from it. `None` before the lock (`shipit plan`):
    /// the cleanup step then only says how it will be decided.
    pub host_state: Option<&'a BTreeMap<String, LockReport>>,
}

const SHORT: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(600);

/// The hosts of `stage` that pass the filters, in stage order.
pub fn select_hosts<'c>(
    config: &'c Config,
    stage: &str,
    filters: &Filters,
) -> Result<(&'c Stage, Vec<&'c Host>), PlanError> {
    let st = config.stage(stage).ok_or_else(|| PlanError::UnknownStage {
        stage: stage.to_string(),
        known: config
            .stages
            .iter()
            .map(|s| format!("`{}`", s.name))
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    for h in &filters.hosts {
        if !st.hosts.iter().any(|x| &x.name == h) {
            return Err(PlanError::UnknownHost {
                host: h.clone(),
                stage: stage.to_string(),
            });
        }
    }
    for r in &filters.roles {
        if !st.hosts.iter().any(|x| x.roles.contains(r)) {
            return Err(PlanError::UnknownRole {
                role: r.clone(),
                stage: stage.to_string(),
            });
        }
    }
    let hosts: Vec<&Host> = st
        .hosts
        .iter()
        .filter(|h| filters.hosts.is_empty() || filters.hosts.iter().any(|x| *x == h.name))
        .filter(|h| filters.roles.is_empty() || h.has_any_role(&filters.roles))
        .collect();
    if hosts.is_empty() {
        return Err(PlanError::NoHosts {
            stage: stage.to_string(),
        });
    }
    Ok((st, hosts))
}

/// Publish batches: `canary` hosts alone first, then `batch` at a time.
pub fn batches(n: usize, batch: Batch, canary: u32) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let canary = (canary as usize).min(n);
    if canary > 0 {
        out.push((0..canary).collect());
    }
    let size = match batch {
        Batch::All => n.max(1),
        Batch::Count(c) => (c as usize).max(1),
        Batch::Percent(p) => ((n * p as usize).div_ceil(100)).max(1),
    };
    let rest: Vec<usize> = (canary..n).collect();
    for chunk in rest.chunks(size) {
        out.push(chunk.to_vec());
    }
    out
}

/// Step names in recipe order: built-ins with each task placed right after
/// the step it names in `after` (tasks after tasks follow them, file order).
fn order(config: &Config) -> Vec<(String, Option<&Task>, Phase)> {
    fn place<'c>(
        name: &str,
        phase: Phase,
        config: &'c Config,
        out: &mut Vec<(String, Option<&'c Task>, Phase)>,
    ) {
        for t in config
            .tasks
            .iter()
            .filter(|t| t.after.as_deref() == Some(name))
        {
            let phase = if phase == Phase::Prepare {
                Phase::Staging
            } else {
                phase
            };
            out.push((t.name.clone(), Some(t), phase));
            place(&t.name, phase, config, out);
        }
    }
    let mut out = Vec::new();
    for (name, phase) in BUILTIN_STEPS {
        let exists = match *name {
            "restart" | "smoke_test" => config.task(name).is_some(),
            "link_shared" => !config.linked_dirs.is_empty() || !config.linked_files.is_empty(),
            "render_templates" => !config.templates.is_empty(),
            _ => true,
        };
        if exists {
            out.push((name.to_string(), config.task(name), *phase));
        }
        place(name, *phase, config, &mut out);
    }
    out
}

/// The recipe's steps with a stage's load balancer: `drain` before
/// `publish` and `undrain` after the last step of the publish phase, so a
/// host is out of the pool from before its switch until its smoke test
/// (and the tasks after it) passed.
fn with_load_balancer<'c>(
    mut steps: Vec<(String, Option<&'c Task>, Phase)>,
    lb: Option<&LoadBalancer>,
) -> Vec<(String, Option<&'c Task>, Phase)> {
    if lb.is_none() {
        return steps;
    }
    let Some(first) = steps.iter().position(|(_, _, p)| *p == Phase::Publish) else {
        return steps;
    };
    steps.insert(first, ("drain".to_string(), None, Phase::Publish));
    let last = steps
        .iter()
        .rposition(|(_, _, p)| *p == Phase::Publish)
        .expect("drain is in the publish phase");
    steps.insert(last + 1, ("undrain".to_string(), None, Phase::Publish));
    steps
}

/// Host `h`'s `drain` (with the wait after it) or `undrain`, rendered with
/// its context: run on the shipit machine for it, or on the host.
pub fn lb_action(
    lb: &LoadBalancer,
    step: &str,
    h: &Host,
    ctx: &tera::Context,
    stage: &str,
) -> Result<Action, RenderError> {
    let (cmd, wait) = match step {
        "drain" => (&lb.drain, lb.wait),
        _ => (&lb.undrain, Duration::ZERO),
    };
    let run = render::render(&cmd.run, ctx, &format!("`load_balancer.{step}`"), &h.name)?;
    let script = commands::load_balancer(stage, &h.name, &run, wait);
    Ok(if cmd.local {
        Action::Local(script)
    } else {
        Action::Shell(script)
    })
}

/// An `http:` smoke test rendered for one host.
pub fn http_check(
    t: &Task,
    http: &HttpCheckSpec,
    ctx: &tera::Context,
    host: &str,
) -> Result<HttpCheck, RenderError> {
    Ok(HttpCheck {
        url: render::render(
            &http.url,
            ctx,
            &format!("the `http` of task `{}`", t.name),
            host,
        )?,
        expect: http.expect,
        retries: t.retries,
        interval: t.interval,
    })
}

/// Builds the plan. Deterministic for the same input.
pub fn plan(input: &PlanInput<'_>) -> Result<Plan, PlanError> {
    let config = input.config;
    let (stage, hosts) = select_hosts(config, input.stage, input.filters)?;
    let release = input.release;
    let plan_hosts: Vec<PlanHost> = hosts
        .iter()
        .map(|h| PlanHost {
            name: h.name.clone(),
            roles: h.roles.clone(),
            transport: h.transport,
            deploy_to: h.deploy_to.clone(),
            current: config.current_path.clone(),
        })
        .collect();
    let contexts: Vec<_> = hosts
        .iter()
        .map(|h| render::context(config, h, release, input.env))
        .collect();
    let holder_json = serde_json::to_string(input.holder).expect("lock holder serialises");
    let template_dests: Vec<&str> = config
        .templates
        .iter()
        .filter_map(|t| t.dest.as_str().strip_prefix("shared/"))
        .collect();
    let check_spec = CheckSpec {
        needs_git: config.strategy == Strategy::Git,
        needs_sha256sum: config.strategy == Strategy::Copy,
        linked_files: config
            .linked_files
            .iter()
            .map(|f| f.as_str())
            .filter(|f| !template_dests.contains(f))
            .collect(),
    };
    let dirs: Vec<&str> = config.linked_dirs.iter().map(|d| d.as_str()).collect();
    let files: Vec<&str> = config.linked_files.iter().map(|d| d.as_str()).collect();

    let mut steps = Vec::new();
    // Per step: which hosts, and each host's actions.
    let mut work: Vec<Vec<(Option<usize>, Vec<Action>)>> = Vec::new();
    let lb = stage.load_balancer.as_ref();
    for (name, task, phase) in with_load_balancer(order(config), lb) {
        let builtin = builtin_phase(&name).is_some() || LB_STEPS.contains(&name.as_str());
        // Built-in steps run on every host; a task where targeting says.
        let targets = match (task, lb) {
            (Some(t), _) => targeting::targets(t, &hosts),
            // Only the hosts in the load balancer's pool leave it.
            (None, Some(lb)) if LB_STEPS.contains(&name.as_str()) => targeting::Targets::Hosts(
                (0..hosts.len()).filter(|&i| lb.serves(hosts[i])).collect(),
            ),
            (None, _) => targeting::Targets::Hosts((0..hosts.len()).collect()),
        };
        let local = targets.is_local();
        let timeout = match (task, name.as_str(), lb) {
            (Some(t), _, _) => t.timeout.unwrap_or(LONG),
            (None, "fetch" | "create_release", _) => LONG,
            (None, "drain", Some(lb)) => lb.drain.timeout + lb.wait,
            (None, "undrain", Some(lb)) => lb.undrain.timeout,
            _ => SHORT,
        };
        let lb_local = match (name.as_str(), lb) {
            ("drain", Some(lb)) => lb.drain.local,
            ("undrain", Some(lb)) => lb.undrain.local,
            _ => false,
        };
        steps.push(Step {
            name: name.clone(),
            kind: if builtin {
                StepKind::Builtin
            } else {
                StepKind::Task
            },
            phase,
            local: local || lb_local,
            always: name == "unlock",
            timeout,
            quiet: name == "lock",
            output: false,
        });
        let mut per_host = Vec::new();
        if local {
            let t = task.expect("local steps are tasks");
            // Local tasks render with the first host's context: vars that
            // differ per host are not meaningful on the shipit machine.
            let run = render::render(&t.run, &contexts[0], &format!("task `{}`", t.name), "local")?;
            per_host.push((None, vec![Action::Shell(run)]));
            work.push(per_host);
            continue;
        }
        let targeting::Targets::Hosts(runs_on) = targets else {
            unreachable!("local steps were handled above")
        };
        for i in runs_on {
            let h = hosts[i];
            let p = HostPaths::of(config, h);
            let rendered = |t: &Task| {
                render::render(&t.run, &contexts[i], &format!("task `{}`", t.name), &h.name)
            };
            let host_env = || render::host_env(h, &contexts[i]);
            let actions = match (name.as_str(), task) {
                ("lock", _) => vec![Action::Shell(commands::lock(&p, &holder_json))],
                ("check", _) => vec![Action::Shell(commands::check(&p, &check_spec))],
                ("fetch", _) => match config.strategy {
                    Strategy::Git => vec![Action::Shell(commands::fetch_git(
                        &p,
                        &config.repository,
                        &release.commit,
                    ))],
                    Strategy::Copy => {
                        vec![Action::Artifact(commands::upload_artifact(&p, release))]
                    }
                },
                ("create_release", _) => vec![Action::Shell(match config.strategy {
                    Strategy::Git => commands::create_release_git(
                        &p,
                        release,
                        &h.name,
                        config.repo_tree.as_ref().map(|t| t.as_str()),
                        config.submodules.then_some(config.repository.as_str()),
                    ),
                    Strategy::Copy => commands::create_release_copy(&p, release, &h.name),
                })],
                ("link_shared", _) => vec![Action::Shell(commands::link_shared(
                    &p,
                    &release.id,
                    &dirs,
                    &files,
                    config.seed_linked_dirs,
                ))],
                ("render_templates", _) => config
                    .templates
                    .iter()
                    .enumerate()
                    .map(|(ti, t)| Action::Upload {
                        template: ti,
                        script: commands::upload(&p.at(t.dest.as_str()), t.mode, &release.id),
                    })
                    .collect(),
                ("publish", _) => vec![Action::Shell(commands::publish(&p, release, &h.name))],
                ("restart", Some(t)) => vec![Action::Shell(commands::task(
                    &p,
                    release,
                    &p.current(),
                    &rendered(t)?,
                    &host_env()?,
                    t.retries,
                    t.interval,
                ))],
                ("drain" | "undrain", None) => {
                    let lb = lb.expect("load balancer steps come with a load balancer");
                    vec![lb_action(lb, &name, h, &contexts[i], &release.stage)?]
                }
                (
                    "smoke_test",
                    Some(
                        t @ Task {
                            http: Some(http), ..
                        },
                    ),
                ) => {
                    vec![Action::Http {
                        check: http_check(t, http, &contexts[i], &h.name)?,
                        then: commands::ledger_append(
                            &p,
                            &[commands::entry(release, &h.name, EventKind::Verified)],
                        ),
                    }]
                }
                ("smoke_test", Some(t)) => vec![Action::Shell(commands::smoke_test(
                    &p,
                    release,
                    &h.name,
                    &rendered(t)?,
                    &host_env()?,
                    t.retries,
                    t.interval,
                ))],
                ("record", _) => vec![Action::Shell(commands::record(&p, release))],
                ("cleanup", _) => vec![Action::Shell(
                    match input.host_state.and_then(|s| s.get(h.name.as_str())) {
                        // The cleanup runs after this run's publish: `current`
                        // is this run's release then.
                        Some(found) => commands::cleanup(
                            &p,
                            &cleanup::to_remove(
                                &found.releases,
                                &found.ledger,
                                Some(&release.id),
                                &release.id,
                                config.keep_releases,
                            ),
                        ),
                        None => commands::cleanup_pending(config.keep_releases),
                    },
                )],
                ("unlock", _) => vec![Action::Shell(commands::unlock(&p, &input.holder.token))],
                (_, Some(t)) => {
                    let dir = if phase >= Phase::Publish {
                        p.current()
                    } else {
                        p.release(&release.id)
                    };
                    vec![Action::Shell(commands::task(
                        &p,
                        release,
                        &dir,
                        &rendered(t)?,
                        &host_env()?,
                        t.retries,
                        t.interval,
                    ))]
                }
                (other, None) => unreachable!("built-in step `{other}` has no command"),
            };
            per_host.push((Some(i), actions));
        }
        work.push(per_host);
    }

    let batches = batches(hosts.len(), stage.rollout.batch, stage.rollout.canary);
    let mut nodes = wire(&steps, &work, hosts.len(), &batches);
    undo_nodes(config, &hosts, release, input.env, &mut steps, &mut nodes)?;
    Ok(Plan {
        recipe: input.recipe,
        stage: stage.name.to_string(),
        release: release.clone(),
        hosts: plan_hosts,
        steps,
        nodes,
        batches,
    })
}

/// The undo of a failed or interrupted run, as nodes of the plan (phase
/// [`Phase::Undo`], no dependencies; the executor runs them only when the
/// run settles as failed): `discard_staged` for hosts that were only
/// staged, and `switch_back` (switch, ledger, the previous release's
/// restart and smoke test on the host) for hosts that were switched. The
/// previous release is read by the lock step, so the plan names it
/// `<previous>`. A `local: true` restart or smoke test runs once on this
/// machine after the hosts are back (see [`super::targeting`]).
fn undo_nodes(
    config: &Config,
    hosts: &[&Host],
    release: &ReleaseInfo,
    env: &BTreeMap<String, String>,
    steps: &mut Vec<Step>,
    nodes: &mut Vec<Node>,
) -> Result<(), PlanError> {
    let previous = ReleaseInfo {
        id: "<previous>".into(),
        commit: "<its commit>".into(),
        ..release.clone()
    };
    let hook_timeout = |name: &str| {
        config
            .task(name)
            .map(|t| t.timeout.unwrap_or(LONG))
            .unwrap_or_default()
    };
    let mut add_step = |name: &str, local: bool, timeout: Duration| {
        steps.push(Step {
            name: name.to_string(),
            kind: StepKind::Builtin,
            phase: Phase::Undo,
            local,
            always: false,
            timeout,
            quiet: false,
            output: false,
        });
        steps.len() - 1
    };
    let discard = add_step("discard_staged", false, SHORT);
    let lb = config
        .stage(&release.stage)
        .and_then(|s| s.load_balancer.as_ref());
    let drain = lb.map(|lb| add_step("drain", lb.drain.local, lb.drain.timeout + lb.wait));
    let back = add_step(
        "switch_back",
        false,
        SHORT + hook_timeout("restart") + hook_timeout("smoke_test"),
    );
    let http = config.task("smoke_test").filter(|t| t.http.is_some());
    let check = http.map(|t| add_step("smoke_test", false, t.timeout.unwrap_or(LONG)));
    let undrain = lb.map(|lb| add_step("undrain", lb.undrain.local, lb.undrain.timeout));
    let where_ = |name: &str| config.task(name).map(|t| targeting::targets(t, hosts));
    for (i, h) in hosts.iter().enumerate() {
        let p = HostPaths::of(config, h);
        let ctx = render::context(config, h, &previous, env);
        let hook = |name: &str| -> Result<Option<commands::HookCommand>, PlanError> {
            // An `http:` smoke test is no command on the host: it is
            // checked from here once the host is back.
            let Some(t) = config
                .task(name)
                .filter(|t| t.http.is_none())
                .filter(|_| where_(name).is_some_and(|w| w.on_host(i)))
            else {
                return Ok(None);
            };
            Ok(Some(commands::HookCommand {
                run: render::render(&t.run, &ctx, &format!("task `{}`", t.name), &h.name)?,
                env: render::host_env(h, &ctx)?,
                retries: t.retries,
                interval: t.interval,
            }))
        };
        nodes.push(Node {
            step: Some(discard),
            host: Some(i),
            action: Action::Shell(commands::discard_staged(&p, release, &h.name, "failed")),
            deps: Vec::new(),
        });
        if let (Some(s), Some(lb)) = (drain, lb.filter(|lb| lb.serves(h))) {
            nodes.push(Node {
                step: Some(s),
                host: Some(i),
                action: lb_action(lb, "drain", h, &ctx, &release.stage)?,
                deps: Vec::new(),
            });
        }
        nodes.push(Node {
            step: Some(back),
            host: Some(i),
            action: Action::Shell(commands::undo_publish(
                &p,
                release,
                &h.name,
                Some(&previous),
                hook("restart")?.as_ref(),
                hook("smoke_test")?.as_ref(),
            )),
            deps: Vec::new(),
        });
        if let (
            Some(s),
            Some(
                t @ Task {
                    http: Some(spec), ..
                },
            ),
        ) = (check, http)
        {
            nodes.push(Node {
                step: Some(s),
                host: Some(i),
                action: Action::Http {
                    check: http_check(t, spec, &ctx, &h.name)?,
                    then: String::new(),
                },
                deps: Vec::new(),
            });
        }
        if let (Some(s), Some(lb)) = (undrain, lb.filter(|lb| lb.serves(h))) {
            nodes.push(Node {
                step: Some(s),
                host: Some(i),
                action: lb_action(lb, "undrain", h, &ctx, &release.stage)?,
                deps: Vec::new(),
            });
        }
    }
    for name in ["restart", "smoke_test"] {
        let Some(t) = config
            .task(name)
            .filter(|_| where_(name).is_some_and(|w| w.is_local()))
        else {
            continue;
        };
        let s = add_step(name, true, t.timeout.unwrap_or(LONG));
        let ctx = render::context(config, hosts[0], &previous, env);
        nodes.push(Node {
            step: Some(s),
            host: None,
            action: Action::Shell(render::render(
                &t.run,
                &ctx,
                &format!("task `{}`", t.name),
                "local",
            )?),
            deps: Vec::new(),
        });
    }
    // The failure hooks, after the undo of a failed run (not of an
    // interrupted one); what failed is known only then.
    let failure = failure_hooks::Failure {
        stage: release.stage.to_string(),
        release: release.id.to_string(),
        step: "<failed step>".into(),
        hosts: vec!["<failed hosts>".into()],
    };
    for t in failure_hooks::hooks(config) {
        let scripts = failure_hooks::scripts(config, t, hosts, release, env, &failure)?;
        let local = scripts.iter().any(|(target, _)| *target == Target::Local);
        steps.push(Step {
            name: t.name.clone(),
            kind: StepKind::Task,
            phase: Phase::Undo,
            local,
            always: false,
            timeout: t.timeout.unwrap_or(failure_hooks::HOOK_TIMEOUT),
            quiet: false,
            output: false,
        });
        let s = steps.len() - 1;
        for (target, script) in scripts {
            nodes.push(Node {
                step: Some(s),
                host: match target {
                    Target::Host(i) => Some(i),
                    Target::Local => None,
                },
                action: Action::Shell(script),
                deps: Vec::new(),
            });
        }
    }
    Ok(())
}

/// Lays the nodes out with their dependencies: a chain per host within a
/// phase (or publish batch), and a barrier node between phases and batches
/// so that dependencies stay linear in the number of hosts.
fn wire(
    steps: &[Step],
    work: &[Vec<(Option<usize>, Vec<Action>)>],
    n_hosts: usize,
    batches: &[Vec<usize>],
) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut barrier: Option<usize> = None;
    let all: Vec<usize> = (0..n_hosts).collect();
    for phase in [
        Phase::Prepare,
        Phase::Staging,
        Phase::Publish,
        Phase::Finish,
    ] {
        let in_phase: Vec<usize> = (0..steps.len())
            .filter(|&s| steps[s].phase == phase)
            .collect();
        if in_phase.is_empty() {
            continue;
        }
        let groups: Vec<&[usize]> = if phase == Phase::Publish {
            batches.iter().map(|b| b.as_slice()).collect()
        } else {
            vec![all.as_slice()]
        };
        let last_group = groups.len() - 1;
        for (gi, group) in groups.iter().enumerate() {
            let mut last: HashMap<usize, usize> = HashMap::new();
            let mut ends: Vec<usize> = Vec::new();
            for &s in &in_phase {
                for (host, actions) in &work[s] {
                    match host {
                        Some(h) if group.contains(h) => {
                            for a in actions {
                                let deps = match last.get(h) {
                                    Some(&prev) => vec![prev],
                                    None => barrier.into_iter().collect(),
                                };
                                nodes.push(Node {
                                    step: Some(s),
                                    host: Some(*h),
                                    action: a.clone(),
                                    deps,
                                });
                                last.insert(*h, nodes.len() - 1);
                            }
                        }
                        None if gi == last_group => {
                            // A local task waits for everything before it
                            // in this group; hosts do not wait for it.
                            let mut deps: Vec<usize> = last.values().copied().collect();
                            deps.sort_unstable();
                            deps.extend(ends.iter().copied());
                            if deps.is_empty() {
                                deps.extend(barrier);
                            }
                            nodes.push(Node {
                                step: Some(s),
                                host: None,
                                action: actions[0].clone(),
                                deps,
                            });
                            ends.push(nodes.len() - 1);
                        }
                        _ => {}
                    }
                }
            }
            let mut tails: Vec<usize> = last.values().copied().collect();
            tails.sort_unstable();
            tails.extend(ends);
            if !tails.is_empty() {
                nodes.push(Node {
                    step: None,
                    host: None,
                    action: Action::Barrier,
                    deps: tails,
                });
                barrier = Some(nodes.len() - 1);
            }
        }
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_canary_then_size() {
        assert_eq!(batches(3, Batch::All, 0), vec![vec![0, 1, 2]]);
        assert_eq!(
            batches(5, Batch::Count(2), 1),
            vec![vec![0], vec![1, 2], vec![3, 4]]
        );
        // 25% of 13 hosts is 4 (rounded up).
        let b = batches(13, Batch::Percent(25), 1);
        assert_eq!(b[0], vec![0]);
        assert_eq!(b[1].len(), 4);
        assert_eq!(b.iter().map(|x| x.len()).sum::<usize>(), 13);
        assert_eq!(batches(2, Batch::All, 5), vec![vec![0, 1]]);
    }

    #[test]
    fn the_cleanup_is_decided_from_what_the_lock_step_read() {
        use crate::ledger::{test_entry, EventKind};
        let yml = "application: shop\nrepository: /tmp/x\nkeep_releases: 1\n\
stages:\n  s:\n    hosts:\n      - { host: a, deploy_to: /srv/a }\n      - { host: b, deploy_to: /srv/b }\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.yml");
        std::fs::write(&path, yml).unwrap();
        let config = crate::config::load(&path).unwrap();
        let release = ReleaseInfo {
            id: "20260101T000009Z".into(),
            commit: "c".into(),
            reference: "main".into(),
            user: "alice".into(),
            application: "shop".into(),
            stage: "s".into(),
            build_url: None,
            digest: None,
            commit_time: None,
        };
        let holder = LockHolder {
            user: "alice".into(),
            machine: "m".into(),
            pid: 1,
            time: "t".into(),
            stage: "s".into(),
            message: "deploy".into(),
            token: "T".into(),
            process: None,
        };
        let (old, target, failed) = ("20260101T000001Z", "20260101T000002Z", "20260101T000003Z");
        let found = BTreeMap::from([(
            "a".to_string(),
            LockReport {
                releases: vec![old.into(), target.into(), failed.into()],
                current: Some(target.into()),
                current_commit: None,
                ledger: vec![
                    test_entry(EventKind::Verified, old),
                    test_entry(EventKind::Verified, target),
                    test_entry(EventKind::Failed, failed),
                ],
            },
        )]);
        let (env, filters) = (BTreeMap::new(), Filters::default());
        let input = |host_state| PlanInput {
            config: &config,
            stage: "s",
            recipe: Recipe::Deploy,
            release: &release,
            filters: &filters,
            env: &env,
            holder: &holder,
            host_state,
        };
        let cleanup = |plan: &Plan, host: usize| {
            let s = plan.step_index("cleanup").unwrap();
            plan.nodes_of_step(s)
                .find(|(_, n)| n.host == Some(host))
                .map(|(_, n)| n.action.script().to_string())
                .unwrap()
        };
        let after = plan(&input(Some(&found))).unwrap();
        // On `a`, the failed release and the good one beyond keep go; the
        // rollback target stays. Nothing is known of `b`: nothing goes.
        let a = cleanup(&after, 0);
        assert!(a.contains(&format!("set -- '{failed}' '{old}'\n")), "{a}");
        assert!(
            cleanup(&after, 1).contains("none is removed"),
            "{}",
            cleanup(&after, 1)
        );
        let before = plan(&input(None)).unwrap();
        let pending = cleanup(&before, 0);
        assert!(pending.contains("decided after the lock step"), "{pending}");
        assert!(!pending.contains("rm "), "{pending}");
    }
}
