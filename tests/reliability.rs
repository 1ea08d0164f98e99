//! Reliability: faults, races and crashes lose nothing.
//!
//! Each test drives the real `shipit` binary against real sshd hosts (or,
//! for the ledger and lock files, runs the exact scripts shipit sends) and
//! checks what a person would: where `current` points on every host, the
//! lock, the ledger, the exit code and the message. The comment above each
//! test names the protection it checks; removing that protection makes the
//! test fail.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use shipit::ledger::{self, Entry, EventKind};
use shipit::lock::LockHolder;
use shipit::plan::commands::{self, HostPaths, LOCKED_STATUS};
use support::project::{commit, current, releases, shipit_cmd, text, wait_until, Project};

/// Generous: the machine may be busy, and a run that hangs still fails.
const LIMIT: Duration = Duration::from_secs(150);

// ---------------------------------------------------------------------------
// Helpers

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The release id `current` points at on `d`, if any.
fn on(d: &Path) -> Option<String> {
    current(d).map(|c| c.trim_start_matches("releases/").to_string())
}

fn all_on(p: &Project) -> Vec<Option<String>> {
    p.hosts().iter().map(|d| on(d)).collect()
}

fn locked(d: &Path) -> bool {
    d.join(".shipit/lock").exists()
}

fn assert_unlocked(p: &Project) {
    for d in p.hosts() {
        assert!(!locked(&d), "{} still locked", d.display());
    }
}

/// The host's ledger read as shipit reads it: good entries and the numbers
/// of lines that are not records.
fn read_ledger(d: &Path) -> ledger::Parsed {
    ledger::parse(&fs::read_to_string(d.join(ledger::LEDGER_PATH)).unwrap_or_default())
}

/// `(event, release)` of every good ledger line.
fn events_of(d: &Path) -> Vec<(String, String)> {
    read_ledger(d)
        .entries
        .iter()
        .map(|e| {
            (
                serde_json::to_value(e.event)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
                e.release.clone(),
            )
        })
        .collect()
}

/// A task hook that, on a host whose deploy_to holds a `HOLD` file, says
/// it started (`deploy_to/started`) and waits for `deploy_to/gate`; on
/// other hosts it does nothing. `cwd` is the task's directory relative to
/// deploy_to, as seen from the hook (`releases/ID` or `current`: both two
/// levels down).
const HOLD_IF_ASKED: &str = "if [ -e ../../HOLD ]; then touch ../../started; while [ ! -e ../../gate ]; do sleep 0.05; done; fi";

/// A smoke test that always passes, so good deploys are `verified`.
const SMOKE: &str = "  smoke_test:\n    run: \"test -f REVISION\"\n";

fn spawn_deploy(p: &Project, args: &[&str]) -> std::process::Child {
    shipit_cmd(&p.dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `limit`; kills it and fails if it is not done.
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("shipit did not finish within {limit:?}:\n{}", text(&out));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// The ledger and lock files under concurrent writers (the real scripts)

fn sh(script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("sh runs")
}

fn entry(writer: usize, n: usize, detail_len: usize) -> Entry {
    Entry {
        event: EventKind::Published,
        release: "20261124T190102Z".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        digest: None,
        application: "shop".into(),
        stage: "staging".into(),
        host: "web-1".into(),
        user: "alice".into(),
        build_url: None,
        // Long enough that a split write would show.
        detail: Some(format!("w{writer}-n{n}-{}", "x".repeat(detail_len))),
        time: String::new(),
    }
}

/// Protection: ledger lines are appended whole (one `printf` of the line
/// with O_APPEND), so any number of concurrent writers (two runs, a
/// promote and an approve) never interleave or lose a line. Also: an append
/// after a line truncated by a crash starts a line of its own, so only the
/// truncated line is lost (remove the newline guard in
/// `commands::ledger_append` and the first new record fuses with it).
#[test]
fn concurrent_ledger_appends_through_the_real_scripts_lose_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("deploy to");
    let p = HostPaths::new(d.to_str().unwrap());
    fs::create_dir_all(d.join(".shipit")).unwrap();
    // A line cut short by a crash, without its newline.
    fs::write(
        d.join(ledger::LEDGER_PATH),
        "{\"event\":\"staged\",\"release\":\"2026",
    )
    .unwrap();

    const WRITERS: usize = 12;
    const EACH: usize = 12;
    let p = Arc::new(p);
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                for n in 0..EACH {
                    // Short lines, a line past PIPE_BUF (4 KiB), and two
                    // lines in one call, through both writers shipit has.
                    let script = match n % 3 {
                        0 => commands::ledger_append(&p, &[entry(w, n, 40)]),
                        1 => commands::ledger_append_raw(
                            &p,
                            &serde_json::to_string(&Entry {
                                time: "2026-11-24T19:01:02Z".into(),
                                ..entry(w, n, 6000)
                            })
                            .unwrap(),
                        ),
                        _ => commands::ledger_append(
                            &p,
                            &[entry(w, n, 100), entry(w, n + 1000, 100)],
                        ),
                    };
                    let out = sh(&script);
                    assert!(out.status.success(), "{}", stderr(&out));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    let parsed = read_ledger(&d);
    assert_eq!(
        parsed.bad_lines,
        vec![1],
        "only the truncated line is not a record"
    );
    let mut want = BTreeSet::new();
    for w in 0..WRITERS {
        for n in 0..EACH {
            want.insert(format!("w{w}-n{n}-"));
            if n % 3 == 2 {
                want.insert(format!("w{w}-n{}-", n + 1000));
            }
        }
    }
    let got: Vec<String> = parsed
        .entries
        .iter()
        .map(|e| {
            let d = e.detail.as_deref().unwrap();
            d[..d.rfind('-').unwrap() + 1].to_string()
        })
        .collect();
    assert_eq!(got.len(), want.len(), "no line lost or duplicated");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
    for e in &parsed.entries {
        assert!(e.time.ends_with('Z'), "{e:?}");
    }
}

fn holder(i: usize) -> LockHolder {
    LockHolder {
        user: format!("user-{i}"),
        machine: "build-7".into(),
        pid: 1000 + i as u32,
        time: "2026-11-24T19:01:02Z".into(),
        stage: "staging".into(),
        message: format!("deploy of `staging` number {i}"),
        token: format!("token-{i}"),
    }
}

/// Protection: the lock is taken atomically with its holder record (the
/// record is written into a fresh directory that is then renamed into
/// place), so of many runs racing for it exactly one wins, and every loser
/// reads the winner's complete record (a loser that found the lock without
/// a record could not say who holds it and would not exit 4). Freeing it
/// with another run's token frees nothing.
#[test]
fn concurrent_lock_attempts_through_the_real_script_have_one_winner_whose_record_all_see() {
    const RACERS: usize = 16;
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app");
        let p = Arc::new(HostPaths::new(d.to_str().unwrap()));
        let barrier = Arc::new(std::sync::Barrier::new(RACERS));
        let threads: Vec<_> = (0..RACERS)
            .map(|i| {
                let (p, barrier) = (Arc::clone(&p), Arc::clone(&barrier));
                thread::spawn(move || {
                    let script = commands::lock(&p, &serde_json::to_string(&holder(i)).unwrap());
                    barrier.wait();
                    (i, sh(&script))
                })
            })
            .collect();
        let results: Vec<(usize, Output)> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, o)| o.status.success())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let w = winners[0];
        for (i, o) in &results {
            if *i == w {
                continue;
            }
            assert_eq!(o.status.code(), Some(LOCKED_STATUS), "{}", stderr(o));
            assert_eq!(
                LockHolder::from_stderr(&stderr(o)),
                Some(holder(w)),
                "round {round}: racer {i} must see the winner's whole record:\n{}",
                stderr(o)
            );
        }
        let info = fs::read_to_string(d.join(".shipit/lock/info")).unwrap();
        assert_eq!(
            serde_json::from_str::<LockHolder>(info.trim()).unwrap(),
            holder(w)
        );
        // Nothing of the losers is left beside the lock.
        let left: Vec<String> = fs::read_dir(d.join(".shipit"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["lock".to_string()], "round {round}");
        sh(&commands::unlock(&p, "token-none"));
        assert!(
            d.join(".shipit/lock").exists(),
            "a foreign token frees nothing"
        );
        sh(&commands::unlock(&p, &format!("token-{w}")));
        assert!(!d.join(".shipit/lock").exists());
    }
}

