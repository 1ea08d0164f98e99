//! The scripts of the commands that look at a stage outside a deploy
//! (`check`, `releases`, `unlock`), and the parsers of what they print.
//!
//! Pure, like [`super::commands`]: the scripts are `.sh` files of
//! [`crate::remote`], every value quoted. The scripts print facts as `key:value` lines
//! (the ledger last, verbatim); deciding what is a problem happens here, in
//! Rust, where tests can read it.

use crate::config::{Config, Strategy};
use crate::ledger::{self, Entry, EventKind};
use crate::lock::LockHolder;
use crate::remote;

use super::commands::{self, CheckSpec, HostPaths, MIN_FREE_KB};
use super::release::is_known_release;

/// What `shipit check` verifies for `config`: the same as the deploy's
/// `check` step. Linked files that a template renders into `shared/` are
/// not expected to be there beforehand.
pub fn check_spec(config: &Config) -> CheckSpec<'_> {
    let template_dests: Vec<&str> = config
        .templates
        .iter()
        .filter_map(|t| t.dest.as_str().strip_prefix("shared/"))
        .collect();
    CheckSpec {
        needs_git: config.strategy == Strategy::Git,
        needs_sha256sum: config.strategy == Strategy::Copy,
        linked_files: config
            .linked_files
            .iter()
            .map(|f| f.as_str())
            .filter(|f| !template_dests.contains(f))
            .collect(),
    }
}

/// The commands a deploy needs on the host.
fn tools(spec: &CheckSpec<'_>) -> Vec<&'static str> {
    let mut t = Vec::new();
    if spec.needs_git {
        t.push("git");
    }
    t.push("tar");
    if spec.needs_sha256sum {
        t.push("sha256sum");
    }
    t
}

/// The check a tool's finding belongs to: the tool's own name.
fn tool_check(name: &str) -> &'static str {
    ["git", "tar", "sha256sum"]
        .into_iter()
        .find(|t| *t == name)
        .unwrap_or("tools")
}

/// `shipit check`'s preflight. Changes nothing on the host (unlike the
/// deploy's `check` step, which creates the dirs): when `deploy_to` does not
/// exist yet, its nearest existing parent is examined instead. Exits 0
/// whenever it ran to its end; read the verdict with [`parse_preflight`].
pub fn preflight(p: &HostPaths, spec: &CheckSpec<'_>) -> String {
    remote::PREFLIGHT
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("tools", &tools(spec).join(" "))
        .args(&spec.linked_files)
        .done()
}

/// The deploy lock on a host, as a script saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    Free,
    /// Held; `None` when its record is missing or unreadable.
    Held(Option<LockHolder>),
}

fn parse_lock_state(stdout: &str) -> Option<LockState> {
    let mut state = None;
    let mut info = String::new();
    for line in stdout.lines() {
        match line {
            "lock:free" => state = Some(LockState::Free),
            "lock:held" => state = Some(LockState::Held(None)),
            _ => {
                if let Some(x) = line.strip_prefix("lockinfo:") {
                    info.push_str(x);
                    info.push('\n');
                }
            }
        }
    }
    match state {
        Some(LockState::Held(_)) => Some(LockState::Held(LockHolder::from_stderr(&info))),
        s => s,
    }
}

/// Whether `deploy_to` is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployTo {
    Exists,
    Missing,
    NotDir,
}

/// What [`preflight`] found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    pub deploy_to: DeployTo,
    /// The nearest existing dir at or above `deploy_to`.
    pub base: String,
    pub base_writable: bool,
    /// Dirs (relative to `deploy_to`, `.` for itself) that exist but that
    /// the login user cannot write.
    pub not_writable: Vec<String>,
    /// Tools found, with where.
    pub tools: Vec<(String, String)>,
    pub missing_tools: Vec<String>,
    /// `None` when `df` printed nothing usable.
    pub free_kb: Option<u64>,
    /// Linked files missing from `shared/`.
    pub missing_files: Vec<String>,
    pub lock: LockState,
}

