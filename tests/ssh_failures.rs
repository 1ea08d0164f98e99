//! Failure semantics on a real sshd fleet: whatever fails, no host is left
//! half-switched, the lock is freed and the exit code says what happened.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::deploy_yml::HOOKS;
use support::project::{
    all_current, assert_unlocked, commit, current, events, expect_exit, releases, shipit_cmd, text,
    wait_until, Project,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Makes the smoke test fail on host `d` for commit `sha`.
fn fail_smoke(d: &Path, sha: &str) {
    fs::write(d.join("FAIL_SMOKE"), sha).unwrap();
}

fn release_of(current: &Option<String>) -> String {
    current
        .as_deref()
        .unwrap()
        .trim_start_matches("releases/")
        .to_string()
}

#[test]
fn a_host_failing_its_build_switches_no_host_and_removes_every_staged_release() {
    let p = Project::new(5);
    let fail_on = p.hosts()[3].clone();
    p.write_config(
        "tasks:\n  build:\n    after: create_release\n    run: \"if [ -e ../../FAIL_BUILD ]; then echo 'build broke' >&2; exit 2; fi\"\n",
        "",
        |_| String::new(),
    );
    p.deploy_ok();
    let before = all_current(&p);
    fs::write(fail_on.join("FAIL_BUILD"), "").unwrap();
    commit(&p.repo, "VERSION", "2\n");
    let out = p.deploy_expect(1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[fleet-4] build FAILED"), "{stdout}");
    assert!(stdout.contains("[fleet-4]   | build broke"), "{stdout}");
    assert!(
        stdout.contains("staging failed on fleet-4; no host was switched"),
        "{stdout}"
    );
    assert_eq!(all_current(&p), before, "no host's current moved");
    for d in p.hosts() {
        assert_eq!(
            releases(&d).len(),
            1,
            "staged release left on {}",
            d.display()
        );
        let ev = events(&d);
        let last = ev.last().unwrap();
        assert_eq!(last.0, "failed", "{}: {ev:?}", d.display());
        assert_ne!(last.1, release_of(&before[0]));
    }
    assert_unlocked(&p);
}

#[test]
fn a_smoke_test_failing_in_the_second_batch_sends_every_switched_host_back() {
    let p = Project::new(5);
    p.write_config(HOOKS, "    rollout: { batch: 2 }\n", |_| String::new());
    p.deploy_ok();
    let before = all_current(&p);
    let old = release_of(&before[0]);
    // fleet-3 is in the second batch (fleet-3, fleet-4).
    let sha = commit(&p.repo, "VERSION", "2\n");
    fail_smoke(&p.hosts()[2], &sha);
    let out = p.deploy_expect(1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("batch 2/3: fleet-3, fleet-4"), "{stdout}");
    assert!(stdout.contains("[fleet-3] smoke_test FAILED"), "{stdout}");
    assert!(stdout.contains("publish failed on fleet-3"), "{stdout}");
    assert!(
        !stdout.contains("batch 3/3"),
        "the third batch must not start:\n{stdout}"
    );
    assert_eq!(
        all_current(&p),
        before,
        "every host is back on the previous release"
    );
    let new = releases(&p.hosts()[0])
        .into_iter()
        .find(|r| *r != old)
        .unwrap();
    for (i, d) in p.hosts().iter().enumerate() {
        let ev = events(d);
        let switched = i < 4;
        let published_new = ev.iter().any(|(e, r)| e == "published" && *r == new);
        assert_eq!(published_new, switched, "fleet-{}: {ev:?}", i + 1);
        assert!(
            ev.iter().any(|(e, r)| e == "failed" && *r == new),
            "fleet-{}: {ev:?}",
            i + 1
        );
        if switched {
            // Restarted on the new release, then again on the old one.
            let restarts = fs::read_to_string(d.join("restarts")).unwrap();
            let lines: Vec<&str> = restarts.lines().collect();
            assert_eq!(
                lines[lines.len() - 2..],
                [new.as_str(), old.as_str()],
                "fleet-{}",
                i + 1
            );
            // The previous release is recorded live and verified again.
            assert_eq!(ev.last().unwrap(), &("verified".to_string(), old.clone()));
        }
    }
    assert_unlocked(&p);
}

#[test]
fn a_failing_canary_stops_before_the_rest() {
    let p = Project::new(4);
    p.write_config(HOOKS, "    rollout: { batch: 50%, canary: 1 }\n", |_| {
        String::new()
    });
    p.deploy_ok();
    let before = all_current(&p);
    let sha = commit(&p.repo, "VERSION", "2\n");
    fail_smoke(&p.hosts()[0], &sha);
    let out = p.deploy_expect(1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[fleet-1] smoke_test FAILED"), "{stdout}");
    assert!(!stdout.contains("batch 2/3"), "{stdout}");
    for i in 1..4 {
        assert!(
            !stdout.contains(&format!("[fleet-{}] publish", i + 1)),
            "{stdout}"
        );
    }
    assert_eq!(all_current(&p), before);
    assert_unlocked(&p);
}

#[test]
fn failures_within_max_failures_go_back_alone_and_the_run_succeeds() {
    let p = Project::new(4);
    p.write_config(HOOKS, "    max_failures: 1\n", |_| String::new());
    p.deploy_ok();
    let old = release_of(&current(&p.hosts()[0]));
    let sha = commit(&p.repo, "VERSION", "2\n");
    fail_smoke(&p.hosts()[1], &sha);
    let out = p.deploy_expect(0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("is on 3 of 4 hosts; fleet-2 failed within max_failures"),
        "{stdout}"
    );
    let hosts = p.hosts();
    assert_eq!(release_of(&current(&hosts[1])), old);
    let new = release_of(&current(&hosts[0]));
    assert_ne!(new, old);
    for d in [&hosts[0], &hosts[2], &hosts[3]] {
        assert_eq!(release_of(&current(d)), new);
    }
    assert_unlocked(&p);

    // Two failures are more than tolerated: everything goes back.
    let sha = commit(&p.repo, "VERSION", "3\n");
    fail_smoke(&hosts[1], &sha);
    fail_smoke(&hosts[2], &sha);
    let before = all_current(&p);
    p.deploy_expect(1);
    assert_eq!(all_current(&p), before);
    assert_unlocked(&p);
}

#[test]
fn a_hung_command_hits_its_timeout_and_fails_the_run() {
    let p = Project::new(3);
    p.write_config(
        "tasks:\n  build:\n    after: create_release\n    roles: [app]\n    once: true\n    timeout: 2s\n    run: \"sleep 60\"\n",
        "",
        |_| String::new(),
    );
    let out = p.deploy_expect(1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[fleet-1] build FAILED"), "{stdout}");
    assert!(stdout.contains("timed out after 2s"), "{stdout}");
    for d in p.hosts() {
        assert_eq!(current(&d), None);
        assert!(releases(&d).is_empty());
    }
    assert_unlocked(&p);
}

fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-s", "TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "could not signal shipit");
}

fn stop_flag_seen(d: &Path) -> bool {
    fs::read_dir(d.join(".shipit"))
        .map(|es| {
            es.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("stop-"))
        })
        .unwrap_or(false)
}

/// Runs a deploy that holds in a task waiting for the `gate` file, sends
/// SIGTERM while it holds, then lets the step finish.
fn interrupted_deploy(p: &Project) -> std::process::Output {
    let child = shipit_cmd(&p.dir, &["deploy", "staging"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = p.dir.join("started");
    wait_until("the held step started", LIMIT, || started.exists());
    sigterm(child.id());
    // shipit tells the busy host to stop after its current step.
    let hosts = p.hosts();
    wait_until("the stop flag reached a host", LIMIT, || {
        hosts.iter().any(|d| stop_flag_seen(d))
    });
    fs::write(p.dir.join("gate"), "").unwrap();
    child.wait_with_output().unwrap()
}

fn hold_task(p: &Project, after: &str) -> String {
    format!(
        "    run: \"touch {s}; while [ ! -e {g} ]; do sleep 0.05; done\"\n",
        s = p.dir.join("started").display(),
        g = p.dir.join("gate").display()
    )
    .replace(
        "    run",
        &format!("    after: {after}\n    once: true\n    run"),
    )
}

/// Three hosts whose `tasks` (the `tasks:` key and any tasks under it)
/// gain a `hold` task after `after` (see [`hold_task`]).
fn holding_project(tasks: &str, after: &str) -> Project {
    let p = Project::new(3);
    p.write_config(
        &format!("{tasks}  hold:\n{}", hold_task(&p, after)),
        "",
        |_| String::new(),
    );
    p
}

/// A first good deploy (the gate open), then a change whose deploy is
/// interrupted while it holds: where `current` was on every host before
/// it, and its output, checked to exit 130.
fn deploy_then_interrupt_the_next(p: &Project) -> (Vec<Option<String>>, Output) {
    fs::write(p.dir.join("gate"), "").unwrap();
    p.deploy_ok();
    fs::remove_file(p.dir.join("gate")).unwrap();
    fs::remove_file(p.dir.join("started")).unwrap();
    let before = all_current(p);
    commit(&p.repo, "VERSION", "2\n");
    (before, expect_exit(interrupted_deploy(p), 130))
}

#[test]
fn sigterm_during_staging_leaves_the_fleet_as_it_was_and_exits_130() {
    let p = holding_project("tasks:\n", "create_release");
    let (before, out) = deploy_then_interrupt_the_next(&p);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted during staging"), "{stdout}");
    assert_eq!(all_current(&p), before);
    for d in p.hosts() {
        assert_eq!(releases(&d).len(), 1, "{}", d.display());
        assert!(!stop_flag_seen(&d), "stop flag left on {}", d.display());
    }
    assert_unlocked(&p);
}

#[test]
fn sigterm_during_publish_switches_back_and_exits_130() {
    let p = holding_project(HOOKS, "restart");
    let (before, out) = deploy_then_interrupt_the_next(&p);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted during publish"), "{stdout}");
    assert_eq!(all_current(&p), before, "every switched host went back");
    assert_unlocked(&p);
}

#[test]
fn cleanup_keeps_the_rollback_target_after_failed_deploys() {
    let p = Project::new(2);
    p.write_config(HOOKS, "", |_| String::new());
    let yml = fs::read_to_string(p.dir.join("deploy.yml"))
        .unwrap()
        .replace("keep_releases: 5", "keep_releases: 1");
    fs::write(p.dir.join("deploy.yml"), yml).unwrap();
    p.deploy_ok();
    let a = release_of(&current(&p.hosts()[0]));
    // Two deploys whose smoke test fails: switched back to A, marked failed.
    for i in 0..2 {
        let sha = commit(&p.repo, "VERSION", &format!("bad {i}\n"));
        for d in p.hosts() {
            fail_smoke(&d, &sha);
        }
        p.deploy_expect(1);
        for d in p.hosts() {
            assert_eq!(release_of(&current(&d)), a);
        }
    }
    commit(&p.repo, "VERSION", "good\n");
    p.deploy_ok();
    for d in p.hosts() {
        let c = release_of(&current(&d));
        // The new release and the rollback target (A) stay; failed ones go.
        assert_eq!(releases(&d), vec![a.clone(), c], "{}", d.display());
    }
}

#[test]
fn an_undo_that_cannot_verify_the_previous_release_exits_5_naming_the_host() {
    let p = Project::new(2);
    // A host-level fault: once BROKEN_HOST exists, no release passes there.
    p.write_config(
        &HOOKS.replace(
            "run: \"test \\\"$(cat ../../FAIL_SMOKE 2>/dev/null)\\\" != \\\"$(cat REVISION)\\\"\"",
            "run: \"test ! -e ../../BROKEN_HOST\"",
        ),
        "",
        |_| String::new(),
    );
    p.deploy_ok();
    fs::write(p.hosts()[1].join("BROKEN_HOST"), "").unwrap();
    commit(&p.repo, "VERSION", "2\n");
    let out = p.deploy_expect(5);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("fleet-2 could not be put back on their previous release: needs a person"),
        "{stdout}"
    );
    assert!(
        stdout.contains("smoke test of the previous release failed"),
        "{stdout}"
    );
    assert_unlocked(&p);
}

/// An undo whose `restart` is `local: true` runs it once on the machine
/// running shipit, after every host is back, and never on a host: the
/// task logs where it ran (`SHIPIT_TEST_WHERE` is set for shipit only, so
/// a run over ssh logs `a host`).
#[test]
fn an_undo_runs_a_local_restart_once_here_and_never_on_a_host() {
    let p = Project::new(3);
    let log = p.dir.join("restarts.log");
    p.write_config(
        &format!(
            "tasks:\n  restart:\n    local: true\n    run: \"echo \\\"${{SHIPIT_TEST_WHERE:-a host}} {{{{ release }}}}\\\" >> '{}'\"\n  smoke_test:\n    run: \"test \\\"$(cat ../../FAIL_SMOKE 2>/dev/null)\\\" != \\\"$(cat REVISION)\\\"\"\n",
            log.display()
        ),
        "",
        |_| String::new(),
    );
    let deploy = || {
        shipit_cmd(&p.dir, &["deploy", "staging"])
            .env("SHIPIT_TEST_WHERE", "here")
            .output()
            .expect("shipit runs")
    };
    let first = deploy();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let a = release_of(&current(&p.hosts()[0]));
    let sha = commit(&p.repo, "VERSION", "2\n");
    fail_smoke(&p.hosts()[1], &sha);

    let second = deploy();
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let b = events(&p.hosts()[1])
        .iter()
        .rev()
        .find(|(e, _)| e == "failed")
        .map(|(_, r)| r.clone())
        .expect("the failed release is recorded");
    let lines: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            format!("here {a}"),
            format!("here {b}"),
            format!("here {a}")
        ],
        "the first deploy's restart, the second's, and the undo's, each once and here\n{}",
        text(&second)
    );
    for d in p.hosts() {
        assert_eq!(release_of(&current(&d)), a, "{}", d.display());
        assert_eq!(
            events(&d).last(),
            Some(&("verified".to_string(), a.clone())),
            "the previous release was checked again after the local restart: {}",
            d.display()
        );
    }
    assert_unlocked(&p);
}
