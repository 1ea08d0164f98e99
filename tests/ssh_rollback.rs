//! `shipit rollback` and `shipit history` on a fleet of real sshd hosts:
//! what a user checks afterwards — every host's `current`, its ledger,
//! revisions.log, and the exit code.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::deploy_yml::HOOKS;
use support::project::{
    assert_says, assert_unlocked, commit, current, events, ledger, stdout, text, Project,
};

fn project(hosts: usize) -> Project {
    let p = Project::new(hosts);
    p.write_config(HOOKS, "", |_| String::new());
    p
}

/// The release `current` points at on `d`.
fn on(d: &Path) -> String {
    current(d)
        .expect("a current release")
        .trim_start_matches("releases/")
        .to_string()
}

/// Commits a change and deploys it; returns the new release id (checked to
/// be current everywhere) and its commit.
fn deploy_change(p: &Project, body: &str) -> (String, String) {
    let sha = commit(&p.repo, "VERSION", body);
    p.deploy_ok();
    let id = on(&p.hosts()[0]);
    for d in p.hosts() {
        assert_eq!(on(&d), id, "{}", d.display());
    }
    (id, sha)
}

/// The first deploy of the project's initial commit.
fn deploy_first(p: &Project) -> String {
    p.deploy_ok();
    on(&p.hosts()[0])
}

fn assert_all_on(p: &Project, id: &str) {
    for d in p.hosts() {
        assert_eq!(on(&d), id, "{}", d.display());
    }
}

fn pair(e: &str, r: &str) -> (String, String) {
    (e.to_string(), r.to_string())
}

/// The last `n` `(event, release)` pairs of a host's ledger.
fn last_events(d: &Path, n: usize) -> Vec<(String, String)> {
    let ev = events(d);
    ev[ev.len().saturating_sub(n)..].to_vec()
}

