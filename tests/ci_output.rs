//! shipit as a CI build step: what Jenkins sees on stdout (plain lines,
//! JSON lines), the JUnit report (checked against tests/fixtures/junit.xsd
//! with xmllint), exit codes, and secrets redacted from all of it. Format
//! checks run deploys through `transport: local`; `exec` and `run` run on
//! the real sshd fleet.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::json_events::assert_documented;
use support::project::{
    assert_says, commit, expect_exit, git, shipit_cmd, stdout, text, wait_until, Project,
};

/// A secret read by a task as `env.DB_PASSWORD`.
const DB_PASSWORD: &str = "hunter2-db-pw";
/// A secret no task reads: redacted because of its name (`*_TOKEN`).
const API_TOKEN: &str = "tok-4f9a7c-secret";

/// A project deploying to one local host, with a build task that prints
/// both secrets (stdout and stderr) and fails when `deployed/FAIL_BUILD`
/// exists, and a smoke test that fails for the commit named in
/// `deployed/FAIL_SMOKE` (so the previous release still passes it).
struct Local {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: PathBuf,
    deploy_to: PathBuf,
}

fn local() -> Local {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, dir) = support::project::app_and_project(tmp.path());
    let yml = format!(
        r#"application: shop
repository: {repo}
branch: main
tasks:
  build:
    after: create_release
    run: "echo \"connecting with {{{{ env.DB_PASSWORD }}}}\"; echo \"token $API_TOKEN\" >&2; if [ -e ../../FAIL_BUILD ]; then echo 'build broke' >&2; exit 2; fi"
  restart:
    run: "echo restarted"
  smoke_test:
    run: "test \"$(cat ../../FAIL_SMOKE 2>/dev/null)\" != \"$(cat REVISION)\""
  greet:
    after: cleanup
    run: "echo \"hello from $SHIPIT_RELEASE in $(pwd)\"; echo \"pw {{{{ env.DB_PASSWORD }}}}\" >&2"
stages:
  demo:
    hosts:
      - {{ host: box.example, transport: local, deploy_to: ./deployed }}
"#,
        repo = serde_json::to_string(repo.to_str().unwrap()).unwrap(),
    );
    fs::write(dir.join("deploy.yml"), yml).unwrap();
    let deploy_to = dir.join("deployed");
    Local {
        _tmp: tmp,
        dir,
        repo,
        deploy_to,
    }
}

impl Local {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = shipit_cmd(&self.dir, args);
        c.env("DB_PASSWORD", DB_PASSWORD)
            .env("API_TOKEN", API_TOKEN)
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("shipit runs")
    }

    fn fail_build(&self, on: bool) {
        fs::create_dir_all(&self.deploy_to).unwrap();
        let f = self.deploy_to.join("FAIL_BUILD");
        if on {
            fs::write(f, "").unwrap();
        } else {
            let _ = fs::remove_file(f);
        }
    }
}

/// Every stdout line as JSON; panics naming the first line that is not.
fn json_lines(o: &Output) -> Vec<Value> {
    let out = stdout(o);
    assert!(!out.is_empty(), "no output: {}", text(o));
    out.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\n{}", text(o)))
        })
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn assert_no_secret(what: &str, s: &str) {
    for secret in [DB_PASSWORD, API_TOKEN] {
        assert!(!s.contains(secret), "{what} shows a secret:\n{s}");
    }
}