/// Reads [`preflight`]'s output; `None` when it is not complete (the script
/// was cut short).
pub fn parse_preflight(stdout: &str) -> Option<Preflight> {
    let mut deploy_to = None;
    let mut out = Preflight {
        deploy_to: DeployTo::Missing,
        base: String::new(),
        base_writable: false,
        not_writable: Vec::new(),
        tools: Vec::new(),
        missing_tools: Vec::new(),
        free_kb: None,
        missing_files: Vec::new(),
        lock: LockState::Free,
    };
    for line in stdout.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "deploy_to" => {
                deploy_to = Some(match value {
                    "exists" => DeployTo::Exists,
                    "not_dir" => DeployTo::NotDir,
                    _ => DeployTo::Missing,
                })
            }
            "base" => out.base = value.to_string(),
            "base_writable" => out.base_writable = value == "yes",
            "not_writable" => out.not_writable.push(value.to_string()),
            "tool" => {
                if let Some((name, path)) = value.split_once(':') {
                    out.tools.push((name.to_string(), path.to_string()));
                }
            }
            "missing_tool" => out.missing_tools.push(value.to_string()),
            "free_kb" => out.free_kb = value.trim().parse().ok(),
            "missing_file" => out.missing_files.push(value.to_string()),
            _ => {}
        }
    }
    out.deploy_to = deploy_to?;
    out.lock = parse_lock_state(stdout)?;
    Some(out)
}

/// One line of `shipit check`'s report for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked: `deploy_to`, `git`, `tar`, `sha256sum`, `disk`,
    /// `linked_files`.
    pub check: &'static str,
    /// `false`: the host is not ready for a deploy.
    pub ok: bool,
    pub text: String,
}

fn finding(check: &'static str, ok: bool, text: String) -> Finding {
    Finding { check, ok, text }
}

fn mib(kb: u64) -> String {
    format!("{} MiB", kb / 1024)
}

