//! Fixed event sequences that every reporter's snapshot test is fed, so
//! the plain, human, JSON and JUnit renderings of one run can be read side
//! by side (`src/report/snapshots/`). Durations, ids and commits are fixed
//! here; nothing depends on the clock.

use std::time::Duration;

use crate::engine::{Event, HostSummary, StepOutcome, Summary};

const RELEASE: &str = "20261124T190102Z";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn started(host: &str, step: &str) -> Event {
    Event::StepStarted {
        host: host.into(),
        step: step.into(),
    }
}

fn ok(host: &str, step: &str, ms: u64) -> Event {
    Event::StepFinished {
        host: host.into(),
        step: step.into(),
        outcome: StepOutcome::Ok,
        duration: Duration::from_millis(ms),
        tail: Vec::new(),
    }
}

/// `step` started and succeeded on every host of `hosts`, in order; host
/// i takes `ms + 10 * i` milliseconds.
fn everywhere(events: &mut Vec<Event>, hosts: &[&str], step: &str, ms: u64) {
    events.extend(hosts.iter().map(|h| started(h, step)));
    events.extend(
        hosts
            .iter()
            .zip(0u64..)
            .map(|(h, i)| ok(h, step, ms + 10 * i)),
    );
}

fn run_started(stage: &str, hosts: &[&str]) -> Event {
    Event::RunStarted {
        recipe: "deploy".into(),
        stage: stage.into(),
        release: RELEASE.into(),
        commit: COMMIT.into(),
        reference: "main".into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
    }
}

fn host(host: &str, ok: bool, state: &str, round_trips: usize) -> HostSummary {
    HostSummary {
        host: host.into(),
        ok,
        state: state.into(),
        round_trips,
    }
}

/// A deploy of `production` whose build fails on `web-02` (exit 2, npm's
/// complaint as the tail): no host is switched, the two others discard
/// their staged release, every host is unlocked; exit 1.
pub fn failed_build() -> Vec<Event> {
    let hosts = ["web-01", "web-02", "db-1"];
    let mut e = vec![run_started("production", &hosts)];
    everywhere(&mut e, &hosts, "lock", 120);
    for (step, ms) in [
        ("check", 80),
        ("fetch", 1450),
        ("create_release", 310),
        ("link_shared", 40),
    ] {
        everywhere(&mut e, &hosts, step, ms);
    }
    // build runs on the app hosts only.
    e.push(started("web-01", "build"));
    e.push(started("web-02", "build"));
    e.push(Event::StepFinished {
        host: "web-02".into(),
        step: "build".into(),
        outcome: StepOutcome::Failed("exit 2".into()),
        duration: Duration::from_millis(2875),
        tail: vec![
            "npm ERR! Missing script: \"build\"".into(),
            "npm ERR! A complete log of this run can be found in: /home/deploy/.npm/_logs/debug-0.log"
                .into(),
        ],
    });
    e.push(ok("web-01", "build", 3120));
    // Staging failed: every host that created the release discards it.
    everywhere(&mut e, &hosts, "discard_staged", 60);
    everywhere(&mut e, &hosts, "unlock", 50);
    let prev = "current unchanged (releases/20261120T101500Z)";
    e.push(Event::Finished(Summary {
        recipe: "deploy".into(),
        stage: "production".into(),
        release: RELEASE.into(),
        commit: COMMIT.into(),
        ok: false,
        headline: "staging failed on web-02; no host was switched, staged releases removed".into(),
        hosts: vec![
            host(
                "web-01",
                false,
                &format!("staged, not switched; staged release removed; {prev}"),
                8,
            ),
            host(
                "web-02",
                false,
                &format!("failed at build: exit 2; staged release removed; {prev}"),
                8,
            ),
            host(
                "db-1",
                false,
                &format!("staged, not switched; staged release removed; {prev}"),
                7,
            ),
        ],
        duration: Duration::from_millis(6480),
        exit_code: 1,
    }));
    e
}

/// A deploy of `production` in two publish batches (the canary `web-01`,
/// then `web-02` and `web-03`) after a notice that the release id moved
/// on; every host ends verified; exit 0.
pub fn two_batches() -> Vec<Event> {
    let hosts = ["web-01", "web-02", "web-03"];
    let mut e = vec![run_started("production", &hosts)];
    everywhere(&mut e, &hosts, "lock", 110);
    e.push(Event::Notice(format!(
        "release id is 20261124T190103Z: {RELEASE} is not later than a release already on a host"
    )));
    for (step, ms) in [
        ("check", 70),
        ("fetch", 900),
        ("create_release", 260),
        ("link_shared", 30),
        ("build", 2100),
    ] {
        everywhere(&mut e, &hosts, step, ms);
    }
    let batches: [&[&str]; 2] = [&["web-01"], &["web-02", "web-03"]];
    for (i, batch) in batches.iter().enumerate() {
        e.push(Event::BatchStarted {
            index: i + 1,
            of: batches.len(),
            hosts: batch.iter().map(|h| h.to_string()).collect(),
        });
        for (step, ms) in [("publish", 20), ("restart", 640), ("smoke_test", 1210)] {
            everywhere(&mut e, batch, step, ms);
        }
    }
    for (step, ms) in [("record", 30), ("cleanup", 90), ("unlock", 40)] {
        everywhere(&mut e, &hosts, step, ms);
    }
    let id = "20261124T190103Z";
    e.push(Event::Finished(Summary {
        recipe: "deploy".into(),
        stage: "production".into(),
        release: id.into(),
        commit: COMMIT.into(),
        ok: true,
        headline: format!("every host is on release {id} (commit 0123456789ab)"),
        hosts: hosts
            .iter()
            .map(|h| host(h, true, &format!("on {id} (verified)"), 12))
            .collect(),
        duration: Duration::from_millis(7350),
        exit_code: 0,
    }));
    e
}

/// Both sequences, named, for tests that snapshot each.
pub fn all() -> [(&'static str, Vec<Event>); 2] {
    [
        ("failed_build", failed_build()),
        ("two_batches", two_batches()),
    ]
}
