//! `shipit plan`: the plan as text a person can review.

use std::fmt::Write;

use super::graph::Plan;
use super::step::{Action, Phase, StepKind};
use crate::config::TransportKind;

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn host_list(plan: &Plan, hosts: &[usize]) -> String {
    if hosts.len() == plan.hosts.len() && hosts.len() > 1 {
        return format!("all {} hosts", hosts.len());
    }
    let names: Vec<&str> = hosts.iter().map(|&h| plan.hosts[h].name.as_str()).collect();
    if names.len() > 8 {
        format!("{}, ... ({} hosts)", names[..6].join(", "), names.len())
    } else {
        names.join(", ")
    }
}

/// Renders the plan. The text is stable for the same plan (tests snapshot
/// it).
pub fn render(plan: &Plan) -> String {
    let mut o = String::new();
    let r = &plan.release;
    let _ = writeln!(
        o,
        "{} `{}`: {} host{}, release {}, commit {} ({})",
        plan.recipe,
        plan.stage,
        plan.hosts.len(),
        if plan.hosts.len() == 1 { "" } else { "s" },
        r.id,
        short(&r.commit),
        r.reference
    );
    let _ = writeln!(o, "\nhosts:");
    let w = plan.hosts.iter().map(|h| h.name.len()).max().unwrap_or(0);
    for h in &plan.hosts {
        let _ = writeln!(
            o,
            "  {:w$}  roles [{}]  deploy_to {}{}",
            h.name,
            h.roles.join(", "),
            h.deploy_to,
            if h.transport == TransportKind::Local {
                "  (local)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        o,
        "\npublish batches ({}; a failing batch stops the run):",
        if plan.step_index("drain").is_some() {
            "drain, switch, restart, smoke test, undrain"
        } else {
            "switch, restart, smoke test"
        }
    );
    for (i, b) in plan.batches.iter().enumerate() {
        let _ = writeln!(o, "  {}. {}", i + 1, host_list(plan, b));
    }
    let _ = writeln!(o, "\nsteps:");
    let mut phase: Option<Phase> = None;
    for (si, step) in plan.steps.iter().enumerate() {
        if phase != Some(step.phase) {
            phase = Some(step.phase);
            let note = match step.phase {
                Phase::Prepare => "every host, before anything else",
                Phase::Staging => "every host; no `current` moves unless all succeed",
                Phase::Publish => "batch by batch",
                Phase::Finish => "after every batch succeeded; unlock always runs",
                Phase::Undo => "only when the run fails or is interrupted: hosts this run switched go back to the release they had (`<previous>`, read by the lock step); hosts it only staged lose the staged release",
            };
            let _ = writeln!(o, "  [{}: {}]", step.phase, note);
        }
        if step.phase == Phase::Undo
            && step.kind == StepKind::Task
            && !plan.steps[..si]
                .iter()
                .any(|s| s.phase == Phase::Undo && s.kind == StepKind::Task)
        {
            let _ = writeln!(
                o,
                "  [failure hooks (`after: failed`): only when the run failed, after the undo; `SHIPIT_FAILED_STEP` and `SHIPIT_FAILED_HOSTS` say what failed]"
            );
        }
        // Group hosts by identical work.
        let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
        let mut local = false;
        let mut per_host: Vec<(usize, Vec<String>)> = Vec::new();
        for (_, node) in plan.nodes_of_step(si) {
            let text = match &node.action {
                Action::Shell(s) => s.clone(),
                Action::Upload { template, script } => {
                    format!(
                        "# stdin: template #{} rendered for this host\n{script}",
                        template + 1
                    )
                }
                Action::Artifact(script) => {
                    format!(
                        "# stdin: the release archive ({})\n{script}",
                        plan.release
                            .digest
                            .as_deref()
                            .unwrap_or("digest known at deploy")
                    )
                }
                Action::Local(script) => {
                    format!("# on the shipit machine, for this host\n{script}")
                }
                Action::Http { check, then } => format!("{}\n{then}", check.describe()),
                Action::Barrier => continue,
            };
            match node.host {
                None => {
                    local = true;
                    groups.push((vec![text], Vec::new()));
                }
                Some(h) => match per_host.iter_mut().find(|(x, _)| *x == h) {
                    Some((_, v)) => v.push(text),
                    None => per_host.push((h, vec![text])),
                },
            }
        }
        for (h, texts) in per_host {
            match groups
                .iter_mut()
                .find(|(t, hs)| *t == texts && !hs.is_empty())
            {
                Some((_, hs)) => hs.push(h),
                None => groups.push((texts, vec![h])),
            }
        }
        let flags = [
            (step.local || local, "on the shipit machine"),
            (step.always, "always"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, s)| *s)
        .collect::<Vec<_>>()
        .join(", ");
        let _ = writeln!(
            o,
            "  {:>2}. {}  (timeout {}s{}{})",
            si + 1,
            step.name,
            step.timeout.as_secs(),
            if flags.is_empty() { "" } else { ", " },
            flags
        );
        if groups.is_empty() {
            let _ = writeln!(o, "      no host matches its roles");
        }
        for (texts, hosts) in groups {
            if !hosts.is_empty() {
                let _ = writeln!(o, "      on {}:", host_list(plan, &hosts));
            }
            for t in texts {
                for line in t.lines() {
                    let _ = writeln!(o, "        | {line}");
                }
            }
        }
    }
    o
}
