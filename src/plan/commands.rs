//! The shell scripts each step sends to a host. Pure functions that fill in
//! the `.sh` files of [`crate::remote`]: every value from config or the run
//! is quoted there, and every path is built from `deploy_to` plus a
//! validated relative path.

use std::time::Duration;

use crate::ledger::{Entry, EventKind};
use crate::remote::{self, shell::join, shell::parent};

use super::release::ReleaseInfo;

/// Exit status a lock script uses to say the lock is held by someone else.
pub const LOCKED_STATUS: i32 = 75;

/// Exit status of `create_release` when the release dir exists already
/// (not this run's: nothing was made, nothing is to be removed).
pub const RELEASE_EXISTS_STATUS: i32 = 73;

/// Where the lock lives, relative to `deploy_to`.
pub const LOCK_DIR: &str = ".shipit/lock";

/// The smallest free space (KiB) `check` accepts on `deploy_to`'s file system.
pub const MIN_FREE_KB: u64 = 50 * 1024;

/// Paths on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    pub deploy_to: String,
    /// The name of the link to the live release in `deploy_to`
    /// (`current_path`, default `current`).
    pub current: String,
}

impl HostPaths {
    pub fn new(deploy_to: &str) -> Self {
        HostPaths {
            deploy_to: deploy_to.trim_end_matches('/').to_string(),
            current: crate::config::DEFAULT_CURRENT_PATH.to_string(),
        }
    }
    /// The paths of `host` with the config's `current_path`.
    pub fn of(config: &crate::config::Config, host: &crate::config::Host) -> Self {
        HostPaths {
            current: config.current_path.clone(),
            ..HostPaths::new(&host.deploy_to)
        }
    }
    /// The paths of a host of a plan.
    pub fn of_plan(host: &super::graph::PlanHost) -> Self {
        HostPaths {
            current: host.current.clone(),
            ..HostPaths::new(&host.deploy_to)
        }
    }
    /// The link to the live release, where tasks run.
    pub fn current(&self) -> String {
        self.at(&self.current)
    }
    pub fn at(&self, rel: &str) -> String {
        join(&self.deploy_to, rel)
    }
    pub fn release(&self, id: &str) -> String {
        self.at(&format!("releases/{id}"))
    }
    /// Where release `id`'s archive waits to be unpacked.
    pub fn archive(&self, id: &str) -> String {
        self.at(&format!("releases/.{id}.tar"))
    }
    pub fn repo(&self) -> String {
        self.at("repo")
    }
}

/// Takes the lock: the holder's record is written into a fresh directory
/// that is then renamed to `.shipit/lock` (atomic, and refused when the
/// lock exists), so the lock never exists without its whole record. When
/// it is held, prints the holder's record to stderr and where `current`
/// points to stdout, and exits [`LOCKED_STATUS`]. On success prints the
/// names of existing releases (so the run can mint a later id), where
/// `current` points and the ledger's lines (so the run can decide what to
/// clean up).
pub fn lock(p: &HostPaths, holder_json: &str) -> String {
    remote::LOCK
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .set("holder", holder_json)
        .set("locked_status", &LOCKED_STATUS.to_string())
        .done()
}

/// Reads where `current` points, changing nothing: `current:TARGET` and
/// `current_commit:SHA` lines, for [`parse_lock_output`].
pub fn read_current(p: &HostPaths) -> String {
    remote::READ_CURRENT
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .done()
}

/// What a successful lock script reported about the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockReport {
    pub releases: Vec<String>,
    /// The release `current` pointed to (its dir name), if any.
    pub current: Option<String>,
    /// The commit of that release (its REVISION).
    pub current_commit: Option<String>,
    /// The host's ledger, lines that do not parse left out.
    pub ledger: Vec<Entry>,
}

pub fn parse_lock_output(stdout: &str) -> LockReport {
    let mut r = LockReport::default();
    let mut ledger = String::new();
    for line in stdout.lines() {
        if let Some(x) = line.strip_prefix("ledger:") {
            ledger.push_str(x);
            ledger.push('\n');
        } else if let Some(x) = line.strip_prefix("release:") {
            r.releases.push(x.to_string());
        } else if let Some(x) = line.strip_prefix("current_commit:") {
            r.current_commit = Some(x.trim().to_string());
        } else if let Some(x) = line.strip_prefix("current:") {
            r.current = Some(x.rsplit('/').next().unwrap_or(x).to_string());
        }
    }
    r.ledger = crate::ledger::parse(&ledger).entries;
    r
}