#[test]
fn plain_output_names_the_host_on_every_step_line() {
    let l = local();
    // No --format: stdout is a pipe and CI is set, so plain.
    let out = expect_exit(l.run(&["deploy", "demo"]), 0);
    let s = stdout(&out);
    assert!(s.starts_with("deploy demo: release "), "{s}");
    for step in [
        "lock",
        "fetch",
        "create_release",
        "build",
        "publish",
        "restart",
        "smoke_test",
        "unlock",
    ] {
        assert!(
            s.lines()
                .any(|l| l.starts_with(&format!("[box.example] {step} ok "))),
            "no line for {step}:\n{s}"
        );
    }
    assert!(s.contains("deploy demo: ok — release "), "{s}");
    assert!(
        !s.contains('\u{1b}'),
        "no escape codes in plain output:\n{s}"
    );

    l.fail_build(true);
    commit(&l.repo, "VERSION", "2\n");
    let out = expect_exit(l.run(&["deploy", "demo", "--format", "plain"]), 1);
    let s = stdout(&out);
    assert!(s.contains("[box.example] build FAILED"), "{s}");
    assert!(s.contains("[box.example]   | build broke"), "{s}");
    assert_no_secret("plain output", &s);
    assert!(s.contains("[box.example]   | token [redacted]"), "{s}");
}

