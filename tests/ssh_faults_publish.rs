//! Faults injected for real on sshd hosts, around release creation and
//! publish: whatever breaks on one host, every host ends on a release the
//! summary names truly, nothing half-made is left behind to be counted as
//! a release, and two runs never share a release id.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::project::{
    all_on, assert_unlocked, commit, events, expect_exit, git, on, releases, shipit_cmd, stdout,
    text, wait_until, Project,
};

/// `restart` records the release it restarts; `smoke_test` fails on a host
/// with a `FAIL_SMOKE` file naming the commit; `build` (staging, after the
/// release is created) replaces the host's ledger with a directory when
/// the host holds `BREAK_LEDGER`, so every later ledger append there fails
/// as on a full disk (the real ledger is kept aside as `ledger.saved`);
/// with `HANG_LEDGER`, by a named pipe, so the next append there (the
/// publish's, right after its rename) waits for a reader that never comes.
const FAULTY: &str = r#"tasks:
  build:
    after: create_release
    run: "if [ -e ../../BREAK_LEDGER ]; then rm ../../BREAK_LEDGER; mv ../../.shipit/ledger.jsonl ../../ledger.saved; mkdir ../../.shipit/ledger.jsonl; fi; if [ -e ../../HANG_LEDGER ]; then rm ../../HANG_LEDGER; mv ../../.shipit/ledger.jsonl ../../ledger.saved; mkfifo ../../.shipit/ledger.jsonl; fi"
  restart:
    run: "echo \"$SHIPIT_RELEASE\" >> ../../restarts"
  smoke_test:
    run: "test \"$(cat ../../FAIL_SMOKE 2>/dev/null)\" != \"$(cat REVISION)\""
"#;

/// Every line of a `--format json` run.
fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", text(o))))
        .collect()
}

/// The run's `summary` event.
fn summary(o: &Output) -> Value {
    json_lines(o)
        .into_iter()
        .rfind(|e| e["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary:\n{}", text(o)))
}