/// Frees the lock only when it is still ours (its record carries `token`).
/// The lock is renamed away before it is removed, so it never exists
/// without its record.
pub fn unlock(p: &HostPaths, token: &str) -> String {
    remote::UNLOCK
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("token", token)
        .done()
}

/// What `check` verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec<'a> {
    pub needs_git: bool,
    /// Strategy copy checks the archive's digest on the host.
    pub needs_sha256sum: bool,
    /// Linked files that must already be in `shared/` (those not rendered
    /// from a template by this run).
    pub linked_files: Vec<&'a str>,
}

/// Preflight: dirs exist and are writable, tools present, linked files in
/// place, enough disk space. Reports every problem, then fails if any.
pub fn check(p: &HostPaths, spec: &CheckSpec<'_>) -> String {
    let mut tools = vec!["tar"];
    if spec.needs_git {
        tools.insert(0, "git");
    }
    if spec.needs_sha256sum {
        tools.push("sha256sum");
    }
    remote::CHECK
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("tools", &tools.join(" "))
        .set("min_free_kb", &MIN_FREE_KB.to_string())
        .args(&spec.linked_files)
        .done()
}

/// Strategy git: clone the mirror once, then fetch; then make sure the
/// commit is there.
pub fn fetch_git(p: &HostPaths, repository: &str, commit: &str) -> String {
    remote::FETCH_GIT
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("repository", repository)
        .set("commit", commit)
        .done()
}

/// Strategy copy: receives the archive on stdin into
/// `releases/.ID.tar`, and keeps it only when its digest matches.
pub fn upload_artifact(p: &HostPaths, r: &ReleaseInfo) -> String {
    remote::UPLOAD_ARTIFACT
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("release", &r.id)
        .set("digest", r.digest.as_deref().unwrap_or_default())
        .done()
}

/// Strategy copy: unpacks the uploaded archive into a new release dir,
/// writes REVISION and records `staged` (with the digest).
pub fn create_release_copy(p: &HostPaths, r: &ReleaseInfo, host: &str) -> String {
    create_release(p, r, host, "none", None)
}

/// Appends ledger lines, timestamped on the host, in one write; a line cut
/// short by a crash is ended first (see `ledger_append.sh`).
pub fn ledger_append(p: &HostPaths, entries: &[Entry]) -> String {
    remote::LEDGER_APPEND
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .args(entries.iter().flat_map(|e| {
            let (a, b) = e.split_for_shell();
            [a, b]
        }))
        .done()
}

/// Appends one complete ledger line (built and timestamped by shipit).
pub fn ledger_append_raw(p: &HostPaths, line: &str) -> String {
    remote::LEDGER_APPEND_RAW
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("line", line)
        .done()
}

/// A ledger entry for this run on `host`.
pub fn entry(r: &ReleaseInfo, host: &str, event: EventKind) -> Entry {
    Entry {
        event,
        release: r.id.to_string(),
        commit: r.commit.to_string(),
        digest: r.digest.clone(),
        application: r.application.clone(),
        stage: r.stage.to_string(),
        host: host.to_string(),
        user: r.user.clone(),
        build_url: r.build_url.clone(),
        detail: None,
        time: String::new(),
    }
}

/// Exports the commit from the mirror into a new release dir, writes
/// REVISION and REVISION_TIME and records `staged`. With `tree`
/// (`repo_tree`), only that directory is exported. With `submodules` (the
/// superproject's `repository`, which relative submodule URLs are taken
/// against), the commit's submodules are filled in too before `staged`.
pub fn create_release_git(
    p: &HostPaths,
    r: &ReleaseInfo,
    host: &str,
    tree: Option<&str>,
    submodules: Option<&str>,
) -> String {
    let Some(repository) = submodules else {
        return create_release(p, r, host, "git", tree);
    };
    let modules = remote::SUBMODULES_GIT
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("release", &r.id)
        .set("commit", &r.commit)
        .set("repository", repository)
        .set("tree", tree.unwrap_or_default())
        .done();
    create_release_script(p, r, "git", tree)
        + &modules
        + &ledger_append(p, &[entry(r, host, EventKind::Staged)])
}

/// A new release dir filled from the release's archive (written first from
/// the git mirror when `export` is `git`, else already uploaded), then
/// REVISION and `staged`.
fn create_release(
    p: &HostPaths,
    r: &ReleaseInfo,
    host: &str,
    export: &str,
    tree: Option<&str>,
) -> String {
    create_release_script(p, r, export, tree)
        + &ledger_append(p, &[entry(r, host, EventKind::Staged)])
}