#[test]
fn json_lines_for_a_successful_deploy() {
    let l = local();
    let out = expect_exit(l.run(&["deploy", "demo", "--format", "json"]), 0);
    let ev = json_lines(&out);
    assert_documented(&ev);
    let first = &ev[0];
    assert_eq!(first["event"], "run_started");
    assert_eq!(first["recipe"], "deploy");
    assert_eq!(first["stage"], "demo");
    assert_eq!(first["reference"], "main");
    assert_eq!(first["hosts"], serde_json::json!(["box.example"]));
    assert_eq!(
        first["commit"].as_str().unwrap(),
        git(&l.repo, &["rev-parse", "HEAD"])
    );
    let release = first["release"].as_str().unwrap().to_string();
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(last["ok"], true);
    assert_eq!(last["release"].as_str().unwrap(), release);
    assert_eq!(last["hosts"][0]["host"], "box.example");
    assert_eq!(last["hosts"][0]["ok"], true);
    // Every step that started finished, with its time and status.
    let started = of_kind(&ev, "step_started");
    let finished = of_kind(&ev, "step_finished");
    assert!(started.len() >= 8, "{ev:?}");
    assert_eq!(started.len(), finished.len());
    assert!(of_kind(&ev, "step_failed").is_empty());
    for f in finished {
        assert_eq!(f["exit_status"], 0, "{f}");
        assert!(f["duration_ms"].is_u64(), "{f}");
    }
    assert!(
        ev.iter()
            .any(|e| e["event"] == "step_finished" && e["step"] == "smoke_test"),
        "{ev:?}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out));
}

#[test]
fn json_lines_for_failing_deploys_carry_the_failure_and_the_undo() {
    let l = local();
    assert_eq!(l.run(&["deploy", "demo"]).status.code(), Some(0));

    // Staging fails: the build's exit status and tail, the staged release
    // discarded.
    l.fail_build(true);
    commit(&l.repo, "VERSION", "2\n");
    let out = expect_exit(l.run(&["deploy", "demo", "--format", "json"]), 1);
    let ev = json_lines(&out);
    assert_documented(&ev);
    let failed = of_kind(&ev, "step_failed");
    assert_eq!(failed.len(), 1, "{ev:?}");
    let f = failed[0];
    assert_eq!(f["host"], "box.example");
    assert_eq!(f["step"], "build");
    assert_eq!(f["ok"], false);
    assert_eq!(f["exit_status"], 2);
    assert_eq!(f["reason"], "exit 2");
    let tail: Vec<&str> = f["tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(tail, vec!["token [redacted]", "build broke"]);
    let undo = of_kind(&ev, "rollback");
    assert_eq!(undo.len(), 1, "{ev:?}");
    assert_eq!(undo[0]["action"], "discard_staged");
    assert_eq!(undo[0]["ok"], true);
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(last["ok"], false);
    assert!(
        last["headline"]
            .as_str()
            .unwrap()
            .contains("staging failed on box.example"),
        "{last}"
    );
    assert_no_secret("json output", &stdout(&out));

    // Publish fails (smoke test): the host is switched back.
    l.fail_build(false);
    let sha = commit(&l.repo, "VERSION", "3\n");
    fs::write(l.deploy_to.join("FAIL_SMOKE"), sha).unwrap();
    let out = expect_exit(l.run(&["deploy", "demo", "--format", "json"]), 1);
    let ev = json_lines(&out);
    assert_documented(&ev);
    let f = of_kind(&ev, "step_failed");
    assert_eq!(f.len(), 1, "{ev:?}");
    assert_eq!(f[0]["step"], "smoke_test");
    assert_eq!(f[0]["exit_status"], 1);
    let started = of_kind(&ev, "rollback_started");
    assert_eq!(started.len(), 1, "{ev:?}");
    assert_eq!(started[0]["action"], "switch_back");
    let undo = of_kind(&ev, "rollback");
    assert_eq!(undo.len(), 1, "{ev:?}");
    assert_eq!(undo[0]["action"], "switch_back");
    assert_eq!(undo[0]["host"], "box.example");
    assert_eq!(ev.last().unwrap()["event"], "summary");
}

#[test]
fn errors_that_end_a_run_early_keep_stdout_json() {
    let l = local();
    let out = expect_exit(l.run(&["deploy", "nope", "--format", "json"]), 2);
    let ev = json_lines(&out);
    assert_documented(&ev);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["event"], "error");
    assert_eq!(ev[0]["exit_code"], 2);
    assert!(
        ev[0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown stage `nope`"),
        "{ev:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown stage `nope`"), "{err}");

    // A command that cannot speak JSON refuses rather than print text.
    let out = l.run(&["plan", "demo", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let ev = json_lines(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["event"], "error");
}

#[test]
fn an_interrupted_deploy_still_ends_its_json_stream_with_a_summary() {
    let l = local();
    let yml = fs::read_to_string(l.dir.join("deploy.yml")).unwrap();
    // The step holds until the test has seen shipit take the interrupt:
    // shipit lets running steps finish, so the run cannot end first.
    let (started, gate) = (l.dir.join("started"), l.dir.join("gate"));
    let yml = yml.replace(
        "  restart:\n",
        &format!(
            "  hold:\n    after: build\n    run: \"touch {}; while [ ! -e {} ]; do sleep 0.05; done\"\n  restart:\n",
            started.display(),
            gate.display()
        ),
    );
    fs::write(l.dir.join("deploy.yml"), yml).unwrap();
    let mut child = l
        .cmd(&["deploy", "demo", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the held step started", Duration::from_secs(60), || {
        started.exists()
    });
    let ok = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    // Should the notice never come, the held step would wait forever:
    // end shipit after a minute, and the assertions below say why.
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    let watchdog = std::thread::spawn(move || {
        if watchdog.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = Command::new("kill").args(["-s", "KILL", &pid]).status();
        }
    });
    let mut lines = Vec::new();
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push(l.unwrap());
        if lines.last().unwrap().contains("\"message\":\"interrupted") {
            fs::write(&gate, "").unwrap();
        }
    }
    let status = child.wait().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    assert!(gate.exists(), "no `interrupted` notice: {lines:?}");
    assert_eq!(status.code(), Some(130), "{lines:?}");
    let ev: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert_documented(&ev);
    assert!(
        of_kind(&ev, "notice")
            .iter()
            .any(|n| n["message"].as_str().unwrap().starts_with("interrupted")),
        "{lines:?}"
    );
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "summary", "{lines:?}");
    assert_eq!(last["ok"], false);
}

