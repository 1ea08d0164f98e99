//! `deploy.yml` exactly as written: serde structs with no logic.
//!
//! Optional keys are `Option` so that [`super::validate`] applies the
//! defaults and can tell "absent" from "written". Unknown keys are errors.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

// `JsonSchema` derives feed `shipit schema` (the schema of the hand-written
// Deserialize impls below is in super::schema).
use schemars::JsonSchema;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The application's name, in ledger records and messages.
    pub application: String,
    /// The git repository to deploy: a URL, or a path relative to this file.
    pub repository: String,
    /// The branch, tag or commit deployed (default `main`); resolved once per run.
    pub branch: Option<String>,
    /// Where releases live on each host.
    pub deploy_to: Option<String>,
    /// The name of the link to the live release in `deploy_to` (default
    /// `current`), e.g. `public_html`.
    pub current_path: Option<String>,
    /// How many good releases each host keeps (default 5).
    pub keep_releases: Option<u32>,
    /// `git`: each host keeps a mirror and exports the commit; `copy`: shipit
    /// builds the archive once and uploads it.
    pub strategy: Option<RawStrategy>,
    /// Deploy only this directory of the repository (a monorepo's
    /// `services/api`): its contents become the release's root.
    pub repo_tree: Option<String>,
    /// Files under `shared/` linked into every release.
    pub linked_files: Option<Vec<String>>,
    /// Directories under `shared/` linked into every release.
    pub linked_dirs: Option<Vec<String>>,
    /// A linked dir missing from `shared/` is first copied there from the
    /// release, when the release has it (default false: created empty).
    pub seed_linked_dirs: Option<bool>,
    /// Populate the commit's git submodules (nested ones too) in every
    /// release (default false: submodule paths stay empty, as with `git
    /// archive`).
    pub submodules: Option<bool>,
    /// How to reach the hosts (the system OpenSSH).
    pub ssh: Option<RawSsh>,
    /// Values for templates and `run` commands (`{{ port }}`).
    pub vars: Option<OrderedMap<serde_json::Value>>,
    /// Environment variables exported for every task, restart and smoke
    /// test on the hosts; values are Tera templates (`{{ env.NAME }}` reads
    /// this machine's environment, and is redacted).
    pub env: Option<OrderedMap<serde_json::Value>>,
    /// Tera templates rendered per host and uploaded before publish.
    pub templates: Option<Vec<RawTemplate>>,
    /// Your steps, hooked into the deploy graph by `after`.
    pub tasks: Option<OrderedMap<RawTask>>,
    /// The stage's age-encrypted secrets, read as `{{ secrets.NAME }}`.
    pub secrets: Option<RawSecrets>,
    /// The stages (staging, production, ...) and their hosts.
    pub stages: OrderedMap<RawStage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[schemars(rename = "Strategy")]
#[serde(rename_all = "lowercase")]
pub enum RawStrategy {
    Git,
    Copy,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(rename = "Ssh")]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    pub proxy_jump: Option<String>,
    pub config_file: Option<String>,
    pub connect_timeout: Option<RawDuration>,
    pub host_key_checking: Option<RawHostKeyChecking>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[schemars(rename = "HostKeyChecking")]
#[serde(rename_all = "kebab-case")]
pub enum RawHostKeyChecking {
    Strict,
    AcceptNew,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "Secrets")]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    /// The age-encrypted file of a stage, relative to deploy.yml; `{{ stage }}`
    /// is the stage's name (`config/secrets/{{ stage }}.age`). Its recipients
    /// are listed beside it, in the same name ending `.recipients`.
    pub file: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "Template")]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    pub src: String,
    pub dest: String,
    pub mode: Option<RawMode>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "Task")]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    /// The step it runs after: a built-in step or another task (required
    /// except for `restart` and `smoke_test`).
    pub after: Option<String>,
    /// Only on hosts with one of these roles.
    pub roles: Option<Vec<String>>,
    /// On the first matching host only.
    pub once: Option<bool>,
    /// On the machine running shipit instead of the hosts.
    pub local: Option<bool>,
    /// The shell command; `{{ var }}` values are shell-quoted. Required,
    /// except for a `smoke_test` given as `http:`.
    pub run: Option<String>,
    /// `smoke_test` only: an `http://` URL (a template, rendered per host)
    /// that shipit GETs from the machine it runs on, as a load balancer's
    /// health checker would, instead of running `run` on the host.
    pub http: Option<String>,
    /// With `http:`, the status code that passes (default 200).
    pub expect: Option<u16>,
    pub retries: Option<u32>,
    pub interval: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "Stage")]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub hosts: Option<Vec<RawHost>>,
    /// The stage whose verified release `shipit promote` brings here.
    pub promote_from: Option<String>,
    /// What a promotion must satisfy.
    pub gate: Option<RawGate>,
    /// Publish in batches: a canary, then a count or percentage at a time.
    pub rollout: Option<RawRollout>,
    /// Hosts that may fail before the run aborts and undoes (default 0).
    pub max_failures: Option<u32>,
    /// Environment variables for this stage's hosts, over the global `env`.
    pub env: Option<OrderedMap<serde_json::Value>>,
    /// Commands run on this machine that print more hosts, one a line
    /// (`host [role,role]`): an autoscaling group's instances.
    pub hosts_from: Option<Vec<RawInventory>>,
    /// Each host leaves the load balancer's pool (`drain`, then `wait`)
    /// before its switch and comes back (`undrain`) only after its smoke
    /// test passes.
    pub load_balancer: Option<RawLoadBalancer>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "LoadBalancer")]