/// Each host's summary state, by host name.
fn states(s: &Value) -> Vec<(String, String)> {
    s["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                h["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Puts the ledger a `BREAK_LEDGER` fault set aside back in place.
fn repair_ledger(d: &Path) {
    fs::remove_dir(d.join(".shipit/ledger.jsonl")).unwrap();
    fs::rename(d.join("ledger.saved"), d.join(".shipit/ledger.jsonl")).unwrap();
}

#[test]
fn a_ledger_append_failing_after_the_switch_on_one_host_puts_every_host_back() {
    let p = Project::new(5);
    p.write_config(FAULTY, "", |_| String::new());
    p.deploy_ok();
    let before = all_on(&p);
    let old = before[0].clone().unwrap();
    assert!(before.iter().all(|c| c.as_deref() == Some(old.as_str())));

    // fleet-3's ledger breaks after staging: its publish renames `current`,
    // then cannot record `published`.
    let broken = p.hosts()[2].clone();
    fs::write(broken.join("BREAK_LEDGER"), "").unwrap();
    commit(&p.repo, "VERSION", "2\n");
    let out = expect_exit(p.run(&["deploy", "staging", "--format", "json"]), 1);
    let s = summary(&out);
    let new = s["release"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(
        broken.join(".shipit/ledger.jsonl").is_dir(),
        "the fault was injected"
    );

    // Every host is back on the release it had, fleet-3 included.
    assert_eq!(all_on(&p), before, "{}", text(&out));
    // The summary says so, host by host, as the hosts are.
    let headline = s["headline"].as_str().unwrap();
    assert!(headline.contains("publish failed on fleet-3"), "{headline}");
    assert!(!headline.contains("needs a person"), "{headline}");
    for (host, state) in states(&s) {
        assert!(
            state.contains(&format!("current is {old} again")),
            "{host}: {state}"
        );
        assert!(!state.contains("current unchanged"), "{host}: {state}");
    }
    let (_, broken_state) = &states(&s)[2];
    assert!(
        broken_state.contains("the ledger could not be written"),
        "{broken_state}"
    );
    // The hosts that recorded: `failed` for the new release, the old one
    // live and verified again.
    for (i, d) in p.hosts().iter().enumerate().filter(|(i, _)| *i != 2) {
        let ev = events(d);
        assert!(
            ev.iter().any(|(e, r)| e == "failed" && *r == new),
            "fleet-{}: {ev:?}",
            i + 1
        );
        assert_eq!(ev.last().unwrap(), &("verified".to_string(), old.clone()));
    }
    // fleet-3 ran its previous release again.
    let restarts = fs::read_to_string(broken.join("restarts")).unwrap();
    assert_eq!(
        restarts.lines().collect::<Vec<_>>(),
        [old.as_str(), old.as_str()],
        "{restarts}"
    );
    assert_unlocked(&p);

    // Once the disk is repaired, the fleet deploys again and agrees.
    repair_ledger(&broken);
    let ev = events(&broken);
    assert!(
        !ev.iter().any(|(e, r)| e == "published" && *r == new),
        "{ev:?}"
    );
    p.deploy_ok();
    let now = all_on(&p);
    assert!(now
        .iter()
        .all(|c| c == &now[0] && c.as_deref() != Some(&old)));
    let out = expect_exit(p.run(&["releases", "staging"]), 0);
    assert!(stdout(&out).contains("5 hosts agree"), "{}", text(&out));
}

#[test]
fn a_connection_lost_after_the_rename_is_exit_5_naming_the_host_and_its_state() {
    let mut p = Project::new(2);
    p.write_config(FAULTY, "", |_| String::new());
    p.deploy_ok();
    let old = on(&p.hosts()[0]).unwrap();
    let victim = p.hosts()[1].clone();
    fs::write(victim.join("HANG_LEDGER"), "").unwrap();
    commit(&p.repo, "VERSION", "2\n");
    let deploy = shipit_cmd(&p.dir, &["deploy", "staging", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // fleet-2's publish renamed `current`, then hangs on its record: its
    // host goes down with the publish still running.
    wait_until(
        "fleet-2's publish renamed current",
        Duration::from_secs(60),
        || on(&victim).is_some_and(|c| c != old),
    );
    let new = on(&victim).unwrap();
    p.fleet.hosts_mut()[1].stop();
    let out = expect_exit(deploy.wait_with_output().unwrap(), 5);

    // fleet-1 went back; fleet-2 could not be reached, and is named with
    // what is known of it: not "current unchanged".
    assert_eq!(on(&p.hosts()[0]), Some(old.clone()), "{}", text(&out));
    assert_eq!(on(&victim), Some(new.clone()));
    let s = summary(&out);
    let headline = s["headline"].as_str().unwrap();
    assert!(
        headline
            .contains("fleet-2 could not be put back on their previous release: needs a person"),
        "{headline}"
    );
    let rows = states(&s);
    assert!(
        rows[0].1.contains(&format!("current is {old} again")),
        "{rows:?}"
    );
    assert!(rows[1].1.contains("failed at publish"), "{rows:?}");
    assert!(
        rows[1]
            .1
            .contains(&format!("current unknown (this run's release is {new})")),
        "{rows:?}"
    );
    assert!(!rows[1].1.contains("current unchanged"), "{rows:?}");
}

#[test]
fn an_undo_whose_smoke_test_fails_says_where_current_points() {
    let p = Project::new(2);
    // Once BROKEN_HOST exists on a host, no release passes its smoke test.
    p.write_config(
        &FAULTY.replace(
            "run: \"test \\\"$(cat ../../FAIL_SMOKE 2>/dev/null)\\\" != \\\"$(cat REVISION)\\\"\"",
            "run: \"test ! -e ../../BROKEN_HOST\"",
        ),
        "",
        |_| String::new(),
    );
    p.deploy_ok();
    let old = on(&p.hosts()[0]).unwrap();
    fs::write(p.hosts()[1].join("BROKEN_HOST"), "").unwrap();
    commit(&p.repo, "VERSION", "2\n");
    let out = expect_exit(p.run(&["deploy", "staging", "--format", "json"]), 5);
    assert_eq!(all_on(&p), [Some(old.clone()), Some(old.clone())]);
    let s = summary(&out);
    let headline = s["headline"].as_str().unwrap();
    assert!(
        headline.contains("fleet-2 could not be put back"),
        "{headline}"
    );
    let rows = states(&s);
    assert!(
        rows[1].1.contains(&format!(
            "switched back, current is {old}, but its restart or smoke test failed"
        )),
        "{rows:?}"
    );
    assert!(
        rows[0].1.contains(&format!("current is {old} again")),
        "{rows:?}"
    );
    assert_unlocked(&p);
}

#[test]
fn a_revisions_log_append_failing_after_every_smoke_test_puts_every_host_back() {
    let p = Project::new(3);
    p.write_config(FAULTY, "", |_| String::new());
    p.deploy_ok();
    let before = all_on(&p);
    let old = before[0].clone().unwrap();
    // revisions.log on fleet-2 cannot be appended to.
    let broken = p.hosts()[1].clone();
    fs::remove_file(broken.join("revisions.log")).unwrap();
    fs::create_dir(broken.join("revisions.log")).unwrap();
    commit(&p.repo, "VERSION", "2\n");
    let out = expect_exit(p.run(&["deploy", "staging", "--format", "json"]), 1);
    let s = summary(&out);
    assert_eq!(all_on(&p), before, "{}", text(&out));
    for (host, state) in states(&s) {
        assert!(
            state.contains(&format!("current is {old} again")),
            "{host}: {state}"
        );
    }
    assert_unlocked(&p);
}

/// Removes, from host `d`'s git mirror, the object of the file `README`
/// at the head of `repo`: the mirror still has every commit, so fetching
/// succeeds, but exporting a commit (`git archive`) fails part way, as on a
/// corrupted or full disk.
fn corrupt_mirror(d: &Path, repo: &Path) {
    let blob = git(repo, &["rev-parse", "HEAD:README"]);
    let object = d.join("repo/objects").join(&blob[..2]).join(&blob[2..]);
    fs::remove_file(&object).unwrap_or_else(|e| panic!("{}: {e}", object.display()));
}

/// Files under `releases/` that start with `.` (archives, partial ones).
fn hidden_in_releases(d: &Path) -> Vec<String> {
    fs::read_dir(d.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn failed_release_creations_leave_nothing_and_never_cost_the_rollback_target() {
    let p = Project::new(2);
    p.write_config(FAULTY, "", |_| String::new());
    let yml = fs::read_to_string(p.dir.join("deploy.yml"))
        .unwrap()
        .replace("keep_releases: 5", "keep_releases: 2");
    fs::write(p.dir.join("deploy.yml"), yml).unwrap();
    p.deploy_ok();
    commit(&p.repo, "VERSION", "2\n");
    p.deploy_ok();
    let good = all_on(&p);
    let target = good[0].clone().unwrap();
    let bad_host = p.hosts()[1].clone();
    let kept = releases(&bad_host);
    assert_eq!(kept.len(), 2, "{kept:?}");

    // Release creation fails on fleet-2 three times (more than
    // keep_releases).
    corrupt_mirror(&bad_host, &p.repo);
    commit(&p.repo, "VERSION", "3\n");
    for n in 1..=3 {
        let out = expect_exit(p.run(&["deploy", "staging", "--format", "json"]), 1);
        let s = summary(&out);
        let failed_id = s["release"].as_str().unwrap().to_string();
        let headline = s["headline"].as_str().unwrap();
        assert!(headline.contains("staging failed on fleet-2"), "{headline}");
        assert_eq!(all_on(&p), good, "run {n}");
        // Nothing of the failed release is left on either host.
        for d in p.hosts() {
            assert_eq!(releases(&d), kept, "run {n}, {}", d.display());
            assert_eq!(hidden_in_releases(&d), Vec::<String>::new(), "run {n}");
            // Recorded as failed, or not at all.
            let ev = events(&d);
            let last = ev.iter().rev().find(|(_, r)| *r == failed_id);
            assert!(
                last.is_none_or(|(e, _)| e == "failed"),
                "run {n}, {}: {ev:?}",
                d.display()
            );
        }
        let (_, state) = &states(&s)[1];
        assert!(state.contains("create_release"), "{state}");
        assert!(
            state.contains(&format!("current unchanged ({target})")),
            "{state}"
        );
        assert_unlocked(&p);
    }

    // The mirror is repaired (cloned again); a good deploy keeps the
    // rollback target on every host, and rollback lands on it.
    fs::remove_dir_all(bad_host.join("repo")).unwrap();
    p.deploy_ok();
    let third = all_on(&p);
    assert_ne!(third, good);
    for d in p.hosts() {
        assert!(
            releases(&d).contains(&target),
            "{}: {:?}",
            d.display(),
            releases(&d)
        );
    }
    let out = expect_exit(p.run(&["rollback", "staging"]), 0);
    assert_eq!(all_on(&p), good, "{}", text(&out));
    assert_unlocked(&p);
}

/// Starts `shipit deploy staging --hosts HOST --revision SHA --format json`
/// for each pair at once, right after a second begins, so that they mint
/// their release ids in the same second; their outputs.
fn deploys_in_the_same_second(p: &Project, runs: &[(&str, &str)]) -> Vec<Output> {
    // The clock is what is being raced: wait for the start of a second.
    loop {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        if ms < 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(u64::from(1000 - ms) % 20 + 1));
    }
    let children: Vec<_> = runs
        .iter()
        .map(|(host, sha)| {
            shipit_cmd(
                &p.dir,
                &[
                    "deploy",
                    "staging",
                    "--hosts",
                    host,
                    "--revision",
                    sha,
                    "--format",
                    "json",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// The timestamp part of a minted release id (`20261124T190102Z`).
fn second_of(id: &str) -> &str {
    &id[..16]
}

#[test]
fn two_deploys_on_disjoint_hosts_in_the_same_second_get_different_ids() {
    let p = Project::new(2);
    p.write_config("", "", |_| String::new());
    let first = git(&p.repo, &["rev-parse", "HEAD"]);
    let second = commit(&p.repo, "VERSION", "2\n");
    // The runs race the clock; on a loaded machine one may start a second
    // late, and then they are tried again.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let outs = deploys_in_the_same_second(&p, &[("fleet-1", &first), ("fleet-2", &second)]);
        ids = outs
            .iter()
            .map(|o| {
                let o = expect_exit(o.clone(), 0);
                summary(&o)["release"].as_str().unwrap().to_string()
            })
            .collect();
        if second_of(&ids[0]) == second_of(&ids[1]) {
            break;
        }
    }
    assert_eq!(
        second_of(&ids[0]),
        second_of(&ids[1]),
        "the two runs started in the same second"
    );
    assert_ne!(ids[0], ids[1], "two runs minted the same id");
    let hosts: Vec<PathBuf> = p.hosts();
    assert_eq!(on(&hosts[0]).as_deref(), Some(ids[0].as_str()));
    assert_eq!(on(&hosts[1]).as_deref(), Some(ids[1].as_str()));
    let rev = |d: &Path| fs::read_to_string(d.join("current/REVISION")).unwrap();
    assert_eq!(rev(&hosts[0]).trim(), first);
    assert_eq!(rev(&hosts[1]).trim(), second);

    // `releases` says the hosts run different commits.
    let out = expect_exit(p.run(&["releases", "staging"]), 0);
    let said = stdout(&out);
    assert!(!said.contains("hosts agree"), "{said}");
    assert!(said.contains("they disagree"), "{said}");
}

#[test]
fn releases_compares_commits_not_only_ids() {
    let p = Project::new(2);
    p.write_config("", "", |_| String::new());
    let first = git(&p.repo, &["rev-parse", "HEAD"]);
    let second = commit(&p.repo, "VERSION", "2\n");
    // The same given id, on disjoint hosts, for different commits.
    for (host, sha) in [("fleet-1", &first), ("fleet-2", &second)] {
        p.run_expect(
            &[
                "deploy",
                "staging",
                "--hosts",
                host,
                "--revision",
                sha,
                "--release",
                "build-0001",
            ],
            0,
        );
    }
    assert_eq!(
        all_on(&p),
        [
            Some("build-0001".to_string()),
            Some("build-0001".to_string())
        ]
    );
    let out = expect_exit(p.run(&["releases", "staging"]), 0);
    let said = stdout(&out);
    assert!(!said.contains("hosts agree"), "{said}");
    assert!(
        said.contains(&format!(
            "hosts disagree: release build-0001 is commit {} on fleet-1 but {} on fleet-2",
            &first[..12],
            &second[..12]
        )),
        "{said}"
    );
}