#[test]
fn junit_report_has_a_case_per_host_and_step_and_validates() {
    let l = local();
    let report = l.dir.join("reports/shipit.xml");
    let r = report.to_str().unwrap();
    expect_exit(l.run(&["deploy", "demo", "--junit", r]), 0);
    let xml = support::report::valid_junit(&report);
    for step in [
        "lock",
        "fetch",
        "build",
        "publish",
        "smoke_test",
        "unlock",
        "outcome",
    ] {
        assert!(
            xml.contains(&format!(
                "<testcase name=\"{step}\" classname=\"shipit.deploy.demo.box_example\""
            )),
            "no case for {step}:\n{xml}"
        );
    }
    assert!(xml.contains("failures=\"0\" errors=\"0\""), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");

    l.fail_build(true);
    commit(&l.repo, "VERSION", "2\n");
    let out = expect_exit(
        l.run(&["deploy", "demo", "--format", "json", "--junit", r]),
        1,
    );
    json_lines(&out);
    let xml = support::report::valid_junit(&report);
    assert!(
        xml.contains("<testcase name=\"build\" classname=\"shipit.deploy.demo.box_example\"")
            && xml.contains(
                "<failure message=\"exit 2\" type=\"exit\">token [redacted]\nbuild broke</failure>"
            ),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase name=\"discard_staged\""),
        "the undo is a case too:\n{xml}"
    );
    assert!(
        xml.contains("<failure message=\"failed at build: exit 2; staged release removed"),
        "{xml}"
    );
    assert!(!xml.contains("<testcase name=\"publish\""), "{xml}");
    assert_no_secret("the JUnit report", &xml);

    // An early error still leaves a report that fails the build.
    let out = l.run(&["deploy", "nope", "--junit", r]);
    assert_eq!(out.status.code(), Some(2));
    let xml = support::report::valid_junit(&report);
    assert!(
        xml.contains("<error message=\"unknown stage `nope`"),
        "{xml}"
    );
}

