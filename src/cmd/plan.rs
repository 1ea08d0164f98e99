//! `shipit plan STAGE`: print the plan without connecting anywhere.

use crate::cli::PlanRecipe;
use crate::outcome::Outcome;
use crate::plan::{display, planner, Recipe};

use super::App;

pub fn run(
    app: &App,
    stage: &str,
    recipe: PlanRecipe,
    revision: Option<&str>,
) -> anyhow::Result<Outcome> {
    let config = app.load_config()?;
    let recipe = match recipe {
        PlanRecipe::Deploy => Recipe::Deploy,
    };
    // Validate the stage and filters before resolving anything.
    planner::select_hosts(&config, stage, &app.filters())?;
    let mut release = app.release_info(&config, stage, revision)?;
    app.artifact(&config, &mut release)?;
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
    let redactor = app.redactor(&config)?;
    print!("{}", redactor.apply(&display::render(&plan)));
    Ok(Outcome::Success)
}
