//! `shipit plan STAGE`: print the plan without connecting anywhere.

use std::fmt::Write;

use crate::cli::PlanRecipe;
use crate::config::{Config, Host, Stage};
use crate::outcome::UsageError;
use crate::plan::commands::HostPaths;
use crate::plan::rollback as rb;
use crate::plan::{display, planner, render, Recipe, ReleaseInfo};

use super::App;

/// The plan as text, redacted, for `main` to write.
pub fn run(
    app: &App,
    stage: &str,
    recipe: PlanRecipe,
    revision: Option<&str>,
) -> anyhow::Result<String> {
    let config = app.load_config()?;
    // Validate the stage and filters before resolving anything.
    let (st, hosts) = planner::select_hosts(&config, stage, &app.filters())?;
    let redactor = app.redactor(&config)?;
    let mut head = String::new();
    let mut release = match recipe {
        PlanRecipe::Rollback => {
            return Ok(redactor
                .apply(&rollback_plan(app, &config, stage, &hosts))
                .into_owned());
        }
        PlanRecipe::Promote => {
            head = promote_head(&config, st)?;
            // The commit and digest are the candidate's, read from the
            // source stage when promoting.
            let mut r = app.release_info(&config, stage, revision)?;
            r.commit = "<candidate>".into();
            r.reference = "the candidate".into();
            if config.strategy == crate::config::Strategy::Copy {
                r.digest = Some("<candidate-digest>".into());
            }
            r
        }
        PlanRecipe::Deploy => {
            let mut r = app.release_info(&config, stage, revision)?;
            app.artifact(&config, &mut r)?;
            r
        }
    };
    let recipe = Recipe::Deploy;
    release.stage = stage.to_string();
    let holder = app.lock_holder(stage, &release.id, "deploy");
    let plan = planner::plan(&planner::PlanInput {
        config: &config,
        stage,
        recipe,
        release: &release,
        filters: &app.filters(),
        env: &app.env,
        holder: &holder,
    })?;
    Ok(format!("{head}{}", redactor.apply(&display::render(&plan))))
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

/// The rollback's scripts per host, with its target as a placeholder: it is
/// chosen when the rollback runs, from each host's ledger.
fn rollback_plan(app: &App, config: &Config, stage: &str, hosts: &[&Host]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "rollback `{stage}`: {} host{}; each host's target is the newest release older than `current` whose last ledger event is `verified`; hosts must agree (or --force); no fetch, no upload",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" }
    );
    let holder = app.lock_holder(stage, "<rollback>", "rollback");
    let holder_json = serde_json::to_string(&holder).unwrap_or_default();
    for h in hosts {
        let p = HostPaths::new(&h.deploy_to);
        let mk = |id: &str| ReleaseInfo {
            id: id.into(),
            commit: "<its-commit>".into(),
            reference: String::new(),
            user: app.user(),
            application: config.application.clone(),
            stage: stage.into(),
            build_url: None,
            digest: None,
        };
        let (from, to) = (mk("<current>"), mk("<target>"));
        let task = |name: &str, r: &ReleaseInfo| {
            let t = config.task(name).filter(|t| h.has_any_role(&t.roles))?;
            let ctx = render::context(config, h, r, &app.env);
            let run = render::render(&t.run, &ctx, name, &h.name).ok()?;
            Some(rb::TaskRun {
                run,
                retries: t.retries,
                interval: t.interval,
                timeout: t.timeout.unwrap_or(std::time::Duration::from_secs(600)),
            })
        };
        let w = rb::HostRollback {
            paths: &p,
            host: &h.name,
            from: &from,
            to: &to,
            restart: task("restart", &to),
            smoke_test: task("smoke_test", &to),
            restart_back: task("restart", &from),
            smoke_test_back: task("smoke_test", &from),
            token: &holder.token,
        };
        let _ = writeln!(o, "\non {} (deploy_to {}):", h.name, h.deploy_to);
        let _ = writeln!(
            o,
            "  1. lock and read the host's releases and ledger (one round trip)"
        );
        for line in rb::lock_and_read(&p, &holder_json).lines() {
            let _ = writeln!(o, "        | {line}");
        }
        let _ = writeln!(o, "  2. switch, restart, smoke test, record, unlock (one round trip; stops at the first failure, then switches back)");
        for st in rb::steps(&w) {
            let _ = writeln!(o, "     {}  (timeout {}s)", st.name, st.timeout.as_secs());
            for line in st.script.lines() {
                let _ = writeln!(o, "        | {line}");
            }
        }
    }
    o
}
