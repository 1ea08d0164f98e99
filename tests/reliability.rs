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
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use shipit::ledger::{self, Entry, EventKind};
use shipit::lock::LockHolder;
use shipit::plan::commands::{self, HostPaths, LOCKED_STATUS};
use support::project::{
    all_on, assert_says, assert_unlocked, commit, expect_exit, locked, on, releases, shipit_cmd,
    stderr, stdout, text, wait_until, Project,
};

/// Generous: the machine may be busy, and a run that hangs still fails.
const LIMIT: Duration = Duration::from_secs(150);

// ---------------------------------------------------------------------------
// Helpers

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

/// A project of `hosts` hosts with a passing smoke test and `step` (a
/// task `hold` after create_release, or `restart`) running
/// [`HOLD_IF_ASKED`]; `stage_extra` as in [`Project::write_config`]. Its
/// first release is deployed.
fn holding_project(hosts: usize, step: &str, stage_extra: &str) -> Project {
    let hook = match step {
        "hold" => format!("  hold:\n    after: create_release\n    run: \"{HOLD_IF_ASKED}\"\n"),
        other => format!("  {other}:\n    run: \"{HOLD_IF_ASKED}\"\n"),
    };
    let p = Project::new(hosts);
    p.write_config(&format!("tasks:\n{SMOKE}{hook}"), stage_extra, |_| {
        String::new()
    });
    p.deploy_ok();
    p
}

/// Commits `version` and starts a deploy; returns once it holds on host
/// `i` (whose `HOLD` file this writes), with the deploy still running.
fn deploy_held_on(p: &Project, i: usize, version: &str) -> std::process::Child {
    let d = p.hosts()[i].clone();
    fs::write(d.join("HOLD"), "").unwrap();
    commit(&p.repo, "VERSION", version);
    let deploy = spawn_deploy(p, &["deploy", "staging"]);
    wait_until(&format!("fleet-{} holds", i + 1), LIMIT, || {
        d.join("started").exists()
    });
    deploy
}

/// A deploy whose host `i` loses its sshd while it holds; the run's output.
fn deploy_losing_sshd_of(p: &mut Project, i: usize) -> Output {
    let deploy = deploy_held_on(p, i, "2\n");
    p.fleet.hosts_mut()[i].stop();
    wait_bounded(deploy, LIMIT)
}

/// Host `i` is reachable again and no longer holds.
fn bring_back(p: &mut Project, i: usize) {
    fs::remove_file(p.hosts()[i].join("HOLD")).unwrap();
    p.fleet.restart(i);
}

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
        process: None,
    }
}