fn last_line(path: PathBuf) -> String {
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// Asserts a rollback from `from` to `to` is recorded on every host.
fn assert_rolled_back(p: &Project, from: &str, to: &str) {
    for d in p.hosts() {
        assert_eq!(
            last_events(&d, 3),
            [
                pair("rolled_back", from),
                pair("published", to),
                pair("verified", to)
            ],
            "{}",
            d.display()
        );
        let l = ledger(&d);
        let back = &l[l.len() - 3];
        assert_eq!(back["detail"], format!("to {to}"), "{back}");
        assert_eq!(back["user"], "tester", "{back}");
        assert_eq!(
            last_line(d.join("revisions.log")),
            format!("tester rolled back to release {to}")
        );
        // Restarted on the target.
        assert_eq!(last_line(d.join("restarts")), to, "{}", d.display());
    }
}

#[test]
fn rollback_goes_back_to_the_previous_good_release_and_again_after_a_deploy() {
    let p = project(3);
    let a = deploy_first(&p);
    let (b, _) = deploy_change(&p, "2\n");

    let out = p.run_expect(&["rollback", "staging"], 0);
    let s = stdout(&out);
    for n in 1..=3 {
        assert!(
            s.contains(&format!("[fleet-{n}] rollback ok ")),
            "{}",
            text(&out)
        );
    }
    assert!(
        s.contains(&format!("every host is on release {a} (was {b})")),
        "{}",
        text(&out)
    );
    assert_all_on(&p, &a);
    assert_rolled_back(&p, &b, &a);
    assert_unlocked(&p);

    // Deploy again, roll back again: the rolled-back release is skipped.
    let (c, _) = deploy_change(&p, "3\n");
    let out = p.run_expect(&["rollback", "staging"], 0);
    assert_says(&out, &format!("every host is on release {a} (was {c})"));
    assert_all_on(&p, &a);
    assert_rolled_back(&p, &c, &a);

    // Nothing older than the first release: refused, nothing changes.
    let before: Vec<usize> = p.hosts().iter().map(|d| events(d).len()).collect();
    let out = p.run_expect(&["rollback", "staging"], 1);
    let s = stdout(&out);
    assert!(
        s.contains(&format!(
            "refused — no release to roll back to: none older than current {a} has `verified` as its last ledger event (on every host); nothing was changed"
        )),
        "{}",
        text(&out)
    );
    assert_all_on(&p, &a);
    let after: Vec<usize> = p.hosts().iter().map(|d| events(d).len()).collect();
    assert_eq!(after, before, "a refused rollback records nothing");
    assert_unlocked(&p);
}

#[test]
fn rollback_to_an_older_release() {
    let p = project(3);
    let a = deploy_first(&p);
    let (b, _) = deploy_change(&p, "2\n");
    let (c, _) = deploy_change(&p, "3\n");

    let out = p.run_expect(&["rollback", "staging", "--to", &a], 0);
    assert_says(&out, &format!("every host is on release {a} (was {c})"));
    assert_all_on(&p, &a);
    assert_rolled_back(&p, &c, &a);
    assert_unlocked(&p);

    // Forward again to B, which was never rolled back.
    p.run_expect(&["rollback", "staging", "--to", &b], 0);
    assert_all_on(&p, &b);

    // Not a release id (nor a name `deploy --release` takes): bad usage.
    // A release no host has: refused.
    p.run_expect(&["rollback", "staging", "--to", "../yesterday"], 2);
    let out = p.run_expect(&["rollback", "staging", "--to", "20200101T000000Z"], 1);
    assert_says(
        &out,
        "release 20200101T000000Z is not on this host (on every host)",
    );
    assert_all_on(&p, &b);
    assert_unlocked(&p);
}

#[test]
fn rollback_refuses_when_hosts_disagree_unless_forced() {
    let p = project(3);
    let a = deploy_first(&p);
    let (b, _) = deploy_change(&p, "2\n");
    let (c, _) = deploy_change(&p, "3\n");

    // By hand: fleet-3 back on B, and its ledger saying so.
    let d3 = &p.hosts()[2];
    std::os::unix::fs::symlink(format!("releases/{b}"), d3.join("current.tmp")).unwrap();
    fs::rename(d3.join("current.tmp"), d3.join("current")).unwrap();
    let l = ledger(d3);
    let mut lines = String::new();
    for (event, release, detail) in [
        ("rolled_back", &c, Some(format!("to {b}"))),
        ("published", &b, None),
        ("verified", &b, None),
    ] {
        let mut e = l
            .iter()
            .find(|e| e["release"] == release.as_str())
            .unwrap()
            .clone();
        e["event"] = event.into();
        if let Some(d) = detail {
            e["detail"] = d.into();
        }
        lines.push_str(&format!("{e}\n"));
    }
    let path = d3.join(".shipit/ledger.jsonl");
    let mut text3 = fs::read_to_string(&path).unwrap();
    text3.push_str(&lines);
    fs::write(&path, text3).unwrap();

    let out = p.run_expect(&["rollback", "staging"], 1);
    let s = stdout(&out);
    for line in [
        format!("hosts disagree: target is {b} on fleet-1, fleet-2 but {a} on fleet-3"),
        format!("hosts disagree: current is {c} on fleet-1, fleet-2 but {b} on fleet-3"),
        "`shipit rollback staging --force` rolls each host back to its own target; nothing was changed".to_string(),
    ] {
        assert!(s.contains(&line), "no `{line}` in\n{}", text(&out));
    }
    assert_eq!(on(&p.hosts()[0]), c);
    assert_eq!(on(&p.hosts()[1]), c);
    assert_eq!(on(d3), b);
    assert_unlocked(&p);

    let out = p.run_expect(&["rollback", "staging", "--force"], 0);
    assert_says(
        &out,
        &format!("fleet-1, fleet-2 on release {b} (was {c}); fleet-3 on release {a} (was {b})"),
    );
    assert_eq!(on(&p.hosts()[0]), b);
    assert_eq!(on(&p.hosts()[1]), b);
    assert_eq!(on(d3), a);
    assert_eq!(
        last_events(d3, 3),
        [
            pair("rolled_back", &b),
            pair("published", &a),
            pair("verified", &a)
        ]
    );
    assert_unlocked(&p);
}

#[test]
fn rollback_skips_a_failed_release() {
    let p = project(3);
    let a = deploy_first(&p);
    let (b, _) = deploy_change(&p, "2\n");
    let sha_c = commit(&p.repo, "VERSION", "3\n");
    for d in p.hosts() {
        fs::write(d.join("FAIL_SMOKE"), &sha_c).unwrap();
    }
    p.deploy_expect(1);
    assert_all_on(&p, &b);
    let c = events(&p.hosts()[0])
        .into_iter()
        .rev()
        .find(|(e, _)| e == "failed")
        .map(|(_, r)| r)
        .expect("the failed deploy is in the ledger");
    assert!(c > b, "{c}");
    assert!(
        support::project::releases(&p.hosts()[0]).contains(&c),
        "the failed release's dir is still there"
    );
    for d in p.hosts() {
        assert!(
            events(&d).contains(&pair("failed", &c)),
            "{}: {:?}",
            d.display(),
            events(&d)
        );
    }

    // `--to` the failed release is refused without --force.
    let out = p.run_expect(&["rollback", "staging", "--to", &c], 1);
    assert_says(
        &out,
        &format!("release {c} is marked `failed` in the ledger"),
    );
    assert!(stdout(&out).contains("--force rolls back to it anyway"));
    assert_all_on(&p, &b);

    // Current is B; C (failed, and newer anyway) is skipped: back to A.
    p.run_expect(&["rollback", "staging"], 0);
    assert_all_on(&p, &a);
    assert_rolled_back(&p, &b, &a);
    assert_unlocked(&p);
}

#[test]
fn a_target_failing_its_smoke_test_is_switched_back_on_that_host() {
    let p = project(3);
    let (a, sha_a) = {
        let a = deploy_first(&p);
        let sha = fs::read_to_string(p.hosts()[0].join(format!("releases/{a}/REVISION")))
            .unwrap()
            .trim()
            .to_string();
        (a, sha)
    };
    let (b, _) = deploy_change(&p, "2\n");
    let d2 = &p.hosts()[1];
    fs::write(d2.join("FAIL_SMOKE"), &sha_a).unwrap();

    let out = p.run_expect(&["rollback", "staging"], 1);
    let s = stdout(&out);
    assert!(s.contains("[fleet-2] rollback FAILED"), "{}", text(&out));
    assert!(
        s.contains(&format!(
            "FAILED on fleet-2 (smoke_test failed; switched back to {b}); fleet-1, fleet-3 on release {a} (was {b})"
        )),
        "{}",
        text(&out)
    );
    assert_eq!(on(&p.hosts()[0]), a);
    assert_eq!(on(d2), b);
    assert_eq!(on(&p.hosts()[2]), a);
    // The target failed there; the release it came from is live and
    // verified again, and was restarted after the target.
    assert_eq!(
        last_events(d2, 2),
        [pair("failed", &a), pair("verified", &b)]
    );
    assert!(!events(d2).contains(&pair("rolled_back", &b)));
    let restarts = fs::read_to_string(d2.join("restarts")).unwrap();
    let lines: Vec<&str> = restarts.lines().collect();
    assert_eq!(lines[lines.len() - 2..], [a.as_str(), b.as_str()]);
    assert_unlocked(&p);
}

#[test]
fn rollback_is_refused_by_a_held_lock() {
    let p = project(3);
    let a = deploy_first(&p);
    let (b, _) = deploy_change(&p, "2\n");
    let held = &p.hosts()[1];
    fs::create_dir_all(held.join(".shipit/lock")).unwrap();
    let info = serde_json::json!({
        "user": "bob",
        "machine": "laptop",
        "pid": 1,
        "time": "2026-11-24T19:01:02Z",
        "stage": "staging",
        "message": "hotfix in progress",
        "token": "bobs",
    });
    fs::write(held.join(".shipit/lock/info"), format!("{info}\n")).unwrap();

    let out = p.run_expect(&["rollback", "staging"], 4);
    assert_says(&out, "refused — stage `staging` is locked on `fleet-2` by `bob` on `laptop` (pid 1) since 2026-11-24T19:01:02Z: hotfix in progress; nothing was changed");
    assert_all_on(&p, &b);
    // Ours freed, bob's left.
    assert!(!p.hosts()[0].join(".shipit/lock").exists());
    assert!(!p.hosts()[2].join(".shipit/lock").exists());
    assert!(held.join(".shipit/lock/info").exists());
    assert!(!events(&p.hosts()[0]).contains(&pair("rolled_back", &b)));

    fs::remove_dir_all(held.join(".shipit/lock")).unwrap();
    p.run_expect(&["rollback", "staging"], 0);
    assert_all_on(&p, &a);
}

#[test]
fn rollback_needs_no_git_server() {
    let p = project(3);
    let a = deploy_first(&p);
    let (b, _) = deploy_change(&p, "2\n");
    let gone = p.repo.with_extension("gone");
    fs::rename(&p.repo, &gone).unwrap();

    p.run_expect(&["rollback", "staging"], 0);
    assert_all_on(&p, &a);
    assert_rolled_back(&p, &b, &a);
    // A deploy does need it.
    let out = p.deploy();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_all_on(&p, &a);
    fs::rename(&gone, &p.repo).unwrap();
}

#[test]
fn history_lists_deploys_and_the_rollback_newest_first_hosts_grouped() {
    let p = project(3);
    let a = deploy_first(&p);
    let (b, sha_b) = deploy_change(&p, "2\n");
    p.run_expect(&["rollback", "staging"], 0);

    let out = p.run_expect(&["history", "staging"], 0);
    let s = stdout(&out);
    let hosts = "fleet-1, fleet-2, fleet-3";
    let sha_a = ledger(&p.hosts()[0])[0]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    let (ca, cb) = (&sha_a[..12], &sha_b[..12]);
    // (event, release, commit, tail) in the order expected, newest first.
    let expected = [
        format!("verified     {a}  {ca}  tester  {hosts}"),
        format!("published    {a}  {ca}  tester  {hosts}  (rollback from {b})"),
        format!("rolled_back  {b}  {cb}  tester  {hosts}  (to {a})"),
        format!("verified     {b}  {cb}  tester  {hosts}"),
        format!("published    {b}  {cb}  tester  {hosts}"),
        format!("staged       {b}  {cb}  tester  {hosts}"),
        format!("verified     {a}  {ca}  tester  {hosts}"),
        format!("published    {a}  {ca}  tester  {hosts}"),
        format!("staged       {a}  {ca}  tester  {hosts}"),
    ];
    let body: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with("20") && l.contains("  tester  "))
        .collect();
    assert_eq!(body.len(), expected.len(), "{}", text(&out));
    for (line, want) in body.iter().zip(&expected) {
        // Each line starts with the time.
        assert_eq!(&line[20..22], "  ", "{line}");
        assert!(
            line.ends_with(want.as_str()),
            "`{line}` is not `{want}`\n{s}"
        );
    }
    assert!(
        s.contains("history staging: 9 events, newest first"),
        "{}",
        text(&out)
    );

    let out = p.run_expect(&["history", "staging", "-n", "2"], 0);
    let s = stdout(&out);
    assert!(
        s.contains("history staging: the newest 2 of 9 events"),
        "{}",
        text(&out)
    );
    assert!(!s.contains("rolled_back"), "{s}");
}