impl Preflight {
    /// The verdict on everything but the lock (which is the caller's to
    /// judge: staleness depends on the machine asking).
    pub fn findings(&self, p: &HostPaths, spec: &CheckSpec<'_>) -> Vec<Finding> {
        let d = &p.deploy_to;
        let mut v = Vec::new();
        match self.deploy_to {
            DeployTo::NotDir => v.push(finding(
                "deploy_to",
                false,
                format!("`{d}` exists but is not a directory"),
            )),
            DeployTo::Missing if self.base_writable => v.push(finding(
                "deploy_to",
                true,
                format!(
                    "`{d}` does not exist yet; its nearest existing parent `{}` is writable, so a deploy can create it",
                    self.base
                ),
            )),
            DeployTo::Missing => v.push(finding(
                "deploy_to",
                false,
                format!(
                    "`{d}` does not exist and its nearest existing parent `{}` is not writable",
                    self.base
                ),
            )),
            DeployTo::Exists if self.not_writable.is_empty() => v.push(finding(
                "deploy_to",
                true,
                format!("`{d}` exists and is writable"),
            )),
            DeployTo::Exists => {
                for rel in &self.not_writable {
                    let path = if rel == "." { d.clone() } else { p.at(rel) };
                    v.push(finding(
                        "deploy_to",
                        false,
                        format!("`{path}` is not writable"),
                    ));
                }
            }
        }
        for (name, path) in &self.tools {
            v.push(finding(tool_check(name), true, format!("`{path}`")));
        }
        for name in &self.missing_tools {
            v.push(finding(
                tool_check(name),
                false,
                format!("`{name}` is not installed (not found on the login shell's PATH)"),
            ));
        }
        v.push(match self.free_kb {
            Some(kb) if kb >= MIN_FREE_KB => finding(
                "disk",
                true,
                format!("{} free under `{}`", mib(kb), self.base),
            ),
            Some(kb) => finding(
                "disk",
                false,
                format!(
                    "only {kb} KiB free under `{}`, need at least {MIN_FREE_KB} KiB",
                    self.base
                ),
            ),
            None => finding(
                "disk",
                false,
                format!(
                    "cannot read the free space under `{}` (`df -Pk`)",
                    self.base
                ),
            ),
        });
        if !spec.linked_files.is_empty() {
            if self.missing_files.is_empty() {
                v.push(finding(
                    "linked_files",
                    true,
                    format!(
                        "all present in `{}`: {}",
                        p.at("shared"),
                        spec.linked_files
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            for f in &self.missing_files {
                v.push(finding(
                    "linked_files",
                    false,
                    format!(
                        "missing linked file `shared/{f}` (`{}`)",
                        p.at(&format!("shared/{f}"))
                    ),
                ));
            }
        }
        v
    }
}

/// Marks the start of the ledger, which follows verbatim to the end of
/// [`releases`]' output.
pub const LEDGER_MARK: &str = "--- ledger";

/// `shipit releases`: the release dirs (with their `REVISION`), where
/// `current` points, then the ledger as it is. Reads only.
pub fn releases(p: &HostPaths) -> String {
    remote::RELEASES
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .set("ledger_mark", LEDGER_MARK)
        .done()
}

/// A host's releases, as [`releases`] found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReleases {
    pub deploy_to_exists: bool,
    /// Release ids (dir names that
    /// [`is_release_id`](super::release::is_release_id), or that the ledger
    /// records: `deploy --release` ids), oldest first, each
    /// with the commit in its `REVISION` (empty when unreadable).
    pub releases: Vec<(String, String)>,
    /// The dir `current` points to (its last path component), if any.
    pub current: Option<String>,
    pub ledger: ledger::Parsed,
}

/// Reads [`releases`]' output; `None` when it is not complete.
pub fn parse_releases(stdout: &str) -> Option<HostReleases> {
    let mark = format!("{LEDGER_MARK}\n");
    let (head, ledger_text) = if stdout.starts_with(&mark) {
        ("", &stdout[mark.len()..])
    } else {
        let at = stdout.find(&format!("\n{mark}"))?;
        (&stdout[..at], &stdout[at + 1 + mark.len()..])
    };
    let mut out = HostReleases {
        deploy_to_exists: false,
        releases: Vec::new(),
        current: None,
        ledger: ledger::parse(ledger_text),
    };
    for line in head.lines() {
        if line == "deploy_to:exists" {
            out.deploy_to_exists = true;
        } else if let Some(x) = line.strip_prefix("release:") {
            let (id, commit) = x.split_once(':').unwrap_or((x, ""));
            if is_known_release(id, &out.ledger.entries) {
                out.releases
                    .push((id.to_string(), commit.trim().to_string()));
            }
        } else if let Some(x) = line.strip_prefix("current:") {
            let x = x.trim_end_matches('/');
            out.current = Some(x.rsplit('/').next().unwrap_or(x).to_string());
        }
    }
    out.releases.sort();
    Some(out)
}

/// The events that say where a release stands on a host.
const STATUS_EVENTS: [EventKind; 5] = [
    EventKind::Staged,
    EventKind::Published,
    EventKind::Verified,
    EventKind::Failed,
    EventKind::RolledBack,
];

/// The latest `staged`/`published`/`verified`/`failed`/`rolled_back` entry
/// for `release` (the ledger is append-only, so the last one in file order).
pub fn release_status<'e>(entries: &'e [Entry], release: &str) -> Option<&'e Entry> {
    entries
        .iter()
        .rev()
        .find(|e| e.release == release && STATUS_EVENTS.contains(&e.event))
}

/// The word for an event in reports: `verified`, `rolled_back`...
pub fn event_name(e: EventKind) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Where hosts differ: a different `current`, or a release some hosts have
/// and others lack. One line each, `hosts disagree: ...`; empty when they
/// agree. `hosts` are the hosts that answered, in stage order.
pub fn disagreements(hosts: &[(&str, &HostReleases)]) -> Vec<String> {
    let mut out = Vec::new();
    // Groups of hosts by `current`, the largest first (ties: stage order).
    let mut groups: Vec<(Option<&str>, Vec<&str>)> = Vec::new();
    for (name, r) in hosts {
        let cur = r.current.as_deref();
        match groups.iter_mut().find(|(c, _)| *c == cur) {
            Some((_, names)) => names.push(name),
            None => groups.push((cur, vec![name])),
        }
    }
    groups.sort_by_key(|(_, names)| std::cmp::Reverse(names.len()));
    if groups.len() > 1 {
        let part = |(cur, names): &(Option<&str>, Vec<&str>)| match cur {
            Some(c) => format!("{c} on {}", names.join(", ")),
            None => format!("not set on {}", names.join(", ")),
        };
        let rest: Vec<String> = groups[1..].iter().map(part).collect();
        out.push(format!(
            "hosts disagree: current is {} but {}",
            part(&groups[0]),
            rest.join("; ")
        ));
    }
    let mut all: Vec<&str> = hosts
        .iter()
        .flat_map(|(_, r)| r.releases.iter().map(|(id, _)| id.as_str()))
        .collect();
    all.sort();
    all.dedup();
    for id in all {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for (name, r) in hosts {
            if r.releases.iter().any(|(x, _)| x == id) {
                with.push(*name);
            } else {
                without.push(*name);
            }
        }
        if !without.is_empty() {
            out.push(format!(
                "hosts disagree: release {id} is on {} but not on {}",
                with.join(", "),
                without.join(", ")
            ));
        }
        out.extend(commit_disagreement(id, hosts));
    }
    out
}

/// The commit of release `id` on a host: its `REVISION`, else the
/// ledger's last word on it; `None` when neither says.
fn commit_of<'r>(r: &'r HostReleases, id: &str) -> Option<&'r str> {
    let revision = r
        .releases
        .iter()
        .find(|(x, _)| x == id)
        .map(|(_, c)| c.as_str())
        .filter(|c| !c.is_empty());
    revision.or_else(|| {
        r.ledger
            .entries
            .iter()
            .rev()
            .find(|e| e.release == id && !e.commit.is_empty())
            .map(|e| e.commit.as_str())
    })
}