/// Protection: taking the lock is one atomic step (a directory renamed
/// into place, refused when the lock exists), so of many runs racing for it
/// exactly one wins and every loser exits 75 with the winner's record
/// (that the record is never missing, even for an instant, is the next
/// test's). Freeing it with another run's token frees nothing, and losers
/// leave nothing behind.
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
                // The directory that is the lock at this moment, held open:
                // its inode cannot be reused while held, so "still the lock"
                // below means this very directory, not the next run's lock
                // taken between the two looks.
                let Ok(handle) = fs::File::open(&lock) else {
                    continue;
                };
                let id = |m: fs::Metadata| (m.dev(), m.ino());
                let held = handle.metadata().map(id).ok();
                let info = format!("/proc/self/fd/{}/info", handle.as_raw_fd());
                match fs::read_to_string(&info) {
                    Ok(t) if serde_json::from_str::<LockHolder>(t.trim()).is_ok() => seen += 1,
                    other => {
                        // Freed (renamed away) since it was opened: not a
                        // lock without a record. Still the lock: it is.
                        if fs::metadata(&lock).map(id).ok() == held {
                            bad.push(format!("{other:?}"));
                        }
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

/// Protection: rollback takes the same deploy lock, so a rollback started
/// while a deploy runs is refused with exit 4 naming the deploy, changes
/// nothing, and the deploy finishes undisturbed.
#[test]
fn a_rollback_during_a_deploy_is_refused_by_the_lock() {
    let p = holding_project(2, "hold", "");
    commit(&p.repo, "VERSION", "2\n");
    p.deploy_ok();
    let before = all_on(&p);
    let first = p.hosts()[0].clone();
    let deploy = deploy_held_on(&p, 0, "3\n");
    let rollback = p.run(&["rollback", "staging"]);
    fs::write(first.join("gate"), "").unwrap();
    let deploy = wait_bounded(deploy, LIMIT);

    assert_eq!(rollback.status.code(), Some(4), "{}", text(&rollback));
    assert_says(&rollback, "is locked on `fleet-1` by `tester`");
    assert_says(&rollback, "deploy of `staging`");
    assert_eq!(deploy.status.code(), Some(0), "{}", text(&deploy));
    let after = all_on(&p);
    assert!(after[0].is_some() && after[0] != before[0] && after[1] == after[0]);
    for d in p.hosts() {
        assert!(
            !events_of(&d).iter().any(|(e, _)| e == "rolled_back"),
            "the refused rollback recorded nothing on {}",
            d.display()
        );
    }
    assert_unlocked(&p);
}

// ---------------------------------------------------------------------------
// Hosts failing under a run

/// Protection: staging runs on every host before any `current` moves, so a
/// host whose sshd dies mid-staging switches no host; the reachable hosts
/// lose their staged release and their lock. When the host comes back, the
/// dead run's lock there is reported as stale with the command that frees
/// it, and after that a deploy brings every host to one release.
#[test]
fn an_sshd_killed_mid_staging_switches_no_host_and_the_fleet_recovers() {
    let mut p = holding_project(2, "hold", "");
    let before = all_on(&p);
    let out = expect_exit(deploy_losing_sshd_of(&mut p, 1), 1);
    let s = stdout(&out);
    assert!(s.contains("[fleet-2] hold FAILED"), "{s}");
    assert!(s.contains("staging failed on fleet-2"), "{s}");
    assert!(s.contains("no host was switched"), "{s}");
    assert_eq!(all_on(&p), before, "no host's current moved");
    let first = &p.hosts()[0];
    assert_eq!(releases(first).len(), 1, "fleet-1's staged release removed");
    assert!(!locked(first), "fleet-1 unlocked");
    assert_eq!(events_of(first).last().unwrap().0, "failed");

    // fleet-2 comes back: the dead run's lock is still there, and stale.
    bring_back(&mut p, 1);
    let refused = p.deploy_expect(4);
    let s = stdout(&refused);
    assert!(s.contains("is locked on `fleet-2`"), "{s}");
    assert!(s.contains("(stale: holder process is gone)"), "{s}");
    assert!(
        s.contains(
            "the run that held it is gone: free it with `shipit unlock staging`, then deploy again"
        ),
        "{s}"
    );
    p.run_expect(&["unlock", "staging"], 0);
    p.deploy_ok();
    let now = all_on(&p);
    assert!(
        now[0].is_some() && now[0] != before[0] && now[1] == now[0],
        "{now:?}"
    );
    assert_unlocked(&p);
}

/// Protection: a publish failure (here: the host's sshd dies in its
/// restart, after `current` moved) sends every other switched host back;
/// the host that cannot be reached is named with exit 5. When it is back,
/// the next deploy says which host is on which release and the exact
/// commands that repair it, and `shipit rollback --to` does.
#[test]
fn an_sshd_killed_mid_publish_sends_the_others_back_and_names_the_host() {
    let mut p = holding_project(2, "restart", "");
    let old = on(&p.hosts()[0]).unwrap();
    let victim = p.hosts()[1].clone();
    let out = expect_exit(deploy_losing_sshd_of(&mut p, 1), 5);
    let s = stdout(&out);
    assert!(s.contains("[fleet-2] restart FAILED"), "{s}");
    assert!(s.contains("fleet-2 could not be put back"), "{s}");
    let new = on(&victim).unwrap();
    assert_ne!(new, old, "fleet-2 was switched before its sshd died");
    assert_eq!(
        on(&p.hosts()[0]).as_deref(),
        Some(old.as_str()),
        "fleet-1 went back"
    );
    assert!(!locked(&p.hosts()[0]));
    assert!(events_of(&p.hosts()[0]).contains(&("failed".to_string(), new.clone())));

    bring_back(&mut p, 1);
    let refused = p.deploy_expect(4);
    let s = stdout(&refused);
    assert!(s.contains("(stale: holder process is gone)"), "{s}");
    assert!(
        s.contains(&format!(
            "left the hosts on different releases ({new} on fleet-2; {old} on fleet-1): free the lock with `shipit unlock staging`, then run `shipit deploy staging` to bring every host to a new release, or `shipit rollback staging --to {old} --force` to put every host back on {old}"
        )),
        "{s}"
    );
    p.run_expect(&["unlock", "staging"], 0);
    p.run_expect(&["rollback", "staging", "--to", &old, "--force"], 0);
    assert_eq!(all_on(&p), vec![Some(old.clone()), Some(old)]);
    assert_unlocked(&p);
}

/// Protection: shipit killed outright (SIGKILL: no undo can run) in the
/// middle of a batched publish leaves a half-switched fleet and its lock.
/// The next deploy detects both: the run that holds the lock on every
/// host is certainly gone (its process ended on this machine), so the
/// lock is taken over, and the notice names whose it was and which host
/// is on which release; the deploy then brings every host to one new
/// release. (A lock left on some hosts only, by a run that ended, is
/// refused as before: see the tests above.)
#[test]
fn shipit_killed_mid_publish_is_detected_and_repaired_by_the_next_run() {
    let p = holding_project(2, "restart", "    rollout: { batch: 1 }\n");
    let old = on(&p.hosts()[0]).unwrap();
    let canary = p.hosts()[0].clone();
    let mut deploy = deploy_held_on(&p, 0, "2\n");
    let killed = deploy.id();
    deploy.kill().unwrap(); // SIGKILL
    deploy.wait().unwrap();
    fs::remove_file(canary.join("HOLD")).unwrap();

    let new = on(&canary).unwrap();
    assert_ne!(new, old, "the first batch was switched");
    assert_eq!(on(&p.hosts()[1]).as_deref(), Some(old.as_str()));
    assert!(
        p.hosts().iter().all(|d| locked(d)),
        "the dead run's locks stay"
    );

    commit(&p.repo, "VERSION", "3\n");
    let s = p.deploy_ok();
    assert!(
        s.contains("every host was locked by a run that is gone (`tester` on ")
            && s.contains(&format!("(pid {killed})")),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "freed; it left the hosts on different releases ({new} on fleet-1; {old} on fleet-2)"
        )),
        "{s}"
    );
    let now = all_on(&p);
    assert!(
        now[0].is_some()
            && now[0].as_deref() != Some(new.as_str())
            && now[0].as_deref() != Some(old.as_str())
            && now[1] == now[0],
        "{now:?}"
    );
    assert_unlocked(&p);
}