/// A Jenkins job runs `rollback` as it runs `deploy`: JSON lines ending in
/// a summary with the exit code, and a JUnit report Jenkins accepts, for a
/// rollback that works and one that is refused.
#[test]
fn rollback_speaks_json_and_junit() {
    let p = project(2);
    let (a, _) = deploy_change(&p, "1\n");
    let (b, _) = deploy_change(&p, "2\n");

    let out = p.run(&["rollback", "staging", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = support::report::json_events(&out);
    assert_eq!(events[0]["event"], "run_started");
    assert_eq!(events[0]["recipe"], "rollback");
    let switched: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["step"] == "switch")
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert_eq!(switched.len(), 2, "each host's switch is a step event");
    let summary = events.last().unwrap();
    assert_eq!(summary["ok"], true);
    for h in summary["hosts"].as_array().unwrap() {
        assert_eq!(h["state"], format!("on {a} (was {b})"), "{h}");
        assert_eq!(h["commands"], 2, "lock and read, then one chain: {h}");
    }
    assert_all_on(&p, &a);

    // Refused: nothing older than `a` is good. Still one summary, exit 1.
    let junit = p.dir.join("reports/rollback.xml");
    let out = p.run(&[
        "rollback",
        "staging",
        "--format",
        "json",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let events = support::report::json_events(&out);
    let summary = events.last().unwrap();
    assert_eq!(summary["ok"], false);
    assert!(
        summary["headline"]
            .as_str()
            .unwrap()
            .starts_with("refused — no release to roll back to"),
        "{summary}"
    );
    let xml = support::report::valid_junit(&junit);
    assert!(
        xml.contains("testsuite name=\"shipit.rollback.staging.fleet-1\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure"),
        "a refused rollback fails the build: {xml}"
    );
    assert_all_on(&p, &a);
    assert_unlocked(&p);
}