/// The release dir, filled from its archive, with REVISION and
/// REVISION_TIME (no ledger line).
fn create_release_script(
    p: &HostPaths,
    r: &ReleaseInfo,
    export: &str,
    tree: Option<&str>,
) -> String {
    remote::CREATE_RELEASE
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("release", &r.id)
        .set("commit", &r.commit)
        .set(
            "commit_time",
            &r.commit_time.map(|t| t.to_string()).unwrap_or_default(),
        )
        .set("export", export)
        .set("tree", tree.unwrap_or_default())
        .set("exists_status", &RELEASE_EXISTS_STATUS.to_string())
        .done()
}

/// Symlinks linked dirs and files from `shared/` into the release, creating
/// shared dirs that are missing (with `seed`, copied from the release when
/// it has them). A linked path whose parent inside the
/// release is a symlink leading out of `deploy_to` (a repository can
/// commit `tmp -> /var`) is refused: the link, and the `rm -rf` before it,
/// would land outside.
pub fn link_shared(
    p: &HostPaths,
    release_id: &str,
    dirs: &[&str],
    files: &[&str],
    seed: bool,
) -> String {
    let pairs = dirs
        .iter()
        .flat_map(|d| ["dir", *d])
        .chain(files.iter().flat_map(|f| ["file", *f]));
    remote::LINK_SHARED
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("release", release_id)
        .set("seed", if seed { "1" } else { "" })
        .args(pairs)
        .done()
}

/// Writes stdin to `dest` with `mode`, atomically (temp file + rename).
pub fn upload(dest: &str, mode: u32, tag: &str) -> String {
    remote::UPLOAD
        .fill()
        .set_path("dest", dest)
        .set_path("dir", parent(dest))
        .set("mode", &format!("{mode:o}"))
        .set("tag", tag)
        .done()
}

fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

/// Runs a user command in `dir`, retrying `retries` times `interval` apart,
/// with `env` (the host's rendered `env:`) exported for it. `run` is the
/// user's shell command (rendered); it is the one thing here that is meant
/// to be shell.
pub fn task(
    p: &HostPaths,
    r: &ReleaseInfo,
    dir: &str,
    run: &str,
    env: &[(String, String)],
    retries: u32,
    interval: Duration,
) -> String {
    // The environment every task and hook sees.
    remote::TASK
        .fill()
        .set("SHIPIT_RELEASE", &r.id)
        .set("SHIPIT_COMMIT", &r.commit)
        .set("SHIPIT_STAGE", &r.stage)
        .set_path("SHIPIT_RELEASE_PATH", &p.release(&r.id))
        .set_path("SHIPIT_DEPLOY_TO", &p.deploy_to)
        .set_path("task_dir", dir)
        .set("task_run", run)
        .set("task_retries", &retries.to_string())
        .set("task_interval", &secs(interval))
        .args(env.iter().flat_map(|(n, v)| [n.as_str(), v.as_str()]))
        .done()
}

/// Smoke test: the task's command with retries, then records `verified`.
pub fn smoke_test(
    p: &HostPaths,
    r: &ReleaseInfo,
    host: &str,
    run: &str,
    env: &[(String, String)],
    retries: u32,
    interval: Duration,
) -> String {
    task(p, r, &p.current(), run, env, retries, interval)
        + &ledger_append(p, &[entry(r, host, EventKind::Verified)])
}

/// A load balancer's `drain` or `undrain` command for one host (`run`,
/// rendered for it), then `wait` (connection draining; zero for an
/// undrain). Runs with `sh -c` where the command says: on the machine
/// running shipit or on the host.
pub fn load_balancer(stage: &str, host: &str, run: &str, wait: Duration) -> String {
    remote::LOAD_BALANCER
        .fill()
        .set("SHIPIT_HOST", host)
        .set("SHIPIT_STAGE", stage)
        .set("lb_run", run)
        .set("lb_wait", &secs(wait))
        .done()
}

/// Switches `current` atomically (temp link + rename) and records
/// `published`.
pub fn publish(p: &HostPaths, r: &ReleaseInfo, host: &str) -> String {
    remote::PUBLISH
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .set("release", &r.id)
        .done()
        + &ledger_append(p, &[entry(r, host, EventKind::Published)])
}

/// Appends the Capistrano-style line to `revisions.log`.
pub fn record(p: &HostPaths, r: &ReleaseInfo) -> String {
    let line = format!(
        "Branch {} (at {}) deployed as release {} by {}",
        r.reference, r.commit, r.id, r.user
    );
    remote::RECORD
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("line", &line)
        .done()
}

