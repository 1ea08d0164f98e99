//! `--format json` and `--junit` for the commands that inspect or change a
//! stage outside a deploy (`check`, `releases`, `history`, `lock`,
//! `unlock`, `approve`), against real sshd hosts: stdout is JSON lines
//! only, each with `schema: 1`, ending with a `summary` whose `exit_code`
//! is the process's; `check --junit` validates against the fixture schema.

mod support;

use std::fs;
use std::process::Output;

use serde_json::Value;
use support::deploy_yml::yaml_str;
use support::json_events::assert_documented;
use support::project::{shipit_cmd, text, Project};

/// A smoke test, so good deploys are recorded `verified`.
const SMOKE: &str = "tasks:\n  smoke_test:\n    run: \"test -s REVISION\"\n";

fn run_as(p: &Project, user: &str, args: &[&str]) -> Output {
    shipit_cmd(&p.dir, args)
        .env("SHIPIT_USER", user)
        .output()
        .expect("shipit runs")
}

/// Every stdout line parsed; each must be a JSON object with `schema: 1`,
/// and the last a `summary` carrying the process's exit code. Returns the
/// events.
fn json_stream(o: &Output) -> Vec<Value> {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.is_empty(), "no output: {}", text(o));
    let ev: Vec<Value> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\n{}", text(o)))
        })
        .collect();
    for e in &ev {
        assert_eq!(e["schema"], 1, "{e}");
        assert!(e["event"].is_string(), "{e}");
    }
    assert_documented(&ev);
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "summary", "{}", text(o));
    assert_eq!(
        last["exit_code"].as_i64(),
        o.status.code().map(i64::from),
        "{}",
        text(o)
    );
    assert_eq!(last["ok"], o.status.code() == Some(0), "{last}");
    ev
}

fn of_kind<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event"] == kind).collect()
}

/// Adds to the stage a host that cannot be reached (nothing listens on
/// port 1 of 127.0.0.1).
fn add_unreachable_host(p: &Project) {
    let path = p.dir.join("deploy.yml");
    let mut y = fs::read_to_string(&path).unwrap();
    y.push_str(&format!(
        "      - {{ host: 127.0.0.1, port: 1, roles: [app], deploy_to: {} }}\n",
        yaml_str(&p.dir.join("nowhere").to_string_lossy())
    ));
    fs::write(path, y).unwrap();
}