/// Protection: while something polls the lock as `shipit check` and a
/// racing run do, the lock never exists without its complete holder
/// record (the old `mkdir` then write left a window where it did, and a
/// racing deploy then exited 1, not 4, unable to say who held it).
#[test]
fn the_lock_never_exists_without_its_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("app");
    let p = HostPaths::new(d.to_str().unwrap());
    let lock = d.join(".shipit/lock");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (lock, stop) = (lock.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let (mut seen, mut bad) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if lock.exists() {
                    match fs::read_to_string(lock.join("info")) {
                        Ok(t) if serde_json::from_str::<LockHolder>(t.trim()).is_ok() => seen += 1,
                        // Freed between the two looks: not a lock without a record.
                        Err(_) if !lock.exists() => {}
                        other => bad.push(format!("{other:?}")),
                    }
                }
            }
            (seen, bad)
        })
    };
    for i in 0..150 {
        let h = holder(i);
        let out = sh(&commands::lock(&p, &serde_json::to_string(&h).unwrap()));
        assert!(out.status.success(), "{}", stderr(&out));
        sh(&commands::unlock(&p, &h.token));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (seen, bad) = poller.join().unwrap();
    assert!(seen > 0, "the poller never saw the lock");
    assert!(
        bad.is_empty(),
        "the lock existed {} times without its record: {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
}

// ---------------------------------------------------------------------------
// Races on the sshd fleet

/// Protection: the deploy lock is all-or-nothing and taken host by host in
/// the same order by every run (the first host first), so of two deploys
/// of one stage started at the same moment exactly one proceeds and the
/// other exits 4 naming the holder; neither can take half the hosts and
/// leave both refused. Three rounds, to give the race its chances.
#[test]
fn two_deploys_started_together_one_proceeds_the_other_exits_4() {
    let p = Project::new(3);
    p.write_config(&format!("tasks:\n{SMOKE}"), "", |_| String::new());
    for round in 0..3 {
        commit(&p.repo, "VERSION", &format!("{round}\n"));
        let a = spawn_deploy(&p, &["deploy", "staging"]);
        let b = spawn_deploy(&p, &["deploy", "staging"]);
        let outs = [wait_bounded(a, LIMIT), wait_bounded(b, LIMIT)];
        let mut codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
        codes.sort();
        assert_eq!(
            codes,
            vec![Some(0), Some(4)],
            "round {round}:\n{}\n{}",
            text(&outs[0]),
            text(&outs[1])
        );
        let refused = outs.iter().find(|o| o.status.code() == Some(4)).unwrap();
        assert!(
            stdout(refused).contains("is locked on `fleet-1` by `tester`"),
            "{}",
            text(refused)
        );
        let now = all_on(&p);
        assert!(
            now[0].is_some() && now.iter().all(|c| *c == now[0]),
            "{now:?}"
        );
        for d in p.hosts() {
            assert_eq!(releases(&d).len(), round + 1, "one release per round");
        }
        assert_unlocked(&p);
    }
}