#[serde(deny_unknown_fields)]
pub struct RawLoadBalancer {
    /// Takes one host out of the pool (run once per host).
    pub drain: RawLbCommand,
    /// Puts one host back into the pool (run once per host).
    pub undrain: RawLbCommand,
    /// How long to let connections drain after `drain` (default 0s).
    pub wait: Option<RawDuration>,
    /// Only hosts with one of these roles are in the pool (default: all).
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "LoadBalancerCommand")]
#[serde(deny_unknown_fields)]
pub struct RawLbCommand {
    /// The shell command, rendered per host (`{{ host }}`, its vars); values
    /// are shell-quoted.
    pub run: String,
    /// On the machine running shipit (the usual case) instead of on the host.
    pub local: Option<bool>,
    /// Time limit of one run (default 60s).
    pub timeout: Option<RawDuration>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "Inventory")]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// A shell command run on this machine, in the directory of
    /// deploy.yml; it prints one host a line, `host` or `host role,role`.
    pub run: String,
    /// The roles of a printed host whose line names none.
    pub roles: Option<Vec<String>>,
    /// How long the command may take (default 60s).
    pub timeout: Option<RawDuration>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "Host")]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    /// A host name, an ssh config alias, or a range like `web-[01:12].example.com`.
    pub host: String,
    pub roles: Option<Vec<String>>,
    /// `ssh` (default) or `local` (this machine, no ssh).
    pub transport: Option<RawTransport>,
    pub deploy_to: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub vars: Option<OrderedMap<serde_json::Value>>,
    /// Environment variables for this host, over its stage's and the global `env`.
    pub env: Option<OrderedMap<serde_json::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[schemars(rename = "Transport")]
#[serde(rename_all = "lowercase")]
pub enum RawTransport {
    Ssh,
    Local,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "Gate")]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    pub approvals: Option<u32>,
    pub soak: Option<RawDuration>,
    pub approvers: Option<Vec<String>>,
    pub self_approval: Option<bool>,
    pub approval_ttl: Option<RawDuration>,
    pub allowed_signers: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(rename = "Rollout")]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    pub batch: Option<RawBatch>,
    pub canary: Option<u32>,
}

/// A YAML scalar that may be written as an integer or as a string
/// (`10` or `10s`, `3` or `25%`, `0600` or `"0600"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntOrStr {
    Int(i128),
    Str(String),
}

impl fmt::Display for IntOrStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrStr::Int(n) => write!(f, "{n}"),
            IntOrStr::Str(s) => f.write_str(s),
        }
    }
}

/// `30s`, `500ms`, or a bare number of seconds; parsed by validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDuration(pub IntOrStr);

/// `3` hosts or `"25%"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBatch(pub IntOrStr);

/// `"0600"`, `0600` or `600`: always read as octal digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMode(pub IntOrStr);

struct IntOrStrVisitor(&'static str);

impl Visitor<'_> for IntOrStrVisitor {
    type Value = IntOrStr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrStr, E> {
        Ok(IntOrStr::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrStr, E> {
        Ok(IntOrStr::Int(v.into()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrStr, E> {
        Ok(IntOrStr::Str(v.to_owned()))
    }
}

macro_rules! int_or_str {
    ($ty:ident, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(IntOrStrVisitor($expecting)).map($ty)
            }
        }
    };
}

int_or_str!(RawDuration, "a duration like `30s`");
int_or_str!(RawBatch, "a host count like `2` or a percentage like `25%`");
int_or_str!(RawMode, "an octal file mode like `\"0600\"`");

/// A YAML mapping kept in file order (tasks and stages run in the order they
/// are written). A key written twice is an error rather than a silent
/// overwrite.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }

        d.deserialize_map(MapVisitor(PhantomData))
    }
}
