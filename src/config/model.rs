//! The validated configuration: what the rest of shipit works from.
//!
//! Built from [`super::raw`] by [`super::validate`]. Everything here has been
//! checked: names exist, durations are parsed, host ranges are expanded,
//! paths are relative and cannot leave `deploy_to`, per-host overrides are
//! merged. Nothing here touches the file system or the network.

use crate::ids::{HostName, StageName};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The name of the link to the live release when `current_path` is not set.
pub const DEFAULT_CURRENT_PATH: &str = "current";

/// A whole `deploy.yml`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The directory of that file: template `src` and a local `repository`
    /// path are resolved against it.
    pub base_dir: PathBuf,
    pub application: String,
    /// A URL, or an absolute local path (relative paths in the file are made
    /// absolute against `base_dir`).
    pub repository: String,
    pub branch: String,
    /// The name of the link to the live release in each `deploy_to`
    /// (default [`DEFAULT_CURRENT_PATH`]): a plain name, not one of
    /// shipit's own entries.
    pub current_path: String,
    pub keep_releases: u32,
    pub strategy: Strategy,
    /// Only this directory of the repository is deployed.
    pub repo_tree: Option<RelPath>,
    pub linked_files: Vec<RelPath>,
    pub linked_dirs: Vec<RelPath>,
    /// A linked dir missing from `shared/` is seeded from the release.
    pub seed_linked_dirs: bool,
    /// Git submodules are populated in the release.
    pub submodules: bool,
    pub ssh: SshSettings,
    /// Global vars; each host's `vars` already include these merged under
    /// its own.
    pub vars: BTreeMap<String, serde_json::Value>,
    pub templates: Vec<Template>,
    /// In file order.
    pub tasks: Vec<Task>,
    /// In file order.
    pub stages: Vec<Stage>,
    /// `secrets:`: where each stage's encrypted secrets are.
    pub secrets: Option<SecretsSettings>,
    /// The stage's secrets, decrypted in memory by the command that reads
    /// them (empty until then, and when nothing reads `secrets.NAME`).
    pub secret_values: SecretValues,
}

impl Config {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// Sets each var of `overrides` (`-o KEY=VALUE`, names already checked)
    /// as a string, globally and on every host, over what the file says.
    pub fn override_vars(&mut self, overrides: &[(String, String)]) {
        let hosts = self.stages.iter_mut().flat_map(|s| s.hosts.iter_mut());
        let maps = std::iter::once(&mut self.vars).chain(hosts.map(|h| &mut h.vars));
        for vars in maps {
            for (k, v) in overrides {
                vars.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Each host keeps `repo/` as a mirror and exports the commit from it.
    Git,
    /// shipit exports the commit once and uploads the archive to each host.
    Copy,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Git => "git",
            Strategy::Copy => "copy",
        })
    }
}

/// A path relative to `deploy_to` (or to a release), validated: not empty,
/// not absolute, no `..` component, no empty or `.` components, no control
/// characters. Stored normalised with `/` separators and no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(pub String);

impl RelPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SshSettings {
    pub user: Option<String>,
    pub port: Option<u16>,
    /// `~/` already expanded.
    pub identity_file: Option<PathBuf>,
    pub proxy_jump: Option<String>,
    /// Passed to ssh as `-F`; `~/` already expanded.
    pub config_file: Option<PathBuf>,
    /// Default 10s.
    pub connect_timeout: Duration,
    pub host_key_checking: HostKeyChecking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyChecking {
    /// Default: an unknown or changed host key fails the host.
    Strict,
    /// Unknown keys are added to known_hosts; changed keys still fail.
    AcceptNew,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Relative to `Config::base_dir` as written; `src_path` is the resolved
    /// file.
    pub src: String,
    pub src_path: PathBuf,
    /// Relative to `deploy_to`.
    pub dest: RelPath,
    /// Unix mode, default 0o644.
    pub mode: u32,
}

/// A user task from `tasks:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub name: String,
    /// The step (built-in or another task) it runs after. `None` only for
    /// the tasks named `restart` and `smoke_test`, which give the commands
    /// of those built-in steps.
    pub after: Option<String>,
    /// Empty means every host of the stage.
    pub roles: Vec<String>,
    pub once: bool,
    /// Runs on the machine running shipit, once per run.
    pub local: bool,
    /// The shell command, a tera template rendered per host.
    pub run: String,
    /// Extra attempts after the first failure (default 0).
    pub retries: u32,
    /// Pause between attempts (default 1s).
    pub interval: Duration,
    /// Time limit of the whole step on a host, attempts included.
    pub timeout: Option<Duration>,
    /// `smoke_test` only: checked over HTTP from the machine running shipit
    /// instead of running `run` on the host (`run` is then empty).
    pub http: Option<HttpCheckSpec>,
}

