//! `shipit check`, `releases`, `lock` and `unlock` through the real binary,
//! against real sshd hosts (see tests/support/fleet.rs).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::project::{
    assert_says, commit, expect_exit, git, ledger, releases, shipit_cmd, stdout, text,
};
use support::{deploy_yml, Fleet};

fn shipit_as(dir: &Path, user: &str, args: &[&str]) -> Output {
    shipit_cmd(dir, args)
        .env("SHIPIT_USER", user)
        .env_remove("NO_COLOR")
        .env_remove("BUILD_URL")
        .output()
        .expect("shipit runs")
}

fn shipit(dir: &Path, args: &[&str]) -> Output {
    shipit_as(dir, "tester", args)
}

/// A small application repository with one commit on `main`; its path and
/// that commit.
fn app_repo(root: &Path) -> (PathBuf, String) {
    let repo = root.join("app");
    fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let sha = commit(&repo, "VERSION", "1\n");
    (repo, sha)
}

/// A smoke test, so that good deploys are recorded `verified`.
const SMOKE: &str = "tasks:\n  smoke_test:\n    run: \"test -s REVISION\"\n";

/// A fleet of `n` hosts, an app repository and a deploy.yml (stage
/// `staging`, `extra` appended) in the fleet's directory.
fn setup(n: usize, extra: &str) -> (Fleet, PathBuf, String) {
    let fleet = Fleet::start(n);
    let (repo, sha) = app_repo(fleet.dir());
    deploy_yml::write(
        fleet.dir(),
        &fleet,
        "staging",
        repo.to_str().unwrap(),
        extra,
    );
    (fleet, repo, sha)
}

fn lock_dir(d: &Path) -> PathBuf {
    d.join(".shipit/lock")
}

/// Takes the lock by hand the way a shipit run does, with this record.
fn hold_lock(d: &Path, user: &str, machine: &str, pid: u32, message: &str, token: &str) {
    fs::create_dir_all(lock_dir(d)).unwrap();
    let info = serde_json::json!({
        "user": user,
        "machine": machine,
        "pid": pid,
        "time": "2026-11-24T19:01:02Z",
        "stage": "staging",
        "message": message,
        "token": token,
    });
    fs::write(lock_dir(d).join("info"), format!("{info}\n")).unwrap();
}

/// Every path under `d`, sorted.
fn tree(d: &Path) -> Vec<PathBuf> {
    let mut v = vec![d.to_path_buf()];
    if d.is_dir() && !d.is_symlink() {
        for e in fs::read_dir(d).unwrap() {
            v.extend(tree(&e.unwrap().path()));
        }
    }
    v.sort();
    v
}

