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
    /// Preflight every host of a stage; changes nothing.
    ///
    /// Per host: connect, `deploy_to` writable (or, when it does not exist
    /// yet, its nearest existing parent), git (strategy git) and tar present,
    /// free disk space under `deploy_to`, linked files present in `shared/`
    /// (except those a template renders), lock state. Exits 0 when every host
    /// passes, 1 otherwise. A held lock is reported with its holder (marked
    /// stale when its process is gone) but does not by itself fail the check.
    Check { stage: String },
    /// Per host: the releases, which one is current, and their status.
    ///
    /// Lists the release dirs under `releases/`, marks the one `current`
    /// points at, and gives each the status the host's ledger records last
    /// (staged, published, verified, failed, rolled_back). Flags hosts that
    /// disagree: a different `current`, or a release some hosts lack. Ledger
    /// lines that do not parse are skipped with a warning. Exits 0 even when
    /// hosts disagree; 1 when a host cannot be read.
    Releases { stage: String },
    /// Hold the deploy lock of a stage until `shipit unlock`.
    ///
    /// Takes the lock on every host and keeps it after shipit exits: deploys
    /// exit 4 until it is freed. All or nothing: when any host's lock is held
    /// by someone else, the locks just taken are freed again and shipit exits
    /// 4 naming the holder.
    Lock {
        stage: String,
        /// Why the stage is locked, shown to whoever is refused (default:
        /// `locked by hand`).
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Free the deploy lock of a stage.
    ///
    /// Without --force, frees only locks you took with `shipit lock` (same
    /// user) and stale ones (taken on this machine by a process that is
    /// gone); any other lock is left held. Exits 0 when every host ends
    /// unlocked, 4 when a lock is left held (naming its holder), 1 when a
    /// host cannot be reached.
    Unlock {
        stage: String,
        /// Free the lock whoever holds it, and record who forced it (an
        /// `unlocked` line naming the holder) in each host's ledger.
        #[arg(long)]
        force: bool,
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