/// A `smoke_test` given as `http:`: what to GET and which status passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheckSpec {
    /// An `http://` URL as written: a template, rendered per host.
    pub url: String,
    /// The status code that passes.
    pub expect: u16,
}

/// A stage's `load_balancer`: how one host leaves and rejoins the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    pub drain: LbCommand,
    pub undrain: LbCommand,
    /// Connection draining after `drain`, before the switch.
    pub wait: Duration,
    /// The roles of the hosts in the pool; empty means every host.
    pub roles: Vec<String>,
}

impl LoadBalancer {
    /// Whether `host` is in the pool (is drained and undrained).
    pub fn serves(&self, host: &Host) -> bool {
        host.has_any_role(&self.roles)
    }
}

/// `drain` or `undrain`: a command run once per host.
#[derive(Debug, Clone, PartialEq)]
pub struct LbCommand {
    /// A template, rendered with the host's context.
    pub run: String,
    /// On the machine running shipit instead of on the host.
    pub local: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: StageName,
    /// Expanded (`web-[01:12]` becomes twelve hosts), in file order.
    pub hosts: Vec<Host>,
    pub promote_from: Option<String>,
    pub gate: Option<Gate>,
    pub rollout: Rollout,
    pub max_failures: u32,
    /// Drain and undrain each host around its switch.
    pub load_balancer: Option<LoadBalancer>,
    /// `hosts_from`: commands printing more hosts, run when a command
    /// needs this stage (see [`crate::config::inventory`]).
    pub hosts_from: Vec<Inventory>,
    /// The hosts of `hosts`, once resolved, that came from `hosts_from`
    /// (each with the command that printed it).
    pub from_inventory: Vec<(HostName, String)>,
}

/// A `hosts_from` entry of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The shell command, run on this machine in `Config::base_dir`.
    pub run: String,
    /// Roles for a printed host whose line names none.
    pub roles: Vec<String>,
    pub timeout: Duration,
    /// Everything a printed host gets but its name and roles: ssh, the
    /// global `deploy_to`, `ssh.user` and `ssh.port`, the global vars and
    /// the global and stage `env`.
    pub prototype: Host,
}

/// `secrets: { file: … }`, checked: for every stage, the file is a path
/// inside the project (the directory of deploy.yml).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretsSettings {
    /// As written; `{{ stage }}` stands for the stage's name.
    pub file: String,
}

impl SecretsSettings {
    /// The file of `stage`, relative to deploy.yml's directory.
    pub fn file_for(&self, stage: &str) -> String {
        self.file
            .replace("{{ stage }}", stage)
            .replace("{{stage}}", stage)
    }
}

/// Secret values by name. Never shown: its `Debug` lists names only.
#[derive(Clone, Default, PartialEq)]
pub struct SecretValues(BTreeMap<String, String>);

impl SecretValues {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        SecretValues(values)
    }

    pub fn map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Ssh,
    Local,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// As written after range expansion; what ssh is given (may be an alias
    /// from the ssh config).
    pub name: HostName,
    pub roles: Vec<String>,
    pub transport: TransportKind,
    /// Absolute for ssh hosts. For local hosts a relative path is resolved
    /// against `Config::base_dir`, so this is always absolute.
    pub deploy_to: String,
    /// Per-host override of `ssh.user`, else the global one.
    pub user: Option<String>,
    /// Per-host override of `ssh.port`, else the global one.
    pub port: Option<u16>,
    /// Global vars with this host's vars merged over them.
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The `env:` exported for its commands: the global one, then its
    /// stage's, then its own, a later value replacing an earlier one in
    /// place. Names are shell identifiers not starting with `SHIPIT_`;
    /// values are Tera templates, rendered per host.
    pub env: Vec<(String, String)>,
}

impl Host {
    pub fn has_any_role(&self, roles: &[String]) -> bool {
        roles.is_empty() || roles.iter().any(|r| self.roles.contains(r))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub approvals: u32,
    pub soak: Duration,
    /// Empty means anyone may approve.
    pub approvers: Vec<String>,
    pub self_approval: bool,
    /// How long an approval stays valid (default 24h).
    pub approval_ttl: Duration,
    /// An OpenSSH allowed_signers file on the target hosts (never from the
    /// commit being promoted).
    pub allowed_signers: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Every host at once (the default).
    All,
    Count(u32),
    /// 1..=100.
    Percent(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    pub batch: Batch,
    /// Hosts published first, on their own, before the batches.
    pub canary: u32,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            batch: Batch::All,
            canary: 0,
        }
    }
}
