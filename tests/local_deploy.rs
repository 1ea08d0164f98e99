//! The release flow end to end through the real binary, with
//! `transport: local` hosts: what a user checks after `shipit deploy`.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::project::{commit, current, events, expect_exit, git, releases, shipit_cmd, text};

fn shipit(dir: &Path, args: &[&str]) -> Output {
    shipit_cmd(dir, args)
        .env_remove("NO_COLOR")
        .output()
        .expect("shipit runs")
}

/// A small application repository with one commit on `main`.
fn app_repo(root: &Path) -> (PathBuf, String) {
    let repo = root.join("app");
    fs::create_dir_all(repo.join("bin")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join("README"), "the app\n").unwrap();
    fs::write(repo.join("bin/serve"), "#!/bin/sh\necho serving\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    (repo, sha)
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: PathBuf,
    sha: String,
    deploy_to: PathBuf,
}

const TASKS: &str = r#"tasks:
  build:
    after: link_shared
    run: "printf 'built %s\n' \"$(cat REVISION)\" > BUILD && echo compiled"
  migrate:
    after: build
    roles: [db]
    once: true
    run: "echo {{ release }} >> log/migrations.log"
  restart:
    run: "echo restarted >> log/restarts.log"
  smoke_test:
    run: "test -s BUILD && grep -q 'PORT=9090' .env"
    retries: 1
    interval: 100ms
"#;

fn setup(tasks: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    fs::create_dir_all(dir.join("templates")).unwrap();
    let (repo, sha) = app_repo(tmp.path());
    fs::write(
        dir.join("templates/app.env.tera"),
        "PORT={{ port }}\nHOST={{ host }}\nRELEASE={{ release }}\n",
    )
    .unwrap();
    let yml = format!(
        r#"application: shop
repository: {repo}
branch: main
keep_releases: 5
linked_files: [.env]
linked_dirs: [log, tmp/pids]
vars: {{ port: 8080 }}
templates:
  - {{ src: templates/app.env.tera, dest: shared/.env, mode: "0600" }}
{tasks}
stages:
  demo:
    hosts:
      - {{ host: localhost, transport: local, roles: [app, db], deploy_to: ./deployed, vars: {{ port: 9090 }} }}
"#,
        repo = serde_json::to_string(repo.to_str().unwrap()).unwrap(),
    );
    fs::write(dir.join("deploy.yml"), yml).unwrap();
    let deploy_to = dir.join("deployed");
    Setup {
        _tmp: tmp,
        dir,
        repo,
        sha,
        deploy_to,
    }
}

/// Rewrites deploy.yml with `from` replaced by `to`.
fn edit_config(s: &Setup, from: &str, to: &str) {
    let yml = fs::read_to_string(s.dir.join("deploy.yml"))
        .unwrap()
        .replace(from, to);
    fs::write(s.dir.join("deploy.yml"), yml).unwrap();
}

/// Holds the deploy lock of `s` as `bob` on `laptop` does, taken at
/// `time` with `message`; returns the lock dir.
fn hold_lock(s: &Setup, time: &str, message: &str) -> PathBuf {
    let lock = s.deploy_to.join(".shipit/lock");
    fs::create_dir_all(&lock).unwrap();
    fs::write(
        lock.join("info"),
        format!(
            r#"{{"user":"bob","machine":"laptop","pid":1,"time":"{time}","stage":"demo","message":"{message}","token":"bobs"}}"#
        ),
    )
    .unwrap();
    lock
}

/// `shipit ARGS -c deploy.example.yml` in the project root, with no
/// environment of its own.
fn with_example(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shipit"))
        .args(args)
        .args(["-c", "deploy.example.yml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn a_deploy_builds_links_renders_switches_and_records() {
    let s = setup(TASKS);
    let out = expect_exit(shipit(&s.dir, &["deploy", "demo"]), 0);
    let d = &s.deploy_to;
    let rels = releases(d);
    assert_eq!(rels.len(), 1);
    let id = &rels[0];
    assert_eq!(current(d), Some(format!("releases/{id}")));
    let rel = d.join("releases").join(id);
    assert_eq!(
        fs::read_to_string(rel.join("REVISION")).unwrap().trim(),
        s.sha
    );
    assert_eq!(fs::read_to_string(rel.join("README")).unwrap(), "the app\n");
    assert_eq!(
        fs::read_to_string(rel.join("BUILD")).unwrap(),
        format!("built {}\n", s.sha)
    );
    // Linked dirs and files point into shared/.
    for p in ["log", "tmp/pids", ".env"] {
        let target = fs::read_link(rel.join(p)).unwrap();
        assert_eq!(target, d.join("shared").join(p), "{p}");
    }
    // The template was rendered with the host's var over the global one.
    let env_file = d.join("shared/.env");
    let env = fs::read_to_string(&env_file).unwrap();
    assert_eq!(env, format!("PORT=9090\nHOST=localhost\nRELEASE={id}\n"));
    assert_eq!(
        fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Tasks ran where they should.
    assert_eq!(
        fs::read_to_string(d.join("shared/log/migrations.log")).unwrap(),
        format!("{id}\n")
    );
    assert_eq!(
        fs::read_to_string(d.join("shared/log/restarts.log")).unwrap(),
        "restarted\n"
    );
    // The ledger and revisions.log.
    let events = events(d);
    let kinds: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds, ["staged", "published", "verified"]);
    assert!(events.iter().all(|(_, r)| r == id));
    let log = fs::read_to_string(d.join("revisions.log")).unwrap();
    assert_eq!(
        log.trim(),
        format!(
            "Branch main (at {}) deployed as release {id} by tester",
            s.sha
        )
    );
    // The lock is gone, the summary names the release and commit.
    assert!(!d.join(".shipit/lock").exists());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[localhost] publish ok"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "deploy demo: ok — release {id}, commit {}",
            &s.sha[..12]
        )),
        "{stdout}"
    );
}