/// Protection: a host that accepts the TCP connection and then says
/// nothing (no SSH banner) fails to connect within the connect deadline
/// (`connect_timeout` × 4) instead of hanging the run; the lock is
/// all-or-nothing, so the reachable host is not touched and stays
/// unlocked.
#[test]
fn a_host_that_accepts_and_never_answers_fails_alone_and_changes_nothing() {
    let p = Project::new(1);
    p.write_config(&format!("tasks:\n{SMOKE}"), "", |_| String::new());
    p.deploy_ok();
    let before = all_on(&p);

    // Accepts, holds each connection open, never writes. Bounded: it ends
    // after a few connections or when the test's process does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(8) {
            held.push(conn);
        }
        thread::sleep(Duration::from_secs(120));
    });
    let silent = p.fleet.dir().join("silent");
    let yml = p.dir.join("deploy.yml");
    let text_before = fs::read_to_string(&yml).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&yml).unwrap();
    writeln!(
        f,
        "      - {{ host: 127.0.0.1, port: {port}, roles: [app], deploy_to: {} }}",
        support::deploy_yml::yaml_str(&silent.to_string_lossy())
    )
    .unwrap();
    let yml_text = fs::read_to_string(&yml)
        .unwrap()
        .replace("connect_timeout: 5s", "connect_timeout: 1s");
    assert_ne!(yml_text, text_before);
    fs::write(&yml, yml_text).unwrap();

    commit(&p.repo, "VERSION", "2\n");
    let started = Instant::now();
    let out = wait_bounded(spawn_deploy(&p, &["deploy", "staging"]), LIMIT);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = stdout(&out);
    assert!(s.contains("[127.0.0.1] connect FAILED"), "{s}");
    // ssh's own ConnectTimeout covers the banner exchange; shipit's
    // deadline backs it up for servers that stall after the banner.
    assert!(
        s.contains("timed out during banner exchange") || s.contains("no answer within"),
        "{s}"
    );
    assert!(s.contains("nothing was changed"), "{s}");
    assert!(took < Duration::from_secs(40), "took {took:?}");
    assert_eq!(all_on(&p), before);
    assert_eq!(releases(&p.hosts()[0]).len(), 1);
    assert_unlocked(&p);
    assert!(!silent.exists());
}