/// `hosts disagree: release ID is commit A on x but B on y`, when hosts
/// hold release `id` with different commits (two runs that named their
/// release alike): the same id is not the same release.
fn commit_disagreement(id: &str, hosts: &[(&str, &HostReleases)]) -> Option<String> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, r) in hosts {
        if !r.releases.iter().any(|(x, _)| x == id) {
            continue;
        }
        let Some(c) = commit_of(r, id) else { continue };
        match groups.iter_mut().find(|(x, _)| *x == c) {
            Some((_, names)) => names.push(name),
            None => groups.push((c, vec![name])),
        }
    }
    if groups.len() < 2 {
        return None;
    }
    groups.sort_by_key(|(_, names)| std::cmp::Reverse(names.len()));
    let short = |c: &str| c[..c.len().min(12)].to_string();
    let part = |(c, names): &(&str, Vec<&str>)| format!("{} on {}", short(c), names.join(", "));
    let rest: Vec<String> = groups[1..].iter().map(part).collect();
    Some(format!(
        "hosts disagree: release {id} is commit {} but {}",
        part(&groups[0]),
        rest.join("; ")
    ))
}

/// Reads the lock's state (for `unlock`). Reads only.
pub fn lock_state(p: &HostPaths) -> String {
    remote::LOCK_STATE
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .done()
}

/// Reads [`lock_state`]'s output; `None` when it is not complete.
pub fn parse_lock(stdout: &str) -> Option<LockState> {
    parse_lock_state(stdout)
}

/// Frees the lock, but only the one that was seen: the lock whose record
/// carries `token`, or with `token` `None` (a lock without a readable
/// record) whatever is there. With `record`, appends it to the ledger when
/// the lock was freed. Prints `result:freed`, `result:already_free` or
/// `result:changed` (the lock changed hands meanwhile and was left alone),
/// and `ledger:failed` when the record could not be written.
pub fn free_lock(p: &HostPaths, token: Option<&str>, record: Option<&Entry>) -> String {
    let record = record
        .map(|e| commands::ledger_append(p, std::slice::from_ref(e)))
        .unwrap_or_default();
    remote::FREE_LOCK
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("token", token.unwrap_or_default())
        .set("any_holder", if token.is_some() { "no" } else { "yes" })
        .set("record", &record)
        .done()
}

/// Reads a promotion's target host (changes nothing): `current:` and
/// `current_commit:` lines, then `ledger_mark` and the ledger.
pub fn promote_target(p: &HostPaths, ledger_mark: &str) -> String {
    remote::PROMOTE_TARGET
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .set("ledger_mark", ledger_mark)
        .done()
}

/// Reads the trust root of a promotion's gate on a host, and nothing
/// else: for each of `files`, in order, its owner, mode, writability and
/// bytes (see `trust_root.sh`). Changes nothing.
pub fn trust_root(files: &[String]) -> String {
    remote::TRUST_ROOT.fill().args(files).done()
}