#[test]
fn seven_deploys_keep_five_releases_and_the_newest_is_current() {
    let s = setup(TASKS);
    let mut shas = Vec::new();
    for i in 0..7 {
        shas.push(commit(&s.repo, "VERSION", &format!("{i}\n")));
        let out = shipit(&s.dir, &["deploy", "demo"]);
        assert_eq!(out.status.code(), Some(0), "deploy {i}: {}", text(&out));
    }
    let d = &s.deploy_to;
    let rels = releases(d);
    assert_eq!(rels.len(), 5, "{rels:?}");
    let newest = rels.last().unwrap();
    assert_eq!(current(d), Some(format!("releases/{newest}")));
    assert_eq!(
        fs::read_to_string(d.join("releases").join(newest).join("REVISION"))
            .unwrap()
            .trim(),
        shas[6]
    );
    assert_eq!(
        fs::read_to_string(d.join("current/VERSION")).unwrap(),
        "6\n"
    );
    assert_eq!(
        fs::read_to_string(d.join("revisions.log"))
            .unwrap()
            .lines()
            .count(),
        7
    );
    // The mirror was cloned once and reused.
    assert!(d.join("repo/HEAD").exists());
}

#[test]
fn a_failing_task_leaves_current_alone_and_removes_the_staged_release() {
    let s = setup(TASKS);
    expect_exit(shipit(&s.dir, &["deploy", "demo"]), 0);
    let before = current(&s.deploy_to).expect("a current release");
    let broken = TASKS.replace(
        "run: \"printf 'built %s\\n' \\\"$(cat REVISION)\\\" > BUILD && echo compiled\"",
        "run: \"echo compiler exploded >&2; exit 3\"",
    );
    assert_ne!(broken, TASKS);
    edit_config(&s, TASKS, &broken);
    commit(&s.repo, "VERSION", "2\n");
    let out = expect_exit(shipit(&s.dir, &["deploy", "demo"]), 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[localhost] build FAILED"), "{stdout}");
    assert!(
        stdout.contains("[localhost]   | compiler exploded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("staging failed on localhost; no host was switched"),
        "{stdout}"
    );
    assert_eq!(current(&s.deploy_to), Some(before));
    assert_eq!(releases(&s.deploy_to).len(), 1);
    assert!(!s.deploy_to.join(".shipit/lock").exists());
    let events = events(&s.deploy_to);
    assert_eq!(events.last().unwrap().0, "failed");
}

#[test]
fn a_held_lock_refuses_the_deploy_with_exit_4() {
    let s = setup(TASKS);
    let lock = hold_lock(&s, "2026-11-24T19:01:02Z", "hotfix in progress");
    let out = expect_exit(shipit(&s.dir, &["deploy", "demo"]), 4);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("locked on `localhost` by `bob` on `laptop`"),
        "{stdout}"
    );
    assert!(stdout.contains("hotfix in progress"), "{stdout}");
    // Someone else's lock is left as it was.
    assert!(lock.join("info").exists());
    assert!(!s.deploy_to.join("current").exists());
}

#[test]
fn a_missing_secret_fails_before_any_host_is_touched() {
    let s = setup(TASKS);
    fs::write(
        s.dir.join("templates/app.env.tera"),
        "PORT={{ port }}\nDB_PASSWORD={{ env.SHIPIT_TEST_DB_PASSWORD }}\n",
    )
    .unwrap();
    let out = expect_exit(shipit(&s.dir, &["deploy", "demo"]), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("environment variable `SHIPIT_TEST_DB_PASSWORD` is not set"),
        "{stderr}"
    );
    assert!(!s.deploy_to.exists());
}

#[test]
fn secrets_never_reach_the_output() {
    let s = setup(TASKS);
    fs::write(
        s.dir.join("templates/app.env.tera"),
        "PORT={{ port }}\nDB_PASSWORD={{ env.SHIPIT_TEST_SECRET }}\n",
    )
    .unwrap();
    edit_config(
        &s,
        "echo restarted >> log/restarts.log",
        "echo using {{ env.SHIPIT_TEST_SECRET }} >&2; exit 1",
    );
    let out = expect_exit(
        Command::new(env!("CARGO_BIN_EXE_shipit"))
            .args(["deploy", "demo"])
            .current_dir(&s.dir)
            .env("CI", "true")
            .env("SHIPIT_TEST_SECRET", "s3cr3t-value")
            .output()
            .unwrap(),
        1,
    );
    let all = text(&out);
    assert!(all.contains("[redacted]"), "{all}");
    assert!(!all.contains("s3cr3t-value"), "{all}");
    let plan = Command::new(env!("CARGO_BIN_EXE_shipit"))
        .args(["plan", "demo"])
        .current_dir(&s.dir)
        .env("SHIPIT_TEST_SECRET", "s3cr3t-value")
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(!text(&plan).contains("s3cr3t-value"));
    // The rendered file on the host does carry it.
    assert!(fs::read_to_string(s.deploy_to.join("shared/.env"))
        .unwrap()
        .contains("s3cr3t-value"));
}

#[test]
fn plan_prints_demo_and_production_without_connecting() {
    for stage in ["demo", "production", "staging"] {
        let out = with_example(&["plan", stage]);
        assert_eq!(out.status.code(), Some(0), "{stage}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        for step in [
            "lock",
            "check",
            "fetch",
            "create_release",
            "link_shared",
            "render_templates",
            "build",
            "publish",
            "restart",
            "smoke_test",
            "record",
            "cleanup",
            "unlock",
        ] {
            assert!(
                stdout.contains(&format!(". {step}  (")),
                "{stage} lacks {step}:\n{stdout}"
            );
        }
        assert!(stdout.contains("mv -fT"), "{stdout}");
        assert!(
            stdout.contains("releases to remove: decided after the lock step"),
            "{stdout}"
        );
    }
    let out = with_example(&["plan", "production"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Canary first, then 25% of 5 hosts (2) at a time.
    assert!(
        stdout.contains("  1. web-01.example.internal\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  2. web-02.example.internal, web-03.example.internal\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  3. web-04.example.internal, db-1.example.internal\n"),
        "{stdout}"
    );
    // migrate is `once` on the db role: exactly one host.
    let migrate = stdout.split(". migrate  (").nth(1).unwrap();
    let first = migrate.lines().nth(1).unwrap();
    assert_eq!(first.trim(), "on db-1.example.internal:");
}

#[test]
fn plan_refuses_unknown_stages_with_exit_2() {
    let out = expect_exit(with_example(&["plan", "prod"]), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown stage `prod`"));
}

#[test]
fn init_writes_a_config_that_plans() {
    let tmp = tempfile::tempdir().unwrap();
    let (_repo, _) = app_repo(tmp.path());
    expect_exit(shipit(&tmp.path().join("app"), &["init"]), 0);
    let again = expect_exit(shipit(&tmp.path().join("app"), &["init"]), 2);
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    expect_exit(shipit(&tmp.path().join("app"), &["plan", "local"]), 0);
    expect_exit(shipit(&tmp.path().join("app"), &["deploy", "local"]), 0);
    assert!(tmp.path().join("app/.shipit-local/current/README").exists());
}

#[test]
fn strategy_copy_uploads_one_archive_checked_by_digest() {
    let s = setup(TASKS);
    edit_config(
        &s,
        "keep_releases: 5\n",
        "keep_releases: 5\nstrategy: copy\n",
    );
    expect_exit(shipit(&s.dir, &["deploy", "demo"]), 0);
    let d = &s.deploy_to;
    assert!(!d.join("repo").exists(), "copy keeps no mirror on the host");
    assert_eq!(
        fs::read_to_string(d.join("current/REVISION"))
            .unwrap()
            .trim(),
        s.sha
    );
    assert_eq!(
        fs::read_to_string(d.join("current/bin/serve")).unwrap(),
        "#!/bin/sh\necho serving\n"
    );
    // No archive is left behind.
    let leftovers: Vec<_> = fs::read_dir(d.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar") || n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Every ledger line of the release carries the same archive digest.
    let ledger = fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap();
    let digests: Vec<String> = ledger
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["digest"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(digests.len(), 3);
    assert!(digests[0].starts_with("sha256:"));
    assert!(digests.iter().all(|x| *x == digests[0]));
    // Deploying the same commit again gives the same digest.
    expect_exit(shipit(&s.dir, &["deploy", "demo"]), 0);
    let ledger = fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(ledger.lines().last().unwrap()).unwrap();
    assert_eq!(last["digest"].as_str().unwrap(), digests[0]);
}

#[test]
fn wait_lock_queues_behind_a_held_lock_then_deploys() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let s = setup(TASKS);
    let lock = hold_lock(&s, "2026-11-24T19:01:02Z", "hotfix");
    let mut child = shipit_cmd(&s.dir, &["deploy", "demo", "--wait-lock", "2m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("waiting for it (--wait-lock)") {
            break;
        }
    }
    assert!(
        seen.last()
            .is_some_and(|l| l.contains("locked on `localhost` by `bob`")),
        "{seen:?}"
    );
    // Bob is done: the queued deploy goes ahead.
    fs::remove_dir_all(&lock).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(s.deploy_to.join("current/REVISION").exists());
    assert!(!lock.exists());
}

#[test]
fn wait_lock_gives_up_with_exit_4() {
    let s = setup(TASKS);
    let lock = hold_lock(&s, "2026-11-24T19:01:02Z", "hotfix");
    expect_exit(shipit(&s.dir, &["deploy", "demo", "--wait-lock", "1s"]), 4);
    assert!(lock.join("info").exists());
}

#[test]
fn plan_shows_the_rollback_and_promote_recipes_without_connecting() {
    let out = expect_exit(with_example(&["plan", "production", "promote"]), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("promote `staging` -> `production`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 approval from alice, bob; self_approval false"),
        "{stdout}"
    );
    assert!(stdout.contains("deploy `production`: 5 hosts"), "{stdout}");
    let out = expect_exit(with_example(&["plan", "staging", "rollback"]), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for step in [
        "switch  (",
        "restart  (",
        "smoke_test  (",
        "record  (",
        "unlock  (",
    ] {
        assert!(stdout.contains(step), "{step}:\n{stdout}");
    }
    // A stage without promote_from has nothing to promote.
    expect_exit(with_example(&["plan", "staging", "promote"]), 2);
}

#[test]
fn a_lock_older_than_the_lock_ttl_is_reported_stale_and_unlock_frees_it() {
    let s = setup(TASKS);
    // Taken long ago on another machine: its pid says nothing here.
    let lock = hold_lock(&s, "2020-01-01T00:00:00Z", "deploy of `demo`");
    let out = expect_exit(shipit(&s.dir, &["deploy", "demo"]), 4);
    assert!(
        !text(&out).contains("stale"),
        "without a TTL it is not stale: {}",
        text(&out)
    );
    let out = expect_exit(shipit(&s.dir, &["deploy", "demo", "--lock-ttl", "2h"]), 4);
    assert!(
        text(&out).contains("older than the lock TTL of 7200s"),
        "{}",
        text(&out)
    );
    // Without a TTL, unlock refuses someone else's live-looking lock ...
    expect_exit(shipit(&s.dir, &["unlock", "demo"]), 4);
    // ... with one (here from the environment) it frees the stale lock.
    expect_exit(
        Command::new(env!("CARGO_BIN_EXE_shipit"))
            .args(["unlock", "demo"])
            .current_dir(&s.dir)
            .env("SHIPIT_USER", "tester")
            .env("SHIPIT_LOCK_TTL", "2h")
            .output()
            .unwrap(),
        0,
    );
    assert!(!lock.exists());
    expect_exit(shipit(&s.dir, &["deploy", "demo"]), 0);
}

#[test]
fn quiet_prints_failures_and_the_summary_and_verbose_prints_more() {
    let s = setup(TASKS);
    let out = expect_exit(shipit(&s.dir, &["deploy", "demo", "-q"]), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("publish ok"), "{stdout}");
    assert!(stdout.contains("deploy demo: ok"), "{stdout}");
    let out = expect_exit(shipit(&s.dir, &["deploy", "demo", "-v"]), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[localhost] build started"), "{stdout}");
    // A step's own output under its line...
    assert!(stdout.contains("[localhost]   | compiled"), "{stdout}");
    // ...but not the lock step's: its releases and ledger are data for
    // shipit, not for people.
    assert!(!stdout.contains("| release:"), "{stdout}");
    assert!(!stdout.contains("| ledger:"), "{stdout}");
}