// ---------------------------------------------------------------------------
// A full disk, a truncated ledger

/// A tmpfs of `size` mounted on `dir`, unmounted on drop (before the
/// fleet's directory goes).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts it, or fails the test saying why: a file system that really
    /// fills up needs root (or CAP_SYS_ADMIN in a container), which
    /// scripts/test.sh already asks for to start sshd.
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("this test mounts a tmpfs and cannot run `mount`: {e}"));
        assert!(
            out.status.success(),
            "this test mounts a tmpfs (needs root or CAP_SYS_ADMIN); mounting one on {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Protection: a host whose disk fills up while the git mirror is being
/// fetched fails its fetch with the error from the host, and since staging
/// completes everywhere before any `current` moves, no host is switched;
/// once space is freed the next deploy goes through everywhere.
///
/// The host's `deploy_to/repo` (the mirror) is a 2 MiB tmpfs and the new
/// commit carries 3 MiB of incompressible data. deploy_to itself stays on
/// the big disk: `check` refuses a deploy_to with less than 50 MiB free, so
/// a full deploy_to would be caught before the fetch rather than during it.
#[test]
fn the_disk_filling_up_during_fetch_fails_that_host_and_switches_none() {
    let p = Project::new(2);
    p.write_config(&format!("tasks:\n{SMOKE}"), "", |_| String::new());
    p.deploy_ok();
    let before = all_on(&p);
    let full = p.hosts()[1].clone();
    // Move the mirror onto a small file system of its own.
    let repo = full.join("repo");
    let saved = full.join("repo.saved");
    fs::rename(&repo, &saved).unwrap();
    let _tmpfs = Tmpfs::mount(&repo, "2m");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", saved.display()))
        .arg(&repo)
        .status()
        .unwrap();
    assert!(cp.success());

    let mut blob = vec![0u8; 3 << 20];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut blob))
        .unwrap();
    fs::write(p.repo.join("assets.bin"), &blob).unwrap();
    commit(&p.repo, "VERSION", "2\n");
    let out = p.deploy_expect(1);
    let s = stdout(&out);
    assert!(s.contains("[fleet-2] fetch FAILED"), "{s}");
    assert!(s.contains("No space left on device"), "{s}");
    assert!(s.contains("staging failed on fleet-2"), "{s}");
    assert!(s.contains("no host was switched"), "{s}");
    assert_eq!(all_on(&p), before);
    for d in p.hosts() {
        assert_eq!(releases(&d).len(), 1, "{}", d.display());
    }
    assert_unlocked(&p);

    // Room again (the volume grows): the same deploy goes through.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(grown.success());
    p.deploy_ok();
    let now = all_on(&p);
    assert!(
        now[0].is_some() && now[0] != before[0] && now[1] == now[0],
        "{now:?}"
    );
    assert_eq!(
        fs::read(full.join("current/assets.bin")).unwrap(),
        blob,
        "the full host got the whole commit"
    );
}