#[test]
fn check_speaks_json_and_junit_and_fails_on_an_unreachable_host() {
    let p = Project::new(2);
    p.write_config("linked_files: [.env]\n", "", |_| String::new());
    for d in p.hosts() {
        fs::create_dir_all(d.join("shared")).unwrap();
        fs::write(d.join("shared/.env"), "PORT=1\n").unwrap();
    }
    let report = p.dir.join("reports/check.xml");
    let r = report.to_str().unwrap();
    let out = p.run(&["check", "staging", "--format", "json", "--junit", r]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ev = json_stream(&out);
    assert_eq!(ev[0]["event"], "run_started");
    assert_eq!(ev[0]["recipe"], "check");
    let results = of_kind(&ev, "check_result");
    for host in ["fleet-1", "fleet-2"] {
        for check in ["connect", "deploy_to", "disk", "linked_files", "lock"] {
            assert!(
                results
                    .iter()
                    .any(|c| c["host"] == host && c["check"] == check && c["status"] == "ok"),
                "no ok `{check}` for {host}: {ev:?}"
            );
        }
    }
    let xml = support::report::valid_junit(&report);
    assert!(
        xml.contains("<testcase name=\"linked_files\" classname=\"shipit.check.staging.fleet-1\""),
        "{xml}"
    );
    assert!(!xml.contains("<failure"), "{xml}");

    // A missing linked file on one host, and a host nobody answers on.
    fs::remove_file(p.hosts()[1].join("shared/.env")).unwrap();
    add_unreachable_host(&p);
    let out = p.run(&["check", "staging", "--format", "json", "--junit", r]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let ev = json_stream(&out);
    let failed: Vec<(String, String)> = of_kind(&ev, "check_result")
        .iter()
        .filter(|c| c["status"] == "failed")
        .map(|c| {
            (
                c["host"].as_str().unwrap().to_string(),
                c["check"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        vec![
            ("fleet-2".to_string(), "linked_files".to_string()),
            ("127.0.0.1".to_string(), "connect".to_string()),
        ],
        "{ev:?}"
    );
    let summary = ev.last().unwrap();
    assert_eq!(summary["hosts"][0]["ok"], true, "{summary}");
    assert_eq!(summary["hosts"][1]["ok"], false, "{summary}");
    let xml = support::report::valid_junit(&report);
    assert!(
        xml.contains("<testcase name=\"linked_files\" classname=\"shipit.check.staging.fleet-2\"")
            && xml.contains("<failure message=\"missing linked file `shared/.env`"),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase name=\"connect\" classname=\"shipit.check.staging.127_0_0_1\""),
        "{xml}"
    );
}

#[test]
fn releases_and_history_speak_json() {
    let p = Project::new(2);
    p.write_config(SMOKE, "", |_| String::new());
    p.deploy_ok();

    let out = p.run(&["releases", "staging", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ev = json_stream(&out);
    let hosts = of_kind(&ev, "host_releases");
    assert_eq!(hosts.len(), 2, "{ev:?}");
    for h in &hosts {
        let rel = &h["releases"][0];
        assert_eq!(rel["status"], "verified", "{h}");
        assert_eq!(rel["current"], true, "{h}");
        assert_eq!(h["current"], rel["id"], "{h}");
    }
    let report = of_kind(&ev, "report");
    assert!(
        report[0]["lines"][0]
            .as_str()
            .unwrap()
            .starts_with("releases staging: 2 hosts agree"),
        "{report:?}"
    );

    let out = p.run(&["history", "staging", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ev = json_stream(&out);
    let entries = of_kind(&ev, "history_entry");
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "verified"
                && e["hosts"] == serde_json::json!(["fleet-1", "fleet-2"])),
        "{ev:?}"
    );

    // A host that cannot be read: exit 1, still a summary.
    add_unreachable_host(&p);
    for cmd in ["releases", "history"] {
        let out = p.run(&[cmd, "staging", "--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let ev = json_stream(&out);
        let unread = of_kind(&ev, "host_unread");
        assert_eq!(unread.len(), 1, "{ev:?}");
        assert_eq!(unread[0]["host"], "127.0.0.1");
    }
}

#[test]
fn lock_and_unlock_speak_json_and_a_held_lock_exits_4() {
    let p = Project::new(2);
    p.write_config("", "", |_| String::new());

    let out = p.run(&["lock", "staging", "-m", "freeze", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ev = json_stream(&out);
    let states = of_kind(&ev, "lock_state");
    assert_eq!(states.len(), 2, "{ev:?}");
    assert!(states.iter().all(|s| s["state"] == "locked"), "{ev:?}");

    // Held by tester: another lock is refused with exit 4, naming him.
    let out = run_as(&p, "alice", &["lock", "staging", "--format", "json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let ev = json_stream(&out);
    let held = of_kind(&ev, "lock_state");
    assert!(
        held.iter()
            .all(|s| s["state"] == "held" && s["holder"]["user"] == "tester"),
        "{ev:?}"
    );
    assert_eq!(held[0]["holder"]["message"], "freeze");

    // alice may not free it; tester may.
    let out = run_as(&p, "alice", &["unlock", "staging", "--format", "json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let ev = json_stream(&out);
    assert!(
        of_kind(&ev, "lock_state")
            .iter()
            .all(|s| s["state"] == "refused"),
        "{ev:?}"
    );
    let out = p.run(&["unlock", "staging", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ev = json_stream(&out);
    assert!(
        of_kind(&ev, "lock_state")
            .iter()
            .all(|s| s["state"] == "freed"),
        "{ev:?}"
    );
    for d in p.hosts() {
        assert!(!d.join(".shipit/lock").exists());
    }
}

#[test]
fn approve_speaks_json_and_fails_without_a_candidate() {
    let p = Project::new(3);
    let hosts = p.fleet.hosts();
    let host = |i: usize| {
        format!(
            "      - {{ host: {}, roles: [app], deploy_to: {} }}\n",
            hosts[i].alias,
            yaml_str(&hosts[i].deploy_to.to_string_lossy())
        )
    };
    let y = format!(
        "application: shop\nrepository: {repo}\nbranch: main\n\
         ssh:\n  config_file: {cfg}\n  connect_timeout: 5s\n{SMOKE}\
         stages:\n  staging:\n    hosts:\n{h0}  production:\n    promote_from: staging\n    gate: {{ approvals: 1 }}\n    hosts:\n{h1}{h2}",
        repo = yaml_str(p.repo.to_str().unwrap()),
        cfg = yaml_str(&p.fleet.ssh_config().to_string_lossy()),
        h0 = host(0),
        h1 = host(1),
        h2 = host(2),
    );
    fs::write(p.dir.join("deploy.yml"), y).unwrap();

    // Nothing verified on staging yet: refused (exit 3), with a summary.
    let out = run_as(&p, "bob", &["approve", "production", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let ev = json_stream(&out);
    assert!(of_kind(&ev, "approval").is_empty(), "{ev:?}");

    let out = p.run(&["deploy", "staging"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run_as(&p, "bob", &["approve", "production", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ev = json_stream(&out);
    assert_eq!(ev[0]["recipe"], "approve");
    assert_eq!(ev[0]["hosts"], serde_json::json!(["fleet-2", "fleet-3"]));
    let a = of_kind(&ev, "approval");
    assert_eq!(a.len(), 1, "{ev:?}");
    assert_eq!(a[0]["decision"], "approved");
    assert_eq!(a[0]["user"], "bob");
    assert_eq!(a[0]["from_stage"], "staging");
    for d in &p.hosts()[1..] {
        let ledger = fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap();
        assert!(ledger.contains("\"event\":\"approved\""), "{ledger}");
    }
}