/// Removes the releases `remove` (chosen by [`super::cleanup::to_remove`]
/// from what the lock step read), and only those; one that is not a
/// release id or that `current` points at is left alone. Prints
/// `removed ID` for each.
pub fn cleanup(p: &HostPaths, remove: &[String]) -> String {
    remote::CLEANUP
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .args(remove)
        .done()
}

/// The cleanup step of a plan made before the lock step read the host
/// (`shipit plan`): says how the releases to remove will be chosen, and
/// removes nothing.
pub fn cleanup_pending(keep: u32) -> String {
    remote::CLEANUP_PENDING
        .fill()
        .set("keep", &keep.to_string())
        .done()
}

/// Undo of a staging phase that did not complete: remove the staged release
/// dir and record `failed` (best effort: a record that cannot be written
/// prints `ledger:failed`, see [`best_effort`]).
pub fn discard_staged(p: &HostPaths, r: &ReleaseInfo, host: &str, why: &str) -> String {
    let mut e = entry(r, host, EventKind::Failed);
    e.detail = Some(why.to_string());
    remote::DISCARD_STAGED
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .set("release", &r.id)
        .done()
        + &best_effort(&ledger_append(p, &[e]))
}

/// Runs the filled script `record` (a ledger append) so that its failure
/// (a full disk) does not stop what follows: it prints `ledger:failed`
/// instead (see [`UndoReport::ledger_failed`]).
pub fn best_effort(record: &str) -> String {
    remote::BEST_EFFORT.fill().set("script", record).done()
}

/// Undo of a publish: points `current` back at `previous` (or removes it
/// when there was none) and records `failed` for this release.
pub fn switch_back(p: &HostPaths, r: &ReleaseInfo, host: &str, previous: Option<&str>) -> String {
    let mut e = entry(r, host, EventKind::Failed);
    e.detail = Some(match previous {
        Some(prev) => format!("switched back to {prev}"),
        None => "switched back: no previous release".to_string(),
    });
    remote::SWITCH_BACK
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .set("release", &r.id)
        .set("previous", previous.unwrap_or_default())
        .done()
        + &ledger_append(p, &[e])
}

/// The stop flag of a run on a host: when it exists, the run's chained
/// scripts start no further step (an interrupt).
pub fn stop_flag(p: &HostPaths, release_id: &str) -> String {
    p.at(&format!(".shipit/stop-{release_id}"))
}

/// A rendered `restart` or `smoke_test` command with its retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub run: String,
    /// The host's rendered `env:`.
    pub env: Vec<(String, String)>,
    pub retries: u32,
    pub interval: Duration,
}

/// Undo of the publish of `r` on one host, whatever point the publish
/// reached (it may have failed, or lost its connection, after `current`
/// was renamed). When `current` points at `r`: back to `previous` (or no
/// `current` when there was none), `failed` recorded for `r`, then the
/// previous release restarted and smoke-tested on the host and recorded
/// `published` and `verified` again, so the ledger says which release is
/// live and good; last, where `current` points. Otherwise `current` was
/// never switched: the script says so and changes nothing (the run then
/// discards the staged release, [`discard_staged`]). Records are best
/// effort ([`best_effort`]); the switch, restart or smoke test failing
/// fails the script. What it said is read by [`parse_undo_output`].
pub fn undo_publish(
    p: &HostPaths,
    r: &ReleaseInfo,
    host: &str,
    previous: Option<&ReleaseInfo>,
    restart: Option<&HookCommand>,
    smoke: Option<&HookCommand>,
) -> String {
    let mut failed = entry(r, host, EventKind::Failed);
    failed.detail = Some(match previous {
        Some(prev) => format!("switched back to {}", prev.id),
        None => "switched back: no previous release".to_string(),
    });
    let mut s = remote::UNDO_SWITCH
        .fill()
        .set_path("deploy_to", &p.deploy_to)
        .set("current", &p.current)
        .set("release", &r.id)
        .set(
            "previous",
            previous.map(|x| x.id.as_str()).unwrap_or_default(),
        )
        .done();
    s.push_str(&best_effort(&ledger_append(p, &[failed])));
    if let Some(prev) = previous {
        s.push_str(&best_effort(&ledger_append(
            p,
            &[entry(prev, host, EventKind::Published)],
        )));
        let guarded = |h: &HookCommand, message: &str| {
            remote::GUARDED
                .fill()
                .set(
                    "script",
                    &task(p, prev, &p.current(), &h.run, &h.env, h.retries, h.interval),
                )
                .set("message", message)
                .done()
        };
        if let Some(h) = restart {
            s.push_str(&guarded(h, "restart of the previous release failed"));
        }
        if let Some(h) = smoke {
            s.push_str(&guarded(h, "smoke test of the previous release failed"));
            s.push_str(&best_effort(&ledger_append(
                p,
                &[entry(prev, host, EventKind::Verified)],
            )));
        }
    }
    s + &read_current(p)
}

