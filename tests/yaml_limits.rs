//! Hostile deploy.yml sizes: what a YAML document expands to is bounded.
//!
//! An alias bomb (one 1 MB string repeated by 2000 aliases, 2 GB once
//! expanded) and a file of 300,000 vars are each refused by the real
//! binary with an error naming the limit and the line and column where
//! the file crosses it, fast and in little memory. Each run is measured:
//! wall time around the child, peak resident memory by `/usr/bin/time`
//! (Debian package `time`, which scripts/test.sh installs). The child runs
//! under a 4 GiB address-space limit and a deadline, so a loader without
//! the protection fails the test instead of swapping the machine.

mod support;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::project::text;

/// Wall time a refusal may take. A debug build on a busy machine needs
/// one or two seconds (a release build much less); the bound leaves room
/// for load, and is far below what an unbounded loader takes (tens of
/// seconds and gigabytes for the bomb).
const MAX_WALL: Duration = Duration::from_secs(10);
/// Peak resident memory a refusal may take.
const MAX_RSS_KB: u64 = 100 * 1024;
/// After this the child is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

struct Measured {
    out: Output,
    wall: Duration,
    max_rss_kb: u64,
}

/// Runs `shipit ARGS` in `dir` under `/usr/bin/time`, in a process group
/// of its own that is killed at [`DEADLINE`].
fn measured(dir: &Path, args: &[&str]) -> Measured {
    let rss_file = dir.join("max-rss");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 4194304; exec /usr/bin/time -f %M -o \"$0\" \"$@\"")
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_shipit"))
        .args(args)
        .current_dir(dir)
        .env("SHIPIT_USER", "tester")
        .env("CI", "true")
        .env_remove("SHIPIT_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("sh runs");
    let pgid = child.id();
    // Drain the pipes on threads so a chatty child cannot block on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).unwrap();
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buf).unwrap();
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
            panic!("shipit {args:?} still running after {DEADLINE:?}, killed");
        }
        // Polling the child's exit, not waiting in place of it.
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = started.elapsed();
    let out = Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    };
    let rss = fs::read_to_string(&rss_file).unwrap_or_default();
    // `time` reports a killed child's status first; the number is last.
    let max_rss_kb = rss
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory from /usr/bin/time: {rss:?}\n{}", text(&out)));
    Measured {
        out,
        wall,
        max_rss_kb,
    }
}

/// A deploy.yml whose `vars:` section is `vars`, otherwise valid.
fn config(vars: &str) -> String {
    format!(
        "application: shop\nrepository: .\ndeploy_to: /srv/shop\n{vars}stages:\n  demo:\n    hosts:\n      - {{ host: localhost, transport: local, deploy_to: ./.shipit-demo }}\n"
    )
}

/// Checks `shipit plan demo` on `yml` is refused with `message` at a
/// position, within the time and memory bounds; prints the figures.
fn refused(name: &str, yml: &str, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("deploy.yml"), yml).unwrap();
    let m = measured(dir.path(), &["plan", "demo"]);
    let stderr = String::from_utf8_lossy(&m.out.stderr);
    eprintln!(
        "{name}: {} bytes of deploy.yml, shipit ran {:?}, peak RSS {} KiB",
        yml.len(),
        m.wall,
        m.max_rss_kb
    );
    assert_eq!(m.out.status.code(), Some(2), "{}", text(&m.out));
    let line = stderr
        .lines()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no `{message}` in:\n{}", text(&m.out)));
    let place = line
        .rsplit_once("(deploy.yml:")
        .map(|(_, p)| p.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("no line:column in {line:?}"));
    let (l, c) = place.split_once(':').expect("line:column");
    assert!(
        l.parse::<usize>().is_ok() && c.parse::<usize>().is_ok(),
        "{line:?}"
    );
    assert!(
        m.wall < MAX_WALL,
        "{name} took {:?} (bound {MAX_WALL:?})",
        m.wall
    );
    assert!(
        m.max_rss_kb < MAX_RSS_KB,
        "{name} peaked at {} KiB (bound {MAX_RSS_KB} KiB)",
        m.max_rss_kb
    );
}

/// Protection: one 1 MB string repeated by 2000 aliases (2 GB expanded)
/// is refused at the alias where the expansion crosses 8 MiB.
#[test]
fn an_alias_bomb_is_refused_fast_and_small() {
    let mut vars = format!(
        "vars:\n  big: &big \"{}\"\n  copies:\n",
        "x".repeat(1_000_000)
    );
    for _ in 0..2000 {
        vars.push_str("    - *big\n");
    }
    refused(
        "alias bomb",
        &config(&vars),
        "config too large: more than 8 MiB of text, counting what aliases repeat (deploy.yml:",
    );
}

/// Protection: 300,000 vars are refused where the file crosses 20,000
/// keys and values.
#[test]
fn three_hundred_thousand_vars_are_refused_fast_and_small() {
    let mut vars = String::from("vars:\n");
    for i in 0..300_000 {
        vars.push_str(&format!("  v{i}: {i}\n"));
    }
    refused(
        "300k vars",
        &config(&vars),
        "config too large: more than 20000 keys and values, counting what aliases repeat (deploy.yml:",
    );
}