/// What [`free_lock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freed {
    Freed,
    AlreadyFree,
    /// Someone else's lock is there now; it was left alone.
    Changed,
}

/// Reads [`free_lock`]'s output: what it did, and whether the ledger record
/// failed. `None` when it did not say.
pub fn parse_free(stdout: &str) -> Option<(Freed, bool)> {
    let mut r = None;
    let mut ledger_failed = false;
    for line in stdout.lines() {
        match line {
            "result:freed" => r = Some(Freed::Freed),
            "result:already_free" => r = Some(Freed::AlreadyFree),
            "result:changed" => r = Some(Freed::Changed),
            "ledger:failed" => ledger_failed = true,
            _ => {}
        }
    }
    r.map(|r| (r, ledger_failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;
    use std::time::Duration;

    use crate::transport::{local::LocalTransport, CommandOutput, Transport};

    fn spec() -> CheckSpec<'static> {
        CheckSpec {
            needs_git: true,
            needs_sha256sum: false,
            linked_files: vec![".env", "config/database.yml"],
        }
    }

    async fn run(s: &str) -> CommandOutput {
        let out = LocalTransport::new("localhost")
            .run(s, None, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(out.success(), "{s}\n{}", out.stderr_str());
        out
    }

    fn holder(user: &str, token: &str) -> LockHolder {
        LockHolder {
            user: user.into(),
            machine: "build-7".into(),
            pid: 42,
            time: "2026-11-24T19:01:02Z".into(),
            stage: "staging".into(),
            message: "db maintenance".into(),
            token: token.into(),
            process: None,
        }
    }

    use crate::ledger::test_entry as entry;
    use crate::ledger::LEDGER_PATH;
    use crate::plan::commands::LOCK_DIR;

    fn listing(path: &Path) -> Vec<String> {
        let mut v = walk(path);
        v.sort();
        v
    }

    fn walk(path: &Path) -> Vec<String> {
        let mut v = vec![path.display().to_string()];
        if path.is_dir() && !path.is_symlink() {
            for e in fs::read_dir(path).unwrap() {
                v.extend(walk(&e.unwrap().path()));
            }
        }
        v
    }

    #[test]
    fn check_spec_skips_linked_files_a_template_renders() {
        let yml = "application: shop\nrepository: /tmp/x\nlinked_files: [.env, config/db.yml]\n\
templates:\n  - { src: t.tera, dest: shared/.env }\n\
stages:\n  s:\n    hosts:\n      - { host: a, deploy_to: /srv/a }\n";
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("t.tera"), "x").unwrap();
        let path = dir.path().join("deploy.yml");
        fs::write(&path, yml).unwrap();
        let config = crate::config::load(&path).unwrap();
        let s = check_spec(&config);
        assert!(s.needs_git);
        assert_eq!(s.linked_files, vec!["config/db.yml"]);
    }

    #[test]
    fn preflight_quotes_paths_and_never_writes() {
        let p = HostPaths::new("/srv/my app/$(touch x)");
        let s = preflight(&p, &spec());
        assert!(s.starts_with("deploy_to='/srv/my app/$(touch x)'\n"), "{s}");
        assert!(s.contains("tools='git tar'\n"), "{s}");
        assert!(s.contains("set -- '.env'"), "{s}");
        assert!(!s.contains(" /srv/my app"), "{s}");
        for word in ["mkdir", "rm ", "touch ", ">>", "mv ", "ln "] {
            let unquoted = s.replace("'/srv/my app/$(touch x)'", "");
            assert!(!unquoted.contains(word), "`{word}` in\n{s}");
        }
        assert!(s.contains("df -Pk \"$base\""), "{s}");
        assert!(!s.contains("sha256sum"), "{s}");
        let copy = preflight(
            &p,
            &CheckSpec {
                needs_git: false,
                needs_sha256sum: true,
                linked_files: vec![],
            },
        );
        assert!(copy.contains("tools='tar sha256sum'\n"), "{copy}");
    }

    #[test]
    fn preflight_findings_name_each_problem() {
        let p = HostPaths::new("/srv/shop");
        let out = "deploy_to:exists\nbase:/srv/shop\nbase_writable:yes\nnot_writable:releases\n\
tool:tar:/usr/bin/tar\nmissing_tool:git\nfree_kb:1024\nmissing_file:.env\nlock:free\n";
        let pf = parse_preflight(out).unwrap();
        let f = pf.findings(&p, &spec());
        let bad: Vec<String> = f
            .iter()
            .filter(|f| !f.ok)
            .map(|f| format!("{}: {}", f.check, f.text))
            .collect();
        assert_eq!(
            bad,
            [
                "deploy_to: `/srv/shop/releases` is not writable",
                "git: `git` is not installed (not found on the login shell's PATH)",
                "disk: only 1024 KiB free under `/srv/shop`, need at least 51200 KiB",
                "linked_files: missing linked file `shared/.env` (`/srv/shop/shared/.env`)",
            ]
        );
        assert!(f.iter().any(|f| f.ok && f.check == "tar"));
    }

    #[test]
    fn preflight_findings_when_all_is_well_or_deploy_to_is_new() {
        let p = HostPaths::new("/srv/shop");
        let out = "deploy_to:missing\nbase:/srv\nbase_writable:yes\n\
tool:git:/usr/bin/git\ntool:tar:/usr/bin/tar\nfree_kb:1048576\nlock:free\n";
        let pf = parse_preflight(out).unwrap();
        let spec = CheckSpec {
            needs_git: true,
            needs_sha256sum: false,
            linked_files: vec![],
        };
        let f = pf.findings(&p, &spec);
        assert!(f.iter().all(|f| f.ok), "{f:?}");
        assert!(f[0].text.contains("does not exist yet"), "{f:?}");
        assert!(f.iter().any(|f| f.text == "1024 MiB free under `/srv`"));
        let blocked = out.replace("base_writable:yes", "base_writable:no");
        let f = parse_preflight(&blocked).unwrap().findings(&p, &spec);
        assert_eq!(
            f[0].text,
            "`/srv/shop` does not exist and its nearest existing parent `/srv` is not writable"
        );
        assert!(!f[0].ok);
        let no_df = out.replace("free_kb:1048576", "free_kb:");
        let f = parse_preflight(&no_df).unwrap().findings(&p, &spec);
        assert!(f.iter().any(|f| f.check == "disk" && !f.ok), "{f:?}");
        // Cut short: not a verdict.
        assert_eq!(parse_preflight("deploy_to:exists\nbase:/srv\n"), None);
    }

    #[tokio::test]
    async fn preflight_runs_for_real_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app dir").join("deep");
        let p = HostPaths::new(d.to_str().unwrap());
        let before = listing(dir.path());
        let out = run(&preflight(&p, &spec())).await;
        assert_eq!(listing(dir.path()), before, "preflight changed files");
        let pf = parse_preflight(&out.stdout_str()).unwrap();
        assert_eq!(pf.deploy_to, DeployTo::Missing);
        assert_eq!(pf.base, dir.path().to_str().unwrap());
        assert!(pf.base_writable);
        assert!(pf.free_kb.is_some(), "{}", out.stdout_str());
        assert!(pf.tools.iter().any(|(t, _)| t == "tar"));
        assert_eq!(pf.missing_files, [".env", "config/database.yml"]);
        assert_eq!(pf.lock, LockState::Free);

        // Now with deploy_to, one linked file and a held lock.
        fs::create_dir_all(d.join("shared/config")).unwrap();
        fs::write(d.join("shared/config/database.yml"), "x").unwrap();
        fs::create_dir_all(d.join(".shipit/lock")).unwrap();
        let h = holder("bob", "bobs");
        fs::write(
            d.join(".shipit/lock/info"),
            format!("{}\n", serde_json::to_string(&h).unwrap()),
        )
        .unwrap();
        let before = listing(dir.path());
        let out = run(&preflight(&p, &spec())).await;
        assert_eq!(listing(dir.path()), before, "preflight changed files");
        let pf = parse_preflight(&out.stdout_str()).unwrap();
        assert_eq!(pf.deploy_to, DeployTo::Exists);
        assert!(pf.not_writable.is_empty());
        assert_eq!(pf.missing_files, [".env"]);
        assert_eq!(pf.lock, LockState::Held(Some(h)));

        // A lock without a record is still held.
        fs::remove_file(d.join(".shipit/lock/info")).unwrap();
        let out = run(&preflight(&p, &spec())).await;
        let pf = parse_preflight(&out.stdout_str()).unwrap();
        assert_eq!(pf.lock, LockState::Held(None));
    }

    #[tokio::test]
    async fn releases_runs_for_real_and_reads_dirs_current_and_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("it's here");
        let p = HostPaths::new(d.to_str().unwrap());
        let out = run(&releases(&p)).await;
        let r = parse_releases(&out.stdout_str()).unwrap();
        assert!(!r.deploy_to_exists);
        assert!(r.releases.is_empty() && r.current.is_none());
        assert_eq!(r.ledger, ledger::Parsed::default());

        for (id, rev) in [("20261120T080000Z", "aaa"), ("20261124T190102Z", "bbb")] {
            fs::create_dir_all(d.join("releases").join(id)).unwrap();
            fs::write(
                d.join("releases").join(id).join("REVISION"),
                format!("{rev}\n"),
            )
            .unwrap();
        }
        fs::create_dir_all(d.join("releases/not-a-release")).unwrap();
        fs::write(d.join("releases/.20261124T190102Z.tar"), "").unwrap();
        std::os::unix::fs::symlink("releases/20261124T190102Z", d.join("current")).unwrap();
        fs::create_dir_all(d.join(".shipit")).unwrap();
        let good = serde_json::to_string(&entry(EventKind::Verified, "20261124T190102Z")).unwrap();
        fs::write(
            d.join(LEDGER_PATH),
            format!("{good}\nnot json\n\n{good}\n{{\"event\":\"staged\"}}\n"),
        )
        .unwrap();
        let out = run(&releases(&p)).await;
        let r = parse_releases(&out.stdout_str()).unwrap();
        assert!(r.deploy_to_exists);
        assert_eq!(
            r.releases,
            [
                ("20261120T080000Z".to_string(), "aaa".to_string()),
                ("20261124T190102Z".to_string(), "bbb".to_string())
            ]
        );
        assert_eq!(r.current.as_deref(), Some("20261124T190102Z"));
        assert_eq!(r.ledger.entries.len(), 2);
        // Line numbers are the file's.
        assert_eq!(r.ledger.bad_lines, [2, 5]);
    }

    #[test]
    fn parse_releases_needs_the_ledger_mark() {
        assert_eq!(
            parse_releases("deploy_to:exists\nrelease:20261120T080000Z:a\n"),
            None
        );
        let r = parse_releases("--- ledger\n").unwrap();
        assert!(r.releases.is_empty());
        // An absolute `current` target counts by its last component.
        let r =
            parse_releases("current:/srv/shop/releases/20261120T080000Z\n--- ledger\n").unwrap();
        assert_eq!(r.current.as_deref(), Some("20261120T080000Z"));
    }

    #[test]
    fn status_is_the_latest_release_event() {
        let a = "20261120T080000Z";
        let b = "20261124T190102Z";
        let entries = vec![
            entry(EventKind::Staged, a),
            entry(EventKind::Published, a),
            entry(EventKind::Verified, a),
            entry(EventKind::Staged, b),
            entry(EventKind::Published, b),
            entry(EventKind::Failed, b),
            entry(EventKind::RolledBack, a),
            // Not about where a release stands.
            entry(EventKind::Approved, a),
            entry(EventKind::Unlocked, ""),
        ];
        let s = |id| release_status(&entries, id).map(|e| event_name(e.event));
        assert_eq!(s(a).as_deref(), Some("rolled_back"));
        assert_eq!(s(b).as_deref(), Some("failed"));
        assert_eq!(s("20261201T000000Z"), None);
    }

    fn host(current: Option<&str>, ids: &[&str]) -> HostReleases {
        HostReleases {
            deploy_to_exists: true,
            releases: ids.iter().map(|i| (i.to_string(), String::new())).collect(),
            current: current.map(str::to_string),
            ledger: ledger::Parsed::default(),
        }
    }

    #[test]
    fn disagreements_name_hosts_and_releases() {
        let (a, b) = ("20261120T080000Z", "20261124T190102Z");
        let same = host(Some(b), &[a, b]);
        assert!(disagreements(&[("web-01", &same), ("web-02", &same)]).is_empty());
        assert!(disagreements(&[]).is_empty());

        let behind = host(Some(a), &[a, b]);
        assert_eq!(
            disagreements(&[("web-01", &same), ("web-02", &behind), ("web-03", &same)]),
            [format!(
                "hosts disagree: current is {b} on web-01, web-03 but {a} on web-02"
            )]
        );

        let lacking = host(Some(a), &[a]);
        let fresh = host(None, &[]);
        assert_eq!(
            disagreements(&[("web-01", &same), ("web-02", &lacking), ("web-03", &fresh)]),
            [
                format!(
                    "hosts disagree: current is {b} on web-01 but {a} on web-02; not set on web-03"
                ),
                format!("hosts disagree: release {a} is on web-01, web-02 but not on web-03"),
                format!("hosts disagree: release {b} is on web-01 but not on web-02, web-03"),
            ]
        );
    }

    #[test]
    fn the_same_id_with_different_commits_is_a_disagreement() {
        let id = "build-0001";
        let with = |revision: &str| HostReleases {
            releases: vec![(id.to_string(), revision.to_string())],
            ..host(Some(id), &[])
        };
        let (x, y) = ("a".repeat(40), "b".repeat(40));
        let (one, two, three) = (with(&x), with(&y), with(&x));
        assert_eq!(
            disagreements(&[("web-01", &one), ("web-02", &two), ("web-03", &three)]),
            [format!(
                "hosts disagree: release {id} is commit {} on web-01, web-03 but {} on web-02",
                &x[..12],
                &y[..12]
            )]
        );
        assert!(disagreements(&[("web-01", &one), ("web-03", &three)]).is_empty());
        // A REVISION that cannot be read: the ledger's commit speaks.
        let mut unread = with("");
        let mut staged = crate::ledger::test_entry(EventKind::Staged, id);
        staged.commit = y.clone();
        unread.ledger.entries.push(staged);
        assert_eq!(
            disagreements(&[("web-01", &one), ("web-02", &unread)]).len(),
            1
        );
        // Neither says: nothing to compare.
        assert!(disagreements(&[("web-01", &one), ("web-02", &with(""))]).is_empty());
    }

    #[tokio::test]
    async fn free_lock_frees_only_the_lock_it_saw() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app");
        let p = HostPaths::new(d.to_str().unwrap());
        let free = |token: Option<&str>, record: Option<&Entry>| free_lock(&p, token, record);

        let out = run(&free(Some("T1"), None)).await;
        assert_eq!(
            parse_free(&out.stdout_str()),
            Some((Freed::AlreadyFree, false))
        );
        assert!(!d.exists(), "freeing a free lock created files");

        let h = serde_json::to_string(&holder("bob", "T1")).unwrap();
        let took = run(&commands::lock(&p, &h)).await;
        assert!(took.success());
        // Someone else's lock now: left alone.
        let out = run(&free(Some("T2"), None)).await;
        assert_eq!(parse_free(&out.stdout_str()), Some((Freed::Changed, false)));
        assert!(d.join(LOCK_DIR).exists());
        assert_eq!(
            parse_lock(&run(&lock_state(&p)).await.stdout_str()),
            Some(LockState::Held(Some(holder("bob", "T1"))))
        );

        // Forced, with a record.
        let mut e = entry(EventKind::Unlocked, "");
        e.detail = Some("freed the lock of `bob`; it's gone".into());
        let out = run(&free(Some("T1"), Some(&e))).await;
        assert_eq!(parse_free(&out.stdout_str()), Some((Freed::Freed, false)));
        assert!(!d.join(LOCK_DIR).exists());
        assert_eq!(
            parse_lock(&run(&lock_state(&p)).await.stdout_str()),
            Some(LockState::Free)
        );
        let ledger = ledger::parse(&fs::read_to_string(d.join(LEDGER_PATH)).unwrap());
        assert_eq!(ledger.entries.len(), 1, "{ledger:?}");
        assert_eq!(ledger.entries[0].event, EventKind::Unlocked);
        assert_eq!(ledger.entries[0].detail, e.detail);
        assert!(ledger.entries[0].time.ends_with('Z'));

        // A lock without a record goes with no token.
        fs::create_dir_all(d.join(LOCK_DIR)).unwrap();
        let out = run(&free(None, None)).await;
        assert_eq!(parse_free(&out.stdout_str()), Some((Freed::Freed, false)));
        assert!(!d.join(LOCK_DIR).exists());
    }
}