#[test]
fn run_and_exec_locally_print_output_per_host_redacted() {
    let l = local();
    let report = l.dir.join("run.xml");
    let out = l.run(&["run", "demo", "greet", "--junit", report.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no current release yet: {}",
        text(&out)
    );
    assert_says(
        &out,
        "no current release on `box.example` (deploy the stage first)",
    );
    support::report::valid_junit(&report);

    assert_eq!(l.run(&["deploy", "demo"]).status.code(), Some(0));
    let current = fs::read_link(l.deploy_to.join("current")).unwrap();
    let id = current.file_name().unwrap().to_string_lossy().into_owned();
    let out = expect_exit(l.run(&["run", "demo", "greet"]), 0);
    let s = stdout(&out);
    let current_dir = fs::canonicalize(l.deploy_to.join("current")).unwrap();
    assert!(
        s.contains(&format!(
            "[box.example]   | hello from {id} in {}",
            l.deploy_to.join("current").display()
        )) || s.contains(&format!(
            "[box.example]   | hello from {id} in {}",
            current_dir.display()
        )),
        "{s}"
    );
    assert!(s.contains("[box.example]   ! pw [redacted]"), "{s}");
    assert_no_secret("run output", &s);

    let out = expect_exit(l.run(&["run", "demo", "nope"]), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown task `nope`"));
}

#[test]
fn human_output_honours_no_color() {
    // `script` gives shipit a terminal, so auto picks human.
    assert!(
        Command::new("script").arg("--version").output().is_ok(),
        "this test needs `script` (util-linux; Debian's bsdutils) to give shipit a terminal: \
         install it, or run scripts/test.sh, which does"
    );
    let l = local();
    let bin = env!("CARGO_BIN_EXE_shipit");
    let run = |no_color: bool| -> String {
        let mut c = Command::new("script");
        c.args(["-qec", &format!("{bin} exec demo -- echo hi"), "/dev/null"])
            .current_dir(&l.dir)
            .env_remove("CI")
            .env_remove("JENKINS_URL")
            .env_remove("BUILD_ID")
            .env_remove("HUDSON_URL")
            .env("TERM", "xterm")
            .stdin(Stdio::null());
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = expect_exit(c.output().unwrap(), 0);
        stdout(&out)
    };
    let coloured = run(false);
    assert!(
        coloured.contains("\u{1b}[1m"),
        "bold host names: {coloured:?}"
    );
    let plain = run(true);
    assert!(plain.contains("exec demo: ok"), "{plain:?}");
    assert!(
        !plain.contains("\u{1b}[1m") && !plain.contains("\u{1b}[2m") && !plain.contains("\u{1b}[3"),
        "NO_COLOR output has styles: {plain:?}"
    );
}

/// Tasks for `run` (they also run in the deploy, after the step they name).
const FLEET_TASKS: &str = r#"tasks:
  migrate:
    after: publish
    roles: [app]
    once: true
    run: "echo \"migrated $SHIPIT_RELEASE at $(pwd)\" >> ../../migrations"
  flaky:
    after: cleanup
    run: "if [ ! -e ../../tried ]; then touch ../../tried; echo 'first try fails' >&2; exit 1; fi; echo \"ok on {{ host }}\""
    retries: 1
    interval: 100ms
    timeout: 30s
"#;

/// Lines of `s` that belong to `host` must be one block: output of
/// parallel hosts never interleaves. (Heartbeats of slow hosts come
/// before any host's block and are not part of it.)
fn assert_grouped(s: &str, host: &str) {
    let tag = format!("[{host}]");
    let idx: Vec<usize> = s
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(&tag) && !l.contains(" still running ("))
        .map(|(i, _)| i)
        .collect();
    assert!(!idx.is_empty(), "no lines for {host}:\n{s}");
    assert_eq!(
        idx.last().unwrap() - idx[0] + 1,
        idx.len(),
        "{host}'s lines are interleaved with another host's:\n{s}"
    );
}

#[test]
fn exec_on_five_sshd_hosts_with_one_failing() {
    let p = Project::new(5);
    p.write_config("", "", |_| String::new());
    let bad = p.fleet.hosts()[3].address.to_string();
    // The token comes in the command's text, as when a CI shell expands
    // `$API_TOKEN` before shipit sees it.
    let cmd = format!(
        "echo \"auth {API_TOKEN}\"; for i in 1 2 3; do echo line $i; sleep 0.05; done; \
         case \"$SSH_CONNECTION\" in *\" {bad} \"*) echo \"broken with {API_TOKEN}\" >&2; exit 3;; esac"
    );
    let report = p.dir.join("exec.xml");
    let out = expect_exit(
        shipit_cmd(
            &p.dir,
            &[
                "exec",
                "staging",
                "--junit",
                report.to_str().unwrap(),
                "--",
                &cmd,
            ],
        )
        .env("API_TOKEN", API_TOKEN)
        .output()
        .unwrap(),
        1,
    );
    let s = stdout(&out);
    assert_no_secret("exec output", &s);
    assert_no_secret("exec stderr", &String::from_utf8_lossy(&out.stderr));
    for h in p.fleet.hosts() {
        assert_grouped(&s, &h.alias);
        assert!(
            s.contains(&format!(
                "[{}]   | auth [redacted]\n[{a}]   | line 1\n[{a}]   | line 2\n[{a}]   | line 3",
                h.alias,
                a = h.alias
            )),
            "{s}"
        );
    }
    assert!(s.contains("[fleet-4] exec FAILED"), "{s}");
    assert!(s.contains("[fleet-4]   ! broken with [redacted]"), "{s}");
    assert!(s.contains("[fleet-1] exec ok"), "{s}");
    assert!(
        s.contains("the command failed on fleet-4; ok on 4 of 5 hosts"),
        "{s}"
    );
    for h in p.fleet.hosts() {
        let (result, state) = if h.index == 4 {
            ("FAILED", "exit 3")
        } else {
            ("ok", "exit 0")
        };
        assert!(
            s.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols == [
                    h.alias.as_str(),
                    result,
                    "1",
                    state.split(' ').next().unwrap(),
                    state.split(' ').nth(1).unwrap(),
                ]
            }),
            "no summary row for {}:\n{s}",
            h.alias
        );
    }
    let xml = support::report::valid_junit(&report);
    assert_no_secret("exec JUnit report", &xml);
    assert_eq!(xml.matches("<testcase name=\"exec\"").count(), 5, "{xml}");
    assert!(
        xml.contains("<testcase name=\"exec\" classname=\"shipit.exec.staging.fleet-4\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"exit 3\" type=\"exit\">broken with [redacted]</failure>"),
        "{xml}"
    );

    // The same as JSON: an output event per host, then its end.
    let out = expect_exit(
        shipit_cmd(&p.dir, &["exec", "staging", "--format", "json", "--", &cmd])
            .env("API_TOKEN", API_TOKEN)
            .output()
            .unwrap(),
        1,
    );
    assert_no_secret("exec json", &stdout(&out));
    let ev = json_lines(&out);
    assert_documented(&ev);
    let outputs = of_kind(&ev, "output");
    assert_eq!(outputs.len(), 5, "{ev:?}");
    for o in &outputs {
        assert_eq!(o["stdout"][0], "auth [redacted]");
    }
    let failed = of_kind(&ev, "step_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["host"], "fleet-4");
    assert_eq!(failed[0]["exit_status"], 3);
    assert_eq!(ev.last().unwrap()["event"], "summary");

    // Filters, and stdin is never read: `cat` ends at once although
    // shipit's stdin stays open.
    let mut child = shipit_cmd(
        &p.dir,
        &[
            "exec",
            "staging",
            "--hosts",
            "fleet-2,fleet-5",
            "--",
            "cat; echo done",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let _keep_stdin_open = child.stdin.take();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let start = std::time::Instant::now();
    while !waiter.is_finished() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("exec waited for stdin");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = expect_exit(waiter.join().unwrap(), 0);
    let s = stdout(&out);
    assert!(
        s.contains("[fleet-2]   | done") && s.contains("[fleet-5]   | done"),
        "{s}"
    );
    assert!(!s.contains("[fleet-1]"), "{s}");
}

#[test]
fn run_a_task_on_the_fleet_as_a_deploy_would() {
    let p = Project::new(3);
    p.write_config(FLEET_TASKS, "", |_| String::new());
    // Before any deploy there is no current release to run in.
    p.run_expect(&["run", "staging", "migrate"], 1);
    p.deploy_ok();
    let ids: Vec<String> = p
        .hosts()
        .iter()
        .map(|d| {
            fs::read_link(d.join("current"))
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();

    // once: only the first host with the role; in `current`, with the
    // task environment.
    let out = p.run_expect(&["run", "staging", "migrate", "--format", "json"], 0);
    let ev = json_lines(&out);
    assert_documented(&ev);
    assert_eq!(ev[0]["hosts"], serde_json::json!(["fleet-1"]));
    let hosts = p.hosts();
    // The deploy ran it once; `run` once more, the same way.
    let log = fs::read_to_string(hosts[0].join("migrations")).unwrap();
    let line = format!(
        "migrated {} at {}\n",
        ids[0],
        hosts[0].join("current").display()
    );
    assert_eq!(log, format!("{line}{line}"));
    for d in &hosts[1..] {
        assert!(!d.join("migrations").exists(), "{}", d.display());
    }

    // retries: each host fails once, then succeeds on the retry.
    for d in &hosts {
        fs::remove_file(d.join("tried")).unwrap();
    }
    let out = p.run_expect(&["run", "staging", "flaky"], 0);
    let s = stdout(&out);
    for h in p.fleet.hosts() {
        assert_grouped(&s, &h.alias);
        assert!(
            s.contains(&format!("[{a}]   | ok on {a}", a = h.alias)),
            "{s}"
        );
    }
    assert!(s.contains("task `flaky` succeeded on all 3 hosts"), "{s}");

    p.run_expect(&["run", "staging", "nope"], 2);
}