#[test]
fn check_passes_on_every_host_then_names_the_host_missing_a_linked_file() {
    let (fleet, _, _) = setup(3, "linked_files: [.env]\n");
    for h in fleet.hosts() {
        fs::create_dir_all(h.deploy_to.join("shared")).unwrap();
        fs::write(h.deploy_to.join("shared/.env"), "PORT=1\n").unwrap();
    }
    let out = expect_exit(shipit(fleet.dir(), &["check", "staging"]), 0);
    let s = stdout(&out);
    for h in fleet.hosts() {
        let n = &h.alias;
        for line in [
            format!("[{n}] connect ok"),
            format!(
                "[{n}] deploy_to ok: `{}` exists and is writable",
                h.deploy_to.display()
            ),
            format!("[{n}] git ok: "),
            format!("[{n}] tar ok: "),
            format!("[{n}] disk ok: "),
            format!("[{n}] linked_files ok: all present"),
            format!("[{n}] lock ok: free"),
        ] {
            assert!(s.contains(&line), "no `{line}` in\n{}", text(&out));
        }
    }
    assert!(
        s.contains("check staging: ok — 3 hosts ready"),
        "{}",
        text(&out)
    );

    let missing = fleet.hosts()[1].deploy_to.join("shared/.env");
    fs::remove_file(&missing).unwrap();
    let out = expect_exit(shipit(fleet.dir(), &["check", "staging"]), 1);
    let s = stdout(&out);
    assert!(
        s.contains(&format!(
            "[fleet-2] linked_files FAILED: missing linked file `shared/.env` (`{}`)",
            missing.display()
        )),
        "{}",
        text(&out)
    );
    assert!(!s.contains("[fleet-1] linked_files FAILED"), "{s}");
    assert!(!s.contains("[fleet-3] linked_files FAILED"), "{s}");
    assert!(
        s.contains("check staging: FAILED — 1 of 3 hosts not ready: fleet-2"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_changes_nothing_on_the_hosts() {
    let (fleet, _, _) = setup(2, "");
    // A fresh host: its deploy_to does not exist yet.
    let fresh = &fleet.hosts()[0].deploy_to;
    fs::remove_dir(fresh).unwrap();
    let other = &fleet.hosts()[1].deploy_to;
    let before = tree(other);

    let out = expect_exit(shipit(fleet.dir(), &["check", "staging"]), 0);
    let s = stdout(&out);
    assert!(
        s.contains(&format!(
            "[fleet-1] deploy_to ok: `{}` does not exist yet; its nearest existing parent `{}` is writable",
            fresh.display(),
            fleet.dir().display()
        )),
        "{}",
        text(&out)
    );
    assert!(!fresh.exists(), "check created {}", fresh.display());
    assert_eq!(tree(other), before, "check changed {}", other.display());
}

#[test]
fn releases_lists_every_host_and_flags_hosts_that_disagree() {
    let (fleet, repo, first_sha) = setup(3, SMOKE);
    expect_exit(shipit(fleet.dir(), &["deploy", "staging"]), 0);
    let second_sha = commit(&repo, "VERSION", "2\n");
    expect_exit(shipit(fleet.dir(), &["deploy", "staging"]), 0);
    let ids = releases(&fleet.hosts()[0].deploy_to);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let (old, new) = (&ids[0], &ids[1]);

    let out = expect_exit(shipit(fleet.dir(), &["releases", "staging"]), 0);
    let s = stdout(&out);
    for h in fleet.hosts() {
        let n = &h.alias;
        for line in [
            format!("[{n}] release           status       commit"),
            format!("[{n}] {new}  verified     {}  current", &second_sha[..12]),
            format!("[{n}] {old}  verified     {}\n", &first_sha[..12]),
        ] {
            assert!(s.contains(&line), "no `{line}` in\n{}", text(&out));
        }
        // Newest first.
        assert!(
            s.find(&format!("[{n}] {new}")) < s.find(&format!("[{n}] {old}")),
            "{s}"
        );
    }
    assert!(
        s.contains(&format!(
            "releases staging: 3 hosts agree — current is {new}"
        )),
        "{}",
        text(&out)
    );
    assert!(!s.contains("disagree"), "{s}");
    assert!(out.stderr.is_empty(), "{}", text(&out));

    // By hand: fleet-3 back on the old release, fleet-1 without it, and a
    // broken line in fleet-2's ledger.
    let d3 = &fleet.hosts()[2].deploy_to;
    std::os::unix::fs::symlink(format!("releases/{old}"), d3.join("current.tmp")).unwrap();
    fs::rename(d3.join("current.tmp"), d3.join("current")).unwrap();
    fs::remove_dir_all(fleet.hosts()[0].deploy_to.join("releases").join(old)).unwrap();
    let ledger2 = fleet.hosts()[1].deploy_to.join(".shipit/ledger.jsonl");
    let mut text2 = fs::read_to_string(&ledger2).unwrap();
    let bad_line = text2.lines().count() + 1;
    text2.push_str("{\"event\":\"verif\n");
    fs::write(&ledger2, text2).unwrap();

    let out = expect_exit(shipit(fleet.dir(), &["releases", "staging"]), 0);
    let s = stdout(&out);
    assert!(
        s.contains(&format!(
            "hosts disagree: current is {new} on fleet-1, fleet-2 but {old} on fleet-3"
        )),
        "{}",
        text(&out)
    );
    assert!(
        s.contains(&format!(
            "hosts disagree: release {old} is on fleet-2, fleet-3 but not on fleet-1"
        )),
        "{}",
        text(&out)
    );
    assert!(
        s.contains(&format!(
            "[fleet-3] {old}  verified     {}  current",
            &first_sha[..12]
        )),
        "{s}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: `fleet-2`: skipped line {bad_line} of `{}`",
            ledger2.display()
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn a_lock_holds_deploys_until_unlocked_and_force_is_recorded() {
    let (fleet, _, _) = setup(3, SMOKE);
    let dir = fleet.dir();

    let out = expect_exit(shipit(dir, &["lock", "staging", "-m", "db maintenance"]), 0);
    assert_says(&out, "lock staging: held on 3 hosts by `tester`");
    for h in fleet.hosts() {
        let info = fs::read_to_string(lock_dir(&h.deploy_to).join("info")).unwrap();
        assert!(info.contains("db maintenance"), "{info}");
    }

    // The lock outlives `shipit lock`: a deploy is refused.
    let out = expect_exit(shipit(dir, &["deploy", "staging"]), 4);
    let s = stdout(&out);
    assert!(s.contains("is locked on `fleet-"), "{}", text(&out));
    assert!(s.contains("by `tester`"), "{}", text(&out));
    assert!(s.contains("db maintenance"), "{}", text(&out));
    // A lock taken by hand is not stale, though its process is gone.
    assert!(!s.contains("stale"), "{}", text(&out));
    for h in fleet.hosts() {
        assert!(!h.deploy_to.join("current").exists());
        assert!(lock_dir(&h.deploy_to).exists());
    }

    // The same user frees it, and deploys work again.
    let out = expect_exit(shipit(dir, &["unlock", "staging"]), 0);
    assert_says(&out, "[fleet-2] freed (yours)");
    for h in fleet.hosts() {
        assert!(!lock_dir(&h.deploy_to).exists());
    }
    expect_exit(shipit(dir, &["deploy", "staging"]), 0);

    // Someone else may not free it without --force.
    expect_exit(shipit(dir, &["lock", "staging", "-m", "release freeze"]), 0);
    let out = expect_exit(shipit_as(dir, "someone-else", &["unlock", "staging"]), 4);
    let s = stdout(&out);
    assert!(
        s.contains("[fleet-1] refused: held by `tester`"),
        "{}",
        text(&out)
    );
    assert!(s.contains("release freeze"), "{}", text(&out));
    assert!(
        s.contains("`shipit unlock staging --force` frees it"),
        "{}",
        text(&out)
    );
    for h in fleet.hosts() {
        assert!(lock_dir(&h.deploy_to).exists());
    }

    let out = expect_exit(
        shipit_as(dir, "someone-else", &["unlock", "staging", "--force"]),
        0,
    );
    assert_says(
        &out,
        "unlock staging: ok — the deploy lock is free on 3 hosts",
    );
    for h in fleet.hosts() {
        assert!(!lock_dir(&h.deploy_to).exists());
        let entries = ledger(&h.deploy_to);
        let last = entries.last().expect("a ledger");
        assert_eq!(last["event"], "unlocked", "{last}");
        assert_eq!(last["user"], "someone-else", "{last}");
        assert_eq!(last["host"], h.alias.as_str(), "{last}");
        let detail = last["detail"].as_str().unwrap();
        assert!(
            detail.contains("`tester`") && detail.contains("release freeze"),
            "{detail}"
        );
    }
    expect_exit(shipit(dir, &["deploy", "staging"]), 0);
}

#[test]
fn lock_is_all_or_nothing() {
    let (fleet, _, _) = setup(3, "");
    let held = &fleet.hosts()[1].deploy_to;
    hold_lock(held, "bob", "laptop", 1, "hotfix in progress", "bobs");
    let info = fs::read_to_string(lock_dir(held).join("info")).unwrap();

    let out = expect_exit(shipit(fleet.dir(), &["lock", "staging"]), 4);
    let s = stdout(&out);
    assert!(
        s.contains("is locked on `fleet-2` by `bob` on `laptop` (pid 1) since 2026-11-24T19:01:02Z: hotfix in progress"),
        "{}",
        text(&out)
    );
    assert!(s.contains("no lock was kept"), "{}", text(&out));
    for i in [0, 2] {
        assert!(
            !lock_dir(&fleet.hosts()[i].deploy_to).exists(),
            "fleet-{} kept the lock",
            i + 1
        );
    }
    assert_eq!(
        fs::read_to_string(lock_dir(held).join("info")).unwrap(),
        info
    );
}

#[test]
fn a_stale_lock_is_reported_as_stale_and_unlock_frees_it() {
    let (fleet, _, _) = setup(2, SMOKE);
    let machine = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    // A process that ran here and is gone, recorded as shipit records it
    // (this boot, this pid namespace, its start time).
    let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
    let pid = child.id();
    let identity = shipit::process::ProcessIdentity::of(pid).unwrap();
    child.wait().unwrap();
    let d = &fleet.hosts()[0].deploy_to;
    hold_lock(
        d,
        "ghost",
        &machine,
        pid,
        "deploy of `staging`",
        "ghost-token",
    );
    let info_path = lock_dir(d).join("info");
    let mut info: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&info_path).unwrap()).unwrap();
    info["process"] = serde_json::to_value(&identity).unwrap();
    fs::write(&info_path, format!("{info}\n")).unwrap();

    let out = expect_exit(shipit(fleet.dir(), &["check", "staging"]), 0);
    let s = stdout(&out);
    assert!(
        s.contains(&format!(
            "[fleet-1] lock held by `ghost` on `{machine}` (pid {pid}) since 2026-11-24T19:01:02Z: deploy of `staging` (stale: holder process is gone)"
        )),
        "{}",
        text(&out)
    );
    assert!(s.contains("[fleet-2] lock ok: free"), "{s}");

    let out = expect_exit(shipit(fleet.dir(), &["deploy", "staging"]), 4);
    assert_says(&out, "(stale: holder process is gone)");

    // Not the holder's user, but the holder is gone: no --force needed.
    let out = expect_exit(shipit(fleet.dir(), &["unlock", "staging"]), 0);
    let s = stdout(&out);
    assert!(
        s.contains("[fleet-1] freed (stale): was held by `ghost`"),
        "{s}"
    );
    assert!(s.contains("[fleet-2] already free"), "{s}");
    assert!(!lock_dir(d).exists());
    // Only forced unlocks are recorded.
    assert!(ledger(d).iter().all(|e| e["event"] != "unlocked"));
}