/// Cuts the last line of a ledger in half, as a crash mid-write would.
fn truncate_last_line(d: &Path) -> String {
    let path = d.join(ledger::LEDGER_PATH);
    let text = fs::read_to_string(&path).unwrap();
    let body = text.trim_end_matches('\n');
    let start = body.rfind('\n').map_or(0, |i| i + 1);
    let cut = start + (body.len() - start) / 2;
    fs::write(&path, &body[..cut]).unwrap();
    body[start..].to_string()
}

/// Protection: readers of the ledger (`releases`, `history`, `rollback`)
/// skip a line truncated by a crash and say which line of which host they
/// skipped, using everything else; and the next record written after it
/// starts a line of its own, so nothing but the cut line is lost.
#[test]
fn a_ledger_line_truncated_by_a_crash_is_skipped_and_reported_and_nothing_else_is_lost() {
    let p = Project::new(2);
    p.write_config("", "", |_| String::new());
    p.deploy_ok();
    let a = on(&p.hosts()[0]).unwrap();
    commit(&p.repo, "VERSION", "2\n");
    p.deploy_ok();
    let b = on(&p.hosts()[0]).unwrap();
    let hurt = p.hosts()[0].clone();
    let lines = fs::read_to_string(hurt.join(ledger::LEDGER_PATH))
        .unwrap()
        .lines()
        .count();
    let cut = truncate_last_line(&hurt);
    assert!(
        cut.contains(&b),
        "the cut line is about the newest release: {cut}"
    );
    let warning = format!(
        "shipit: warning: `fleet-1`: skipped line {lines} of `{}/.shipit/ledger.jsonl`: not ledger records",
        hurt.display()
    );

    let releases_out = p.run_expect(&["releases", "staging"], 0);
    assert!(
        stderr(&releases_out).contains(&warning),
        "{}",
        text(&releases_out)
    );
    assert_says(&releases_out, &b);

    let history = p.run_expect(&["history", "staging"], 0);
    assert!(stderr(&history).contains(&warning), "{}", text(&history));
    assert_says(&history, &a);
    assert_says(&history, &b);

    let rollback = p.run_expect(&["rollback", "staging"], 0);
    assert!(stderr(&rollback).contains(&warning), "{}", text(&rollback));
    assert_eq!(all_on(&p), vec![Some(a.clone()), Some(a.clone())]);

    // The rollback's records, written right after the cut line, are whole.
    let parsed = read_ledger(&hurt);
    assert_eq!(parsed.bad_lines, vec![lines], "only the cut line is bad");
    let ev = events_of(&hurt);
    assert!(
        ev.contains(&("rolled_back".to_string(), b.clone())),
        "{ev:?}"
    );
    assert!(ev.contains(&("published".to_string(), a.clone())), "{ev:?}");
    commit(&p.repo, "VERSION", "3\n");
    p.deploy_ok();
    let c = on(&hurt).unwrap();
    let ev = events_of(&hurt);
    assert!(ev.contains(&("published".to_string(), c.clone())), "{ev:?}");
    assert_eq!(read_ledger(&hurt).bad_lines, vec![lines]);
}
