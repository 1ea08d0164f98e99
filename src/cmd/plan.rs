//! `shipit plan STAGE`: print the plan without connecting anywhere.

use std::fmt::Write;

use crate::cli::PlanRecipe;
use crate::config::{Config, Stage};
use crate::ids::Commit;
use crate::outcome::UsageError;
use crate::plan::rollback as rb;
use crate::plan::{display, planner, Recipe, ReleaseInfo};

use super::App;

/// The plan as text, redacted, for `main` to write.
pub async fn run(
    app: &App,
    stage: &str,
    recipe: PlanRecipe,
    revision: Option<&str>,
) -> anyhow::Result<String> {
    let config = app.load_stage_config(stage).await?;
    // Validate the stage and filters before resolving anything.
    planner::select_hosts(&config, stage, &app.filters())?;
    let release = match recipe {
        // A rollback needs no commit: it reads each host's ledger.
        PlanRecipe::Rollback => ReleaseInfo {
            id: "<rollback>".into(),
            commit: Commit::default(),
            reference: String::new(),
            user: app.user(),
            application: config.application.clone(),
            stage: stage.into(),
            build_url: None,
            digest: None,
            commit_time: None,
        },
        PlanRecipe::Promote => app.release_info(&config, stage, revision)?,
        PlanRecipe::Deploy => {
            let mut r = app.release_info(&config, stage, revision)?;
            app.artifact(&config, &mut r)?;
            r
        }
    };
    text(app, &config, stage, recipe, release)
}

/// The plan's text for `release` (resolved by the caller), redacted:
/// for a promotion, what it checks and the deploy of the candidate; for a
/// rollback, each host's rounds with the target as a placeholder.
pub fn text(
    app: &App,
    config: &Config,
    stage: &str,
    recipe: PlanRecipe,
    mut release: ReleaseInfo,
) -> anyhow::Result<String> {
    let (st, hosts) = planner::select_hosts(config, stage, &app.filters())?;
    // The plan shows scripts, where a secret may sit inside a quoted word.
    let redactor = app.redactor(config)?.with_quoted_forms();
    let head = match recipe {
        PlanRecipe::Rollback => {
            let holder = app.lock_holder(stage, "<rollback>", "rollback");
            let text = overrides_line(&app.global.set)
                + &inventory_lines(st)
                + &unquoted_lines(config)
                + &rb::preview(config, stage, &hosts, &app.env, &holder)?;
            return Ok(redactor.apply(&text).into_owned());
        }
        PlanRecipe::Promote => {
            // The commit and digest are the candidate's, read from the
            // source stage when promoting.
            release.commit = "<candidate>".into();
            release.reference = "the candidate".into();
            release.digest = (config.strategy == crate::config::Strategy::Copy)
                .then(|| "<candidate-digest>".into());
            promote_head(config, st)?
        }
        PlanRecipe::Deploy => String::new(),
    };
    let head = overrides_line(&app.global.set)
        + &inventory_lines(st)
        + &notify_lines(config)
        + &unquoted_lines(config)
        + &head;
    release.stage = stage.into();
    let holder = app.lock_holder(stage, &release.id, "deploy");
    let plan = planner::plan(&planner::PlanInput {
        config,
        stage,
        recipe: Recipe::Deploy,
        release: &release,
        filters: &app.filters(),
        env: &app.env,
        holder: &holder,
        host_state: None,
    })?;
    let text = format!("{head}{}", display::render(&plan));
    Ok(redactor.apply(&text).into_owned())
}

/// The line naming the vars `-o/--set` overrides, or nothing.
fn overrides_line(set: &[(String, String)]) -> String {
    if set.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("vars overridden (-o): {}\n", pairs.join(", "))
}

/// The hosts `hosts_from` added, per command (each is also in the host
/// list below).
fn inventory_lines(st: &Stage) -> String {
    let mut o = String::new();
    for inv in &st.hosts_from {
        let names: Vec<&str> = st
            .from_inventory
            .iter()
            .filter(|(_, run)| *run == inv.run)
            .map(|(h, _)| h.as_str())
            .collect();
        let found = if names.is_empty() {
            "no new host (all it printed are listed in `hosts`)".to_string()
        } else {
            names.join(", ")
        };
        let _ = writeln!(o, "hosts from `{}`: {found}", inv.run);
    }
    o
}

/// The notify hooks (`after: finished`), run here once the run has ended.
fn notify_lines(config: &Config) -> String {
    let mut o = String::new();
    for t in crate::plan::failure_hooks::finish_hooks(config) {
        let _ = writeln!(
            o,
            "notify `{}` on this machine once the run has ended, whatever its result (outcome in SHIPIT_RESULT... and SHIPIT_OUTCOME_FILE): {}",
            t.name, t.run
        );
    }
    o
}

/// A line for each `{{ … | safe }}` of a task: a value inserted into its
/// command unquoted, as shell code (every other value is one quoted word).
fn unquoted_lines(config: &Config) -> String {
    let mut o = String::new();
    for t in &config.tasks {
        for expr in crate::plan::render::unquoted_insertions(&t.run) {
            let _ = writeln!(
                o,
                "unquoted (| safe): task `{}` inserts `{expr}` as shell code",
                t.name
            );
        }
    }
    o
}

/// What `promote` checks before it deploys.
fn promote_head(config: &Config, st: &Stage) -> anyhow::Result<String> {
    let from = st.promote_from.clone().ok_or_else(|| {
        UsageError(format!(
            "stage `{}` has no `promote_from`: there is nothing to promote into it",
            st.name
        ))
    })?;
    let mut o = String::new();
    let _ = writeln!(o, "promote `{from}` -> `{}`", st.name);
    let _ = writeln!(
        o,
        "  candidate: the release `current` and `verified` on every host of `{from}` (refused if they disagree or it failed)"
    );
    match &st.gate {
        None => {
            let _ = writeln!(o, "  gate: none (no soak, no approvals)");
        }
        Some(g) => {
            let _ = writeln!(
                o,
                "  gate: soak {}s since verified on `{from}`; {} approval{} from {}; self_approval {}; approvals valid {}s{}",
                g.soak.as_secs(),
                g.approvals,
                if g.approvals == 1 { "" } else { "s" },
                if g.approvers.is_empty() {
                    "anyone".to_string()
                } else {
                    g.approvers.join(", ")
                },
                g.self_approval,
                g.approval_ttl.as_secs(),
                match &g.allowed_signers {
                    Some(f) => format!("; signatures verified against `{f}` on the target hosts"),
                    None => String::new(),
                }
            );
        }
    }
    let _ = writeln!(
        o,
        "  then: the deploy below, of the candidate's commit{} (refused with exit 3 on any gate condition)\n",
        if config.strategy == crate::config::Strategy::Copy {
            " and an archive with the candidate's digest"
        } else {
            ""
        }
    );
    Ok(o)
}

#[cfg(test)]
mod tests;