/// What an undo script ([`undo_publish`], [`discard_staged`]) said about
/// its host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UndoReport {
    /// `Some(true)`: `current` pointed at this run's release and was
    /// pointed back; `Some(false)`: it had never been switched; `None`: the
    /// script did not say (it did not run, or was cut off).
    pub switched_back: Option<bool>,
    /// A ledger record could not be written (a full disk).
    pub ledger_failed: bool,
    /// The release `current` points at once the script ended (its dir
    /// name), when it said.
    pub current: Option<String>,
}

/// Reads what [`undo_publish`] or [`discard_staged`] printed. Only whole
/// lines count, and the last `current:` line (the script prints it last).
pub fn parse_undo_output(stdout: &str) -> UndoReport {
    let mut r = UndoReport::default();
    for line in stdout.lines() {
        match line {
            "undo:switched_back" => r.switched_back = Some(true),
            "undo:not_switched" => r.switched_back = Some(false),
            "ledger:failed" => r.ledger_failed = true,
            _ => {
                if let Some(x) = line.strip_prefix("current:") {
                    let x = x.trim_end_matches('/');
                    r.current = Some(x.rsplit('/').next().unwrap_or(x).to_string());
                }
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel() -> ReleaseInfo {
        ReleaseInfo {
            id: "20261124T190102Z".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            reference: "main".into(),
            user: "alice".into(),
            application: "shop".into(),
            stage: "staging".into(),
            build_url: None,
            digest: None,
            commit_time: None,
        }
    }

    #[test]
    fn paths_are_quoted_even_when_hostile() {
        let p = HostPaths::new("/srv/my app/$(touch x)");
        let s = link_shared(&p, "20261124T190102Z", &["log"], &[".env"], false);
        assert!(s.starts_with("deploy_to='/srv/my app/$(touch x)'\n"), "{s}");
        assert!(s.contains("set -- 'dir' 'log' 'file' '.env'\n"), "{s}");
        assert!(!s.contains(" /srv/my app"), "{s}");
    }

    #[test]
    fn publish_switches_with_a_temp_link_and_rename() {
        let p = HostPaths::new("/srv/shop");
        let s = publish(&p, &rel(), "web-1");
        assert!(s.contains("release='20261124T190102Z'\n"), "{s}");
        assert!(s.contains("ln -sfn \"releases/$release\" \"$tmp\""), "{s}");
        assert!(s.contains("current='current'\n"), "{s}");
        assert!(s.contains("mv -fT \"$tmp\" \"$deploy_to/$current\""), "{s}");
        assert!(s.contains("\"event\":\"published\""));
    }

    #[test]
    fn lock_renames_a_prepared_dir_and_uses_a_distinct_status() {
        let s = lock(&HostPaths::new("/srv/shop"), "{\"user\":\"alice\"}");
        assert!(s.contains("holder='{\"user\":\"alice\"}'\n"), "{s}");
        assert!(s.contains("mv -T \"$tmp\" \"$lock\""), "{s}");
        assert!(s.contains("locked_status='75'\n"), "{s}");
    }

    #[test]
    fn the_lock_report_carries_the_ledger() {
        let line = |ev: &str, id: &str| {
            format!("{{\"event\":\"{ev}\",\"release\":\"{id}\",\"commit\":\"c\",\"application\":\"a\",\"stage\":\"s\",\"host\":\"h\",\"user\":\"u\",\"time\":\"t\"}}")
        };
        let out = format!(
            "release:20260101T000001Z\nrelease:repo\ncurrent:releases/20260101T000001Z\ncurrent_commit:abc\nledger:{}\nledger:not json\nledger:\nledger:{}\n",
            line("staged", "20260101T000001Z"),
            line("verified", "20260101T000001Z")
        );
        let r = parse_lock_output(&out);
        assert_eq!(r.releases, ["20260101T000001Z", "repo"]);
        assert_eq!(r.current.as_deref(), Some("20260101T000001Z"));
        assert_eq!(r.current_commit.as_deref(), Some("abc"));
        let events: Vec<EventKind> = r.ledger.iter().map(|e| e.event).collect();
        assert_eq!(events, [EventKind::Staged, EventKind::Verified]);
    }

    #[tokio::test]
    async fn a_failing_smoke_test_fails_its_script_and_records_nothing() {
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("releases/20261124T190102Z")).unwrap();
        std::os::unix::fs::symlink("releases/20261124T190102Z", d.join("current")).unwrap();
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        for retries in [0, 1] {
            let s = smoke_test(
                &p,
                &rel(),
                "h",
                "false",
                &[],
                retries,
                Duration::from_millis(10),
            );
            let out = t.run(&s, None, Duration::from_secs(10)).await.unwrap();
            assert_ne!(out.status, Some(0), "retries {retries}");
        }
        assert!(!d.join(".shipit/ledger.jsonl").exists());
        let s = smoke_test(&p, &rel(), "h", "true", &[], 0, Duration::from_millis(10));
        assert!(t
            .run(&s, None, Duration::from_secs(10))
            .await
            .unwrap()
            .success());
        assert!(d.join(".shipit/ledger.jsonl").exists());
    }

    #[test]
    fn task_retries_only_when_asked() {
        let p = HostPaths::new("/srv/shop");
        let once = task(
            &p,
            &rel(),
            "/srv/shop/current",
            "true",
            &[],
            0,
            Duration::from_secs(1),
        );
        assert!(once.contains("task_retries='0'\n"), "{once}");
        let retried = task(
            &p,
            &rel(),
            "/srv/shop/current",
            "true",
            &[],
            3,
            Duration::from_millis(1500),
        );
        assert!(retried.contains("task_retries='3'\n"), "{retried}");
        assert!(retried.contains("task_interval='1.500'\n"), "{retried}");
    }

    #[tokio::test]
    async fn a_task_runs_the_command_as_shell_and_retries() {
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        // Shell syntax in the command is the user's; it runs as written, in
        // the dir, with the SHIPIT_* variables.
        let run = "n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count\nprintf '%s' \"$SHIPIT_RELEASE\" > rel # a comment\n[ \"$(cat count)\" -ge 3 ]";
        let s = task(
            &p,
            &rel(),
            d.to_str().unwrap(),
            run,
            &[],
            2,
            Duration::from_millis(10),
        );
        let out = t.run(&s, None, Duration::from_secs(10)).await.unwrap();
        assert!(out.success(), "{}", out.stderr_str());
        assert_eq!(std::fs::read_to_string(d.join("count")).unwrap(), "3\n");
        assert_eq!(
            std::fs::read_to_string(d.join("rel")).unwrap(),
            "20261124T190102Z"
        );
        let s = task(
            &p,
            &rel(),
            d.to_str().unwrap(),
            "false",
            &[],
            1,
            Duration::from_millis(10),
        );
        let out = t.run(&s, None, Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.status, Some(1));
        assert!(out.stderr_str().contains("failed after 2 attempts"));
    }

    #[test]
    fn undo_output_reads_whole_lines_and_the_last_current() {
        let cases: &[(&str, UndoReport)] = &[
            ("", UndoReport::default()),
            (
                "undo:switched_back\nledger:failed\ncurrent:releases/20261120T080000Z\n",
                UndoReport {
                    switched_back: Some(true),
                    ledger_failed: true,
                    current: Some("20261120T080000Z".into()),
                },
            ),
            (
                "undo:not_switched\ncurrent:releases/A\nsome output\ncurrent:releases/B/\n",
                UndoReport {
                    switched_back: Some(false),
                    ledger_failed: false,
                    current: Some("B".into()),
                },
            ),
            (
                "the ledger:failed to open\nundo:switched_back \n",
                UndoReport::default(),
            ),
        ];
        for (out, want) in cases {
            assert_eq!(&parse_undo_output(out), want, "{out:?}");
        }
    }

    /// A host dir with releases `A` (previous) and `B` (this run's),
    /// `current` pointing at `on`, and a ledger.
    fn undo_world(d: &std::path::Path, on: &str) -> (ReleaseInfo, ReleaseInfo) {
        let (a, b) = ("20261120T080000Z", "20261124T190102Z-abc123");
        for id in [a, b] {
            std::fs::create_dir_all(d.join("releases").join(id)).unwrap();
        }
        std::fs::create_dir_all(d.join(".shipit")).unwrap();
        std::fs::write(d.join(".shipit/ledger.jsonl"), "").unwrap();
        std::os::unix::fs::symlink(format!("releases/{on}"), d.join("current")).unwrap();
        let prev = ReleaseInfo {
            id: a.into(),
            ..rel()
        };
        let this = ReleaseInfo {
            id: b.into(),
            ..rel()
        };
        (prev, this)
    }

    #[tokio::test]
    async fn undo_publish_switches_back_only_where_current_moved() {
        use crate::transport::{local::LocalTransport, Transport};
        let t = LocalTransport::new("localhost");
        let restart = HookCommand {
            run: "echo \"$SHIPIT_RELEASE\" >> ../../restarts".into(),
            env: Vec::new(),
            retries: 0,
            interval: Duration::ZERO,
        };
        let run = |d: &std::path::Path, prev: &ReleaseInfo, this: &ReleaseInfo| {
            let p = HostPaths::new(d.to_str().unwrap());
            let s = undo_publish(&p, this, "h", Some(prev), Some(&restart), None);
            let t = t.clone();
            async move { t.run(&s, None, Duration::from_secs(20)).await.unwrap() }
        };
        let events = |d: &std::path::Path| -> Vec<(EventKind, String)> {
            crate::ledger::parse(&std::fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap())
                .entries
                .into_iter()
                .map(|e| (e.event, e.release))
                .collect()
        };

        // `current` moved: back, recorded, the previous release restarted.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (prev, this) = undo_world(d, "20261124T190102Z-abc123");
        let out = run(d, &prev, &this).await;
        assert!(out.success(), "{}", out.stderr_str());
        let r = parse_undo_output(&out.stdout_str());
        assert_eq!(r.switched_back, Some(true));
        assert!(!r.ledger_failed);
        assert_eq!(r.current.as_deref(), Some(prev.id.as_str()));
        assert_eq!(
            std::fs::read_link(d.join("current")).unwrap(),
            std::path::Path::new("releases/20261120T080000Z")
        );
        assert_eq!(
            events(d),
            [
                (EventKind::Failed, this.id.to_string()),
                (EventKind::Published, prev.id.to_string())
            ]
        );
        assert_eq!(
            std::fs::read_to_string(d.join("restarts")).unwrap(),
            format!("{}\n", prev.id)
        );
        assert!(d.join("releases").join(this.id.as_str()).is_dir());

        // `current` never moved: left alone, nothing restarted nor recorded
        // (the run discards the staged release).
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (prev, this) = undo_world(d, "20261120T080000Z");
        let out = run(d, &prev, &this).await;
        assert!(out.success(), "{}", out.stderr_str());
        let r = parse_undo_output(&out.stdout_str());
        assert_eq!(r.switched_back, Some(false));
        assert_eq!(r.current.as_deref(), Some(prev.id.as_str()));
        assert_eq!(
            std::fs::read_link(d.join("current")).unwrap(),
            std::path::Path::new("releases/20261120T080000Z")
        );
        assert!(!d.join("restarts").exists());
        assert_eq!(events(d), []);

        // A ledger that cannot be written (a full disk): back all the same,
        // and said.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (prev, this) = undo_world(d, "20261124T190102Z-abc123");
        std::fs::remove_file(d.join(".shipit/ledger.jsonl")).unwrap();
        std::fs::create_dir(d.join(".shipit/ledger.jsonl")).unwrap();
        let out = run(d, &prev, &this).await;
        assert!(out.success(), "{}", out.stderr_str());
        let r = parse_undo_output(&out.stdout_str());
        assert_eq!(r.switched_back, Some(true));
        assert!(r.ledger_failed);
        assert_eq!(r.current.as_deref(), Some(prev.id.as_str()));
        assert!(d.join("restarts").exists());
    }

    #[tokio::test]
    async fn a_failed_creation_removes_what_it_made() {
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("releases")).unwrap();
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        // Not a tar archive: unpacking fails after the dir was made.
        std::fs::write(p.archive(&rel().id), "not a tar archive").unwrap();
        let out = t
            .run(
                &create_release_copy(&p, &rel(), "h"),
                None,
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert!(!out.success());
        assert!(
            out.stderr_str().contains("could not be created"),
            "{}",
            out.stderr_str()
        );
        let left: Vec<_> = std::fs::read_dir(d.join("releases")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(!d.join(".shipit/ledger.jsonl").exists());
        // A dir that exists already is not this run's: it stays.
        std::fs::create_dir_all(p.release(&rel().id)).unwrap();
        let out = t
            .run(
                &create_release_copy(&p, &rel(), "h"),
                None,
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert_eq!(out.status, Some(RELEASE_EXISTS_STATUS));
        assert!(std::path::Path::new(&p.release(&rel().id)).is_dir());
    }

    #[test]
    fn a_creation_stopped_by_its_time_limit_removes_what_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("releases")).unwrap();
        let p = HostPaths::new(d.to_str().unwrap());
        // An archive nobody writes: unpacking it waits until the step's
        // time limit stops it, as the hosts' `timeout` does (chain.sh).
        let fifo = std::process::Command::new("mkfifo")
            .arg(p.archive(&rel().id))
            .status()
            .unwrap();
        assert!(fifo.success());
        let out = std::process::Command::new("timeout")
            .args(["-k", "5", "1", "sh", "-c"])
            .arg(create_release_copy(&p, &rel(), "h"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(124), "{out:?}");
        let left: Vec<_> = std::fs::read_dir(d.join("releases")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn record_uses_capistrano_wording() {
        let s = record(&HostPaths::new("/srv/shop"), &rel());
        assert!(s.contains("Branch main (at 0123456789abcdef0123456789abcdef01234567) deployed as release 20261124T190102Z by alice"));
    }

    #[tokio::test]
    async fn cleanup_removes_only_the_release_ids_it_is_given() {
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ids = ["20260101T000001Z", "20260101T000002Z", "20260101T000003Z"];
        for id in ids {
            std::fs::create_dir_all(d.join("releases").join(id)).unwrap();
        }
        std::fs::create_dir_all(d.join("releases/keepme")).unwrap();
        std::os::unix::fs::symlink("releases/20260101T000003Z", d.join("current")).unwrap();
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        let remove: Vec<String> = [
            ids[0],
            ids[2],
            ".keepme",
            "-rf",
            "../current",
            "20260101T000009Z",
            "$(touch pwned)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = t
            .run(&cleanup(&p, &remove), None, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(out.success(), "{}", out.stderr_str());
        assert_eq!(out.stdout_str(), "removed 20260101T000001Z\n");
        let err = out.stderr_str();
        assert!(
            err.contains("release 20260101T000003Z is current, left alone"),
            "{err}"
        );
        assert!(
            err.contains("not a release id, left alone: .keepme"),
            "{err}"
        );
        let mut left: Vec<String> = std::fs::read_dir(d.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [ids[1], ids[2], "keepme"]);
        assert!(d.join("current").exists());
        assert!(!d.join("releases/pwned").exists());
    }

    #[tokio::test]
    async fn the_lock_script_reports_releases_current_and_ledger() {
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("releases/20260101T000001Z")).unwrap();
        std::fs::write(d.join("releases/20260101T000001Z/REVISION"), "abc\n").unwrap();
        std::os::unix::fs::symlink("releases/20260101T000001Z", d.join("current")).unwrap();
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        let mut e = entry(&rel(), "h", EventKind::Staged);
        e.release = "20260101T000001Z".into();
        e.detail = Some("it's $(odd)\n`x`".into());
        let out = t
            .run(
                &ledger_append(&p, &[e.clone(), e.clone()]),
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert!(out.success(), "{}", out.stderr_str());
        let out = t
            .run(
                &lock(&p, "{\"token\":\"T\"}"),
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert!(out.success(), "{}", out.stderr_str());
        let r = parse_lock_output(&out.stdout_str());
        assert_eq!(r.releases, ["20260101T000001Z"]);
        assert_eq!(r.current.as_deref(), Some("20260101T000001Z"));
        assert_eq!(r.current_commit.as_deref(), Some("abc"));
        assert_eq!(r.ledger.len(), 2);
        assert_eq!(r.ledger[1].detail, e.detail);
        assert!(!r.ledger[1].time.is_empty());
    }

    #[tokio::test]
    async fn scripts_run_for_real_in_a_temp_dir() {
        use crate::transport::{local::LocalTransport, Transport};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app dir");
        let p = HostPaths::new(d.to_str().unwrap());
        let t = LocalTransport::new("localhost");
        let run = |s: String| {
            let t = t.clone();
            async move { t.run(&s, None, Duration::from_secs(20)).await.unwrap() }
        };
        let out = run(lock(&p, "{\"token\":\"T1\"}")).await;
        assert!(out.success(), "{}", out.stderr_str());
        let again = run(lock(&p, "{\"token\":\"T2\"}")).await;
        assert_eq!(again.status, Some(LOCKED_STATUS));
        assert!(again.stderr_str().contains("T1"));
        // Someone else's token does not free it.
        run(unlock(&p, "T2")).await;
        assert!(d.join(".shipit/lock").exists());
        run(unlock(&p, "T1")).await;
        assert!(!d.join(".shipit/lock").exists());
    }
}
