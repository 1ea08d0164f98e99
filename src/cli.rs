//! The command line (clap). One subcommand per user-facing action.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::Requested;

#[derive(Debug, Parser)]
#[command(
    name = "shipit",
    version,
    about = "Deploy releases over SSH to many hosts in parallel, Capistrano style",
    long_about = "shipit builds a release on every host of a stage (fetch, create the release, \
link shared files, render templates, your tasks), and only when every host staged it switches \
`current` atomically, restarts and smoke-tests, batch by batch. Configuration is deploy.yml; \
`shipit init` writes a commented one to start from."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// The configuration file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "deploy.yml"
    )]
    pub config: PathBuf,
    /// Only these hosts of the stage (comma-separated names as in deploy.yml).
    #[arg(long, global = true, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Only hosts with any of these roles (comma-separated).
    #[arg(long, global = true, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// How many hosts are worked on at once.
    #[arg(short = 'j', long = "parallel", global = true, default_value_t = 50)]
    pub parallel: usize,
    /// Output: human on a terminal, plain lines in logs and CI.
    #[arg(long, global = true, value_enum, default_value_t = Requested::Auto)]
    pub format: Requested,
    /// Also print each host's command count and the full output of failed steps.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Print only failures and the summary.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented deploy.yml to start from.
    Init {
        /// Where to write it.
        #[arg(default_value = "deploy.yml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the task graph of a run: steps in order, the hosts each runs on,
    /// the exact commands, the batches. Connects to nothing.
    Plan {
        stage: String,
        /// Which recipe to show.
        #[arg(value_enum, default_value_t = PlanRecipe::Deploy)]
        recipe: PlanRecipe,
        /// Plan for this branch, tag or commit instead of the configured branch.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Deploy a stage: stage the release on every host, then switch `current`,
    /// restart and smoke-test batch by batch.
    Deploy {
        stage: String,
        /// Deploy this branch, tag or commit instead of the configured branch.
        #[arg(long)]
        revision: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanRecipe {
    Deploy,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let c = Cli::try_parse_from([
            "shipit", "deploy", "staging", "-c", "x.yml", "--hosts", "a,b",
        ])
        .unwrap();
        assert_eq!(c.global.config, PathBuf::from("x.yml"));
        assert_eq!(c.global.hosts, vec!["a", "b"]);
    }
}
