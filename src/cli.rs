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
    /// The configuration file. Without it, `deploy.yml` in the current
    /// directory or the nearest parent that has one, up to the
    /// repository's root (a directory holding `.git`); `-v` names the
    /// file used.
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
    #[arg(short = 'j', long = "parallel", global = true, default_value_t = 200)]
    pub parallel: usize,
    /// Output: human on a terminal, plain lines in logs and CI (`CI`,
    /// `JENKINS_URL`, `BUILD_ID`, `HUDSON_URL` set, `TERM=dumb`, or stdout
    /// not a terminal); json: one event per line (docs/json-events.md).
    /// `NO_COLOR` turns colour off.
    #[arg(long, global = true, value_enum, default_value_t = Requested::Auto)]
    pub format: Requested,
    /// Also write a JUnit XML report here (every command that touches
    /// hosts): one test case per host and step (for check, per check), for
    /// Jenkins' `junit` step.
    #[arg(long, global = true, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also print when each step starts, and the output of steps that succeeded.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// A deploy lock older than this (`2h`, `30m`) is stale whoever holds it:
    /// reported as such, and freed by `shipit unlock` without --force.
    /// Without it only locks whose process on this machine is gone are stale.
    #[arg(long, global = true, env = "SHIPIT_LOCK_TTL", value_name = "DURATION", value_parser = duration_arg)]
    pub lock_ttl: Option<std::time::Duration>,
    /// Print only failures and the summary.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Overrides a var of deploy.yml for this run, on every host (repeat
    /// for more): the value is a string, used in templates and commands
    /// like `{{ KEY }}`, and `shipit plan` lists it.
    #[arg(short = 'o', long = "set", global = true, value_name = "KEY=VALUE", value_parser = var_override_arg)]
    pub set: Vec<(String, String)>,
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
        /// Write these stages (comma-separated, in promotion order, like
        /// `staging,production`) instead of the `local` one, each deploying
        /// to this machine until its hosts are filled in.
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        stages: Vec<String>,
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
        /// Name the release ID instead of minting a timestamp (a build
        /// number: `build-000142`). Letters, digits, `.`, `_`, `-`. Refused
        /// (exit 2, nothing changed) when a host has that release already
        /// or a release that sorts after it: ids order releases as strings.
        #[arg(long, value_name = "ID")]
        release: Option<String>,
        /// When the stage is locked, wait up to this long (`5m`, `30s`) for
        /// the lock instead of exiting 4.
        #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
        wait_lock: Option<std::time::Duration>,
    },
    /// Bring hosts without a current release (new or replaced instances)
    /// onto exactly the release the stage's other hosts run.
    ///
    /// Reads every host of the stage (including `hosts_from`); the hosts
    /// that have a `current` must agree on its id and commit (and archive
    /// digest), else it refuses, as it does when no host has a release.
    /// The hosts without one (of those --hosts/--roles select) get that
    /// release through the deploy protocol: same id, commit and archive,
    /// smoke-tested and recorded in their ledger. The others are left alone.
    Sync {
        stage: String,
        /// When the stage is locked, wait up to this long (`5m`, `30s`) for
        /// the lock instead of exiting 4.
        #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
        wait_lock: Option<std::time::Duration>,
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
    /// Switch every host back to the previous good release, restart and
    /// smoke-test.
    ///
    /// The target comes from each host's ledger, never from directory
    /// times: the newest release older than `current` whose last ledger
    /// event is `verified` (`published` on hosts where no smoke test runs);
    /// releases that failed or were rolled back are skipped. Refuses (exit
    /// 1, showing the difference) when hosts disagree about the target or
    /// about `current`. Takes the deploy lock (exit 4 when someone holds
    /// it), then per host: switches `current` atomically, runs the
    /// `restart` and `smoke_test` tasks, records `rolled_back` for the
    /// release left and `published`/`verified` for the target, and writes
    /// revisions.log. A host whose target fails is switched back and the
    /// target marked `failed` there (exit 1); a host that cannot be
    /// switched back is named and the exit is 5. Needs no git server:
    /// nothing is fetched or uploaded.
    Rollback {
        stage: String,
        /// Roll back to this release (an id as `shipit releases` lists
        /// them) instead of the previous good one. It must be on every
        /// host.
        #[arg(long, value_name = "ID")]
        to: Option<String>,
        /// Go on when hosts disagree (each host goes to its own target),
        /// or when the release given with --to is marked failed or was
        /// never verified.
        #[arg(long)]
        force: bool,
    },
    /// Deploy to TO exactly the release verified on FROM, after TO's gate.
    ///
    /// The candidate is the release current and verified on every host of
    /// FROM (default: TO's `promote_from`). The gate: soak time, recorded
    /// approvals, allowed approvers, signatures. On a terminal it shows the
    /// candidate and the commits it brings and asks you to type TO's name
    /// (that counts as your approval); without a terminal it needs --yes.
    /// A refusal exits 3 saying which condition failed. FROM, when given,
    /// must be TO's `promote_from`.
    Promote {
        /// `TO`, or `FROM TO`.
        #[arg(required = true, num_args = 1..=2, value_name = "STAGE")]
        stages: Vec<String>,
        /// Do not ask; the gate's recorded approvals must be there.
        #[arg(long)]
        yes: bool,
        /// Only evaluate the gate: print every rule, passed or why not;
        /// exit 0 when it would let the promotion through, 3 when not.
        /// Deploys nothing.
        #[arg(long)]
        check: bool,
        /// Sign the promotion with this ssh key (`ssh-keygen -Y sign`);
        /// needed when TO's gate names `allowed_signers`: who you are to
        /// the gate (self-approval) is who that file says this key is.
        #[arg(long, value_name = "KEY")]
        sign_key: Option<std::path::PathBuf>,
        /// When TO is locked, wait up to this long (`5m`, `30s`) for the
        /// lock instead of exiting 4; the gate is evaluated again once the
        /// lock is held.
        #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
        wait_lock: Option<std::time::Duration>,
    },
    /// Record your approval (or rejection) of what STAGE would be promoted to.
    ///
    /// That is the release current and verified on its `promote_from`
    /// stage, bound to its commit and archive digest, in the ledger of
    /// every host of STAGE.
    Approve {
        stage: String,
        /// The release you reviewed (an id as `shipit releases` lists it):
        /// refused when the candidate (the release current and verified on
        /// the promote_from stage) is another one.
        #[arg(long, value_name = "ID")]
        release: Option<String>,
        /// The commit you reviewed (whole id or 7+ characters): refused when
        /// the candidate is another commit.
        #[arg(long, value_name = "SHA")]
        commit: Option<String>,
        /// Who approves (default: SHIPIT_USER, git's user.name, the OS user).
        /// A name, not a proof: where the gate names `allowed_signers`,
        /// only the signing key counts.
        #[arg(long = "as", value_name = "NAME")]
        as_user: Option<String>,
        /// Record a rejection: it blocks promotion of that commit until you approve it.
        #[arg(long)]
        reject: bool,
        /// How long the approval counts (default and longest: the gate's
        /// approval_ttl, 24h). A rejection never expires.
        #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
        expires: Option<std::time::Duration>,
        /// Sign the approval with this ssh key (`ssh-keygen -Y sign`); needed
        /// when the stage's gate names `allowed_signers`.
        #[arg(long, value_name = "KEY")]
        sign_key: Option<std::path::PathBuf>,
        /// A note kept with the approval.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// The stage's ledger: deploys, rollbacks, failures, approvals,
    /// promotions, forced unlocks — who and when, newest first.
    ///
    /// Reads every host's ledger and merges them: the same event (same
    /// release, user and details) recorded on several hosts within a
    /// minute is one line listing the hosts. Ledger lines that do not
    /// parse are skipped with a warning naming the host and line numbers.
    /// Exits 1 when a host cannot be read (the others are still shown).
    History {
        stage: String,
        /// Show at most this many lines, the newest (0: all).
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: usize,
    },
    /// Run a shell command on every selected host of a stage, in parallel.
    ///
    /// `shipit exec staging --roles app -- uptime`. The words after `--`
    /// are joined with spaces and run by the login shell on each host, in
    /// its home directory, with no stdin. Each host's output is printed in
    /// one piece when it finishes (never interleaved with another host's),
    /// stdout lines as `[host]   | ...` and stderr lines as `[host]   ! ...`,
    /// then a summary per host. Exits 0 when the command exited 0 on every
    /// host, 1 when any host failed (or could not be reached), 130 when
    /// interrupted (commands already running finish; no new ones start).
    /// Takes no deploy lock: it can run while a deploy does. Values of
    /// secret environment variables are redacted from everything printed.
    Exec {
        stage: String,
        /// The command's time limit on each host (`30s`, `10m`).
        #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "10m")]
        timeout: std::time::Duration,
        /// The command (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Run one task from deploy.yml's `tasks:` on its hosts, outside a deploy.
    ///
    /// The task runs as it would in a deploy: on the selected hosts that
    /// have one of its `roles` (only the first with `once: true`; on this
    /// machine with `local: true`), rendered for each host, in `current`,
    /// with the environment tasks get (`SHIPIT_RELEASE`, `SHIPIT_COMMIT`,
    /// ... of the release `current` points at), with its `retries`,
    /// `interval` and `timeout`. A host without a current release fails.
    /// Output is printed per host as with `exec`. Exits 0 when the task
    /// succeeded everywhere, 1 otherwise, 2 for an unknown task. Takes no
    /// deploy lock and writes nothing to the ledger.
    Run {
        stage: String,
        /// The task's name in `tasks:`.
        task: String,
    },
    /// The stage's encrypted secrets: `secrets: { file: … }` in deploy.yml.
    ///
    /// The file is age-encrypted to every recipient listed beside it (same
    /// name ending `.recipients`: age keys `age1…` and ssh public keys
    /// `ssh-ed25519 …`, one a line) and decrypted with your key:
    /// SHIPIT_AGE_IDENTITY (an age identity file or an ssh private key), else
    /// ~/.ssh/id_ed25519. Templates and commands read a value as
    /// `{{ secrets.NAME }}`; it is redacted from all output.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Print shell completions: `shipit completions bash > ~/.local/share/bash-completion/completions/shipit`.
    ///
    /// For bash, zsh, fish, PowerShell or elvish; the README's install
    /// section says where each shell looks for them.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of shipit, or of one of its commands.
    ///
    /// `shipit man > shipit.1`, `shipit man deploy > shipit-deploy.1`; with
    /// --dir, writes shipit.1 and one shipit-COMMAND.1 per command there.
    Man {
        /// The command whose page to print (default: shipit's own).
        command: Option<String>,
        /// Write every page into this directory instead of printing one.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of deploy.yml, for editors to validate and
    /// complete it.
    ///
    /// `shipit schema > deploy.schema.json`, then start deploy.yml with
    /// `# yaml-language-server: $schema=deploy.schema.json`.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum SecretsAction {
    /// Edit the stage's secrets in $EDITOR (then $VISUAL, else vi).
    ///
    /// Decrypts them into a private (mode 0600) temporary file, in /dev/shm
    /// when there is one, as a JSON object of names to strings; when the
    /// editor exits, encrypts the result to the recipients listed now,
    /// replaces the file, and overwrites and removes the temporary file.
    /// Creates the file when it does not exist. Without $EDITOR or $VISUAL
    /// and without a terminal it refuses (exit 2) rather than hang.
    Edit { stage: String },
    /// List the names of the stage's secrets; values only with --reveal.
    Show {
        stage: String,
        /// Print each value too, as `NAME="value"` (JSON-quoted).
        #[arg(long)]
        reveal: bool,
    },
    /// Set one secret of the stage to what stdin holds (one trailing
    /// newline dropped): `pass show db | shipit secrets set production DB_PASSWORD`.
    Set {
        stage: String,
        /// Letters, digits and `_`, not starting with a digit.
        name: String,
    },
}

/// Parses a duration flag the way deploy.yml reads durations.
pub fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s).ok_or_else(|| {
        format!("invalid duration `{s}`, expected a number followed by ms, s, m, h or d like `5m`")
    })
}

/// `KEY=VALUE` of `-o/--set`: the key must be a var name.
pub fn var_override_arg(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid override `{s}`, expected KEY=VALUE like `port=8080`"))?;
    if !crate::config::checks::is_var_name(key) {
        return Err(format!(
            "invalid var name `{key}` in `{s}`, expected letters, digits and `_`, not starting with a digit"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanRecipe {
    Deploy,
    /// `shipit rollback STAGE`: the per-host scripts, with the target chosen
    /// at run time from each host's ledger.
    Rollback,
    /// `shipit promote STAGE`: the gate, then the deploy of the candidate.
    Promote,
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

    #[test]
    fn exec_takes_the_command_after_dashes() {
        let c = Cli::try_parse_from([
            "shipit", "exec", "staging", "--roles", "app", "--junit", "r.xml", "--format", "json",
            "--", "echo", "-n", "hi",
        ])
        .unwrap();
        assert_eq!(c.global.roles, vec!["app"]);
        assert_eq!(c.global.junit, Some(PathBuf::from("r.xml")));
        assert_eq!(c.global.format, Requested::Json);
        match c.command {
            Command::Exec { stage, command, .. } => {
                assert_eq!(stage, "staging");
                assert_eq!(command, vec!["echo", "-n", "hi"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["shipit", "exec", "staging"]).is_err());
    }
}
