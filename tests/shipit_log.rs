//! `SHIPIT_LOG=debug`: diagnostic logs on stderr — the commands each host
//! was sent, timings, steps — that never show a secret's value, and leave
//! stdout as it is without them.

mod support;

use std::fs;
use std::process::Output;

use support::project::{shipit_cmd, text, Project};

/// Read by a task as `env.DB_PASSWORD`; `!` is quoted apart by the ssh
/// transport, so the log must mask its quoted form too.
const DB_PASSWORD: &str = "pw!4f9a-hunter2";
/// Read by nothing: a secret by its name (`*_TOKEN`).
const API_TOKEN: &str = "tok-77c1e0-secret";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_no_secret(what: &str, s: &str) {
    for secret in [DB_PASSWORD, API_TOKEN, "4f9a-hunter2", "77c1e0"] {
        assert!(!s.contains(secret), "{what} shows `{secret}`:\n{s}");
    }
}

const TASKS: &str = r#"tasks:
  build:
    after: create_release
    run: "echo built with {{ env.DB_PASSWORD }} > BUILD; echo token $API_TOKEN"
  restart:
    run: "echo restarted"
  smoke_test:
    run: "test -s BUILD"
"#;

#[test]
fn a_local_deploy_logs_its_commands_and_steps_without_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, dir) = support::project::app_and_project(tmp.path());
    fs::write(
        dir.join("deploy.yml"),
        format!(
            "application: shop\nrepository: {}\nbranch: main\n{TASKS}stages:\n  demo:\n    hosts:\n      - {{ host: box, transport: local, deploy_to: ./deployed }}\n",
            serde_json::to_string(repo.to_str().unwrap()).unwrap()
        ),
    )
    .unwrap();
    let run = |log: Option<&str>, args: &[&str]| {
        let mut c = shipit_cmd(&dir, args);
        c.env("DB_PASSWORD", DB_PASSWORD)
            .env("API_TOKEN", API_TOKEN);
        if let Some(level) = log {
            c.env("SHIPIT_LOG", level);
        }
        c.output().unwrap()
    };

    let out = run(Some("debug"), &["deploy", "demo", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = stderr(&out);
    // The commands as the local shell got them, then how they ended.
    assert!(log.contains("DEBUG"), "{log}");
    assert!(log.contains("local: sh -c 'exec sh -s'"), "{log}");
    // The value is one quoted word in the command; the log masks it.
    assert!(
        log.lines().any(|l| l.contains("echo built with ")
            && l.contains("[redacted]")
            && l.contains(" > BUILD")),
        "{log}"
    );
    assert!(
        log.contains("command finished host=box status=Some(0)"),
        "{log}"
    );
    for step in ["lock", "create_release", "build", "publish", "smoke_test"] {
        assert!(
            log.contains(&format!("step finished host=box step={step} ok=true ms=")),
            "no `{step}` in:\n{log}"
        );
    }
    assert_no_secret("the log", &log);
    // stdout stays one JSON object per line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    }
    assert_no_secret("stdout", &stdout);

    // Without SHIPIT_LOG: no log at all.
    let out = run(None, &["deploy", "demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!stderr(&out).contains("DEBUG"), "{}", text(&out));
    assert!(!stderr(&out).contains("sh -c"), "{}", text(&out));

    let out = run(Some("loud"), &["deploy", "demo"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out)
            .contains("invalid SHIPIT_LOG `loud`, expected off, error, warn, info, debug or trace"),
        "{}",
        text(&out)
    );
}

#[test]
fn over_ssh_the_log_shows_the_master_and_each_command_line_without_secrets() {
    let p = Project::new(1);
    p.write_config(TASKS, "", |_| String::new());
    let host = p.fleet.hosts()[0].alias.clone();
    let run = |args: &[&str]| {
        shipit_cmd(&p.dir, args)
            .env("DB_PASSWORD", DB_PASSWORD)
            .env("API_TOKEN", API_TOKEN)
            .env("SHIPIT_LOG", "debug")
            .output()
            .unwrap()
    };

    let out = run(&["deploy", "staging"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = stderr(&out);
    assert!(log.contains("ssh master: ssh '-E'"), "{log}");
    assert!(
        log.contains(&format!(
            "ssh master: connect attempt ended host={host} ms="
        )),
        "{log}"
    );
    // What sshd hands the login shell, quoted as sent.
    assert!(
        log.contains(&format!(
            "ssh {host}: exec sh -c 'echo \"shipit-pid:$$\" >&2; exec sh -c \"$1\"' shipit"
        )),
        "{log}"
    );
    // The value is one quoted word in the command; the log masks it.
    assert!(
        log.lines().any(|l| l.contains("echo built with ")
            && l.contains("[redacted]")
            && l.contains(" > BUILD")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "step finished host={host} step=smoke_test ok=true"
        )),
        "{log}"
    );
    assert_no_secret("the deploy's log", &log);

    // A command line carrying the secret itself, `!` quoted apart.
    let out = run(&["exec", "staging", "--", "echo", DB_PASSWORD, "$API_TOKEN"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = stderr(&out);
    assert!(log.contains(&format!("ssh {host}: exec sh -c ")), "{log}");
    assert!(log.contains("echo [redacted] $API_TOKEN"), "{log}");
    assert_no_secret("the exec's log", &log);
    assert_no_secret("the exec's output", &String::from_utf8_lossy(&out.stdout));
}
