//! A project on the shipit side: an application repository, a deploy.yml
//! pointing at a [`Fleet`], and running the real binary against it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::deploy_yml::yaml_str;
use super::Fleet;

/// `shipit ARGS` in `dir`, as a CI job would run it.
pub fn shipit_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shipit"));
    c.args(args)
        .current_dir(dir)
        .env("SHIPIT_USER", "tester")
        .env("CI", "true")
        // Diagnostic logs only where a test asks for them.
        .env_remove("SHIPIT_LOG");
    c
}

pub fn shipit(dir: &Path, args: &[&str]) -> Output {
    shipit_cmd(dir, args).output().expect("shipit runs")
}

/// Status and both streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Commits `file` with `body`; returns the new commit's SHA.
pub fn commit(repo: &Path, file: &str, body: &str) -> String {
    fs::write(repo.join(file), body).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", file]);
    git(repo, &["rev-parse", "HEAD"])
}

/// In `tmp`: `app/`, a git repository with one commit (a README) on
/// `main`, and `project/`, an empty dir to write deploy.yml into and run
/// shipit in.
pub fn app_and_project(tmp: &Path) -> (PathBuf, PathBuf) {
    let repo = tmp.join("app");
    fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    commit(&repo, "README", "the app\n");
    let dir = tmp.join("project");
    fs::create_dir_all(&dir).unwrap();
    (repo, dir)
}

/// A fleet, an application repository with one commit on `main`, and a
/// project dir (with `templates/app.env.tera`) to run shipit in.
pub struct Project {
    pub fleet: Fleet,
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub repo: PathBuf,
}

impl Project {
    pub fn new(hosts: usize) -> Project {
        let fleet = Fleet::start(hosts);
        let tmp = tempfile::tempdir().unwrap();
        let (repo, dir) = app_and_project(tmp.path());
        fs::create_dir_all(dir.join("templates")).unwrap();
        fs::write(
            dir.join("templates/app.env.tera"),
            "PORT={{ port }}\nHOST={{ host }}\nRELEASE={{ release }}\n",
        )
        .unwrap();
        Project {
            fleet,
            _tmp: tmp,
            dir,
            repo,
        }
    }

    /// Writes deploy.yml: stage `staging` with every fleet host (role
    /// `app`), `top` as more top-level keys, `stage_extra` as more keys of
    /// the stage (indented by 4), `host_extra(i)` inside host i's `{ }`.
    pub fn write_config(&self, top: &str, stage_extra: &str, host_extra: impl Fn(usize) -> String) {
        let mut y = format!(
            "application: shop\nrepository: {}\nbranch: main\nkeep_releases: 5\n\
             ssh:\n  config_file: {}\n  connect_timeout: 5s\n  host_key_checking: strict\n{top}\
             stages:\n  staging:\n{stage_extra}    hosts:\n",
            yaml_str(self.repo.to_str().unwrap()),
            yaml_str(&self.fleet.ssh_config().to_string_lossy()),
        );
        for h in self.fleet.hosts() {
            y.push_str(&format!(
                "      - {{ host: {}, roles: [app], deploy_to: {}{} }}\n",
                h.alias,
                yaml_str(&h.deploy_to.to_string_lossy()),
                host_extra(h.index)
            ));
        }
        fs::write(self.dir.join("deploy.yml"), y).unwrap();
    }

    pub fn run(&self, args: &[&str]) -> Output {
        shipit(&self.dir, args)
    }

    pub fn deploy(&self) -> Output {
        self.run(&["deploy", "staging"])
    }

    /// `shipit ARGS`, asserting that it exits with `code`.
    #[track_caller]
    pub fn run_expect(&self, args: &[&str], code: i32) -> Output {
        expect_exit(self.run(args), code)
    }

    /// Deploys, asserting that it exits with `code`.
    #[track_caller]
    pub fn deploy_expect(&self, code: i32) -> Output {
        expect_exit(self.deploy(), code)
    }

    /// Deploys and asserts success; returns stdout.
    #[track_caller]
    pub fn deploy_ok(&self) -> String {
        stdout(&self.deploy_expect(0))
    }

    /// Each host's deploy_to, in fleet order.
    pub fn hosts(&self) -> Vec<PathBuf> {
        self.fleet
            .hosts()
            .iter()
            .map(|h| h.deploy_to.clone())
            .collect()
    }
}

/// Where `current` points (`releases/ID`), or `None`.
pub fn current(d: &Path) -> Option<String> {
    fs::read_link(d.join("current"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Release dir names on a host, sorted.
pub fn releases(d: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(d.join("releases")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// The host's ledger, one JSON value per line.
pub fn ledger(d: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(d.join(".shipit/ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("ledger lines are JSON"))
        .collect()
}

/// `(event, release)` pairs of the host's ledger.
pub fn events(d: &Path) -> Vec<(String, String)> {
    ledger(d)
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").to_string(),
                e["release"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits until `cond` holds, failing with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that `o` exited with `code` (the message shows both streams);
/// returns it for more assertions.
#[track_caller]
pub fn expect_exit(o: Output, code: i32) -> Output {
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    o
}

/// The release id `current` points at on `d`, if any.
pub fn on(d: &Path) -> Option<String> {
    current(d).map(|c| c.trim_start_matches("releases/").to_string())
}

/// Where `current` points on every host of `p`, in fleet order.
pub fn all_current(p: &Project) -> Vec<Option<String>> {
    p.hosts().iter().map(|d| current(d)).collect()
}

/// The release id `current` points at on every host of `p`, in fleet order.
pub fn all_on(p: &Project) -> Vec<Option<String>> {
    p.hosts().iter().map(|d| on(d)).collect()
}

/// Whether `d` holds the deploy lock.
pub fn locked(d: &Path) -> bool {
    d.join(".shipit/lock").exists()
}

/// Asserts that no host of `p` holds the deploy lock.
#[track_caller]
pub fn assert_unlocked(p: &Project) {
    for d in p.hosts() {
        assert!(!locked(&d), "{} still locked", d.display());
    }
}

/// Asserts that `o`'s stdout contains `what` (the message shows both
/// streams).
#[track_caller]
pub fn assert_says(o: &Output, what: &str) {
    assert!(stdout(o).contains(what), "no {what:?} in:\n{}", text(o));
}
