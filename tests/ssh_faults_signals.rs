//! Faults from outside a run: Ctrl-C at the terminal, shipit killed
//! outright, a lock held from another machine of the same name, a host
//! whose network dies in the middle of a step.
//!
//! Each test drives the real `shipit` binary against real sshd hosts and
//! checks what a person would: where `current` points on every host, the
//! ledger, the lock, leftover ssh processes and temporary directories, the
//! exit code and the printed summary. The comment above each test names
//! the protection it checks; removing that protection makes it fail.
//!
//! Steps that must be caught in the middle write a marker file and then
//! block reading a fifo; the test waits for the marker, does its deed, and
//! writes to the fifo to let the step go on.

mod support;

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use support::procs;
use support::project::{
    all_on, assert_unlocked, commit, events, expect_exit, locked, on, releases, shipit_cmd, text,
    wait_until, Project,
};

/// Generous: the machine may be busy; a run that hangs still fails.
const LIMIT: Duration = Duration::from_secs(120);

/// A smoke test that always passes, so good deploys are `verified`.
const SMOKE: &str = "  smoke_test:\n    run: \"test -f REVISION\"\n";

/// A task body that, on a host whose deploy_to holds `HOLD`, writes the
/// marker `deploy_to/started.N` (N counts the holds on that host: 1, 2,
/// ...) and then blocks until someone writes to the fifo `deploy_to/gate`;
/// on other hosts it does nothing. The task runs two levels below
/// deploy_to (`releases/ID` or `current`).
const HOLD_IF_ASKED: &str =
    "if [ -e ../../HOLD ]; then n=1; while [ -e ../../started.$n ]; do n=$((n+1)); done; \
                             touch ../../started.$n; read -r _ < ../../gate; fi";

/// Makes host `d` hold in [`HOLD_IF_ASKED`] from now on.
fn hold_on(d: &Path) {
    let gate = d.join("gate");
    if !gate.exists() {
        let ok = Command::new("mkfifo")
            .arg(&gate)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo {}", gate.display());
    }
    fs::write(d.join("HOLD"), "").unwrap();
}

/// Waits until host `d` holds for the `n`th time in the run `child`
/// (whose output is in `out_dir`), failing with that output if the run
/// ends first.
fn wait_for_hold(d: &Path, n: usize, child: &mut Child, out_dir: &Path) {
    let marker = d.join(format!("started.{n}"));
    let start = Instant::now();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended before hold {n} on {}:\n{}",
                d.display(),
                text(&read_output(status, out_dir))
            );
        }
        assert!(
            start.elapsed() < LIMIT,
            "hold {n} on {}: not within {LIMIT:?}",
            d.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets the step holding on host `d` go on (the write waits for the
/// reader, which is there once the marker is).
fn release(d: &Path) {
    fs::write(d.join("gate"), "go\n").unwrap();
}

/// `shipit ARGS` in a process group of its own, as a terminal starts a
/// command; stdout and stderr go to files in `out_dir` so that the test
/// can read them while it runs.
fn spawn_in_own_group(p: &Project, args: &[&str], out_dir: &Path) -> Child {
    spawn_in_own_group_with(shipit_cmd(&p.dir, args), out_dir)
}

/// [`spawn_in_own_group`] for a command already built (with its own
/// environment, say).
fn spawn_in_own_group_with(mut cmd: Command, out_dir: &Path) -> Child {
    let stdout = fs::File::create(out_dir.join("stdout")).unwrap();
    let stderr = fs::File::create(out_dir.join("stderr")).unwrap();
    cmd.stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .unwrap()
}

/// A short private TMPDIR (control socket paths are limited to about 100
/// bytes) for the runs of one test: the runs of tests going on at the same
/// time clean up what killed runs left in the shared one, and would take
/// what this test looks for.
fn private_tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sk")
        .tempdir_in("/tmp")
        .unwrap()
}

/// What the terminal does on Ctrl-C: SIGINT to the whole foreground
/// process group.
fn ctrl_c(group: u32) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -INT -{group}"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "could not signal process group {group}");
}

/// Waits for `child` at most `limit`; its output comes from the files
/// [`spawn_in_own_group`] wrote.
fn wait_bounded(mut child: Child, limit: Duration, out_dir: &Path) -> Output {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let status = child.wait().unwrap();
            let o = read_output(status, out_dir);
            panic!("shipit did not finish within {limit:?}:\n{}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    read_output(status, out_dir)
}

fn read_output(status: std::process::ExitStatus, out_dir: &Path) -> Output {
    Output {
        status,
        stdout: fs::read(out_dir.join("stdout")).unwrap_or_default(),
        stderr: fs::read(out_dir.join("stderr")).unwrap_or_default(),
    }
}

/// ssh processes of the run with pid `pid` (masters, their holders, each
/// command's client): their control sockets live in `ssh-PID-N`.
fn ssh_processes_of(pid: u32) -> Vec<u32> {
    procs::with_cmdline_containing(&format!("/ssh-{pid}-"))
        .into_iter()
        .filter(|&p| procs::is_alive(p))
        .collect()
}

/// The temporary directories of the run with pid `pid` (named
/// `shipit-NS-PID-START-XXXXXX`).
fn temp_dirs_of(pid: u32, tmp: &Path) -> Vec<PathBuf> {
    fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("shipit-") && name.split('-').nth(2) == Some(pid.to_string().as_str())
        })
        .collect()
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A project of `hosts` hosts with a passing smoke test and `restart`
/// running [`HOLD_IF_ASKED`], its first release deployed; `stage_extra`
/// as in [`Project::write_config`].
fn restart_holding_project(hosts: usize, stage_extra: &str) -> Project {
    let p = Project::new(hosts);
    p.write_config(
        &format!("tasks:\n{SMOKE}  restart:\n    run: \"{HOLD_IF_ASKED}\"\n"),
        stage_extra,
        |_| String::new(),
    );
    p.deploy_ok();
    p
}

// ---------------------------------------------------------------------------
// Ctrl-C

/// Protection: ssh children run in process groups of their own, so a
/// Ctrl-C at the terminal reaches shipit alone. The restart running on
/// `fleet-1` when it comes finishes on the host and is reported as it
/// ended (ok, not a 255 from a killed ssh client); nothing new starts,
/// every switched host goes back (in parallel), the lock is freed. A
/// second Ctrl-C during the undo says what is still being undone and
/// does not abort it: the undo's own restart, held at that moment, also
/// finishes truly. Exit 130; no ssh process of the run is left.
#[test]
fn ctrl_c_to_the_process_group_lets_running_steps_finish_and_undoes_the_switch() {
    let p = restart_holding_project(2, "");
    let before = all_on(&p);
    let canary = p.hosts()[0].clone();
    hold_on(&canary);
    commit(&p.repo, "VERSION", "2\n");
    let out_dir = tempfile::tempdir().unwrap();
    let tmp = private_tmp();
    let mut cmd = shipit_cmd(&p.dir, &["deploy", "staging"]);
    cmd.env("TMPDIR", tmp.path());
    let mut deploy = spawn_in_own_group_with(cmd, out_dir.path());
    let group = deploy.id();

    wait_for_hold(&canary, 1, &mut deploy, out_dir.path());
    let new = on(&canary).unwrap();
    assert_ne!(Some(new.clone()), before[0], "fleet-1 was switched");
    ctrl_c(group);
    // shipit tells the busy host to stop after its current step.
    wait_until("the stop flag reached fleet-1", LIMIT, || {
        fs::read_dir(canary.join(".shipit")).is_ok_and(|es| {
            es.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("stop-"))
        })
    });
    release(&canary);

    // The undo restarts fleet-1 on its previous release: a second Ctrl-C
    // while that runs.
    wait_for_hold(&canary, 2, &mut deploy, out_dir.path());
    ctrl_c(group);
    let stderr_file = out_dir.path().join("stderr");
    wait_until("the second Ctrl-C is answered", LIMIT, || {
        fs::read_to_string(&stderr_file).is_ok_and(|s| s.contains("still stopping"))
    });
    release(&canary);

    let out = expect_exit(wait_bounded(deploy, LIMIT, out_dir.path()), 130);
    let s = stdout_of(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let failed_steps: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(" FAILED"))
        .collect();
    assert!(
        failed_steps.is_empty(),
        "no step was cut off or reported failed:\n{}",
        text(&out)
    );
    assert!(
        s.contains("[fleet-1] restart ok"),
        "the interrupted restart ran to its end:\n{s}"
    );
    assert!(
        s.contains("[fleet-1] switch_back ok") && s.contains("[fleet-2] switch_back ok"),
        "the undo (held by the second Ctrl-C on fleet-1) ran to its end:\n{s}"
    );
    assert!(
        !s.contains("[fleet-1] smoke_test"),
        "nothing new started after the Ctrl-C:\n{s}"
    );
    assert!(s.contains("interrupted during publish"), "{s}");
    assert!(
        err.contains("still stopping (switching back"),
        "the second Ctrl-C says what is being undone:\n{err}"
    );
    assert_eq!(all_on(&p), before, "every switched host went back");
    for (i, d) in p.hosts().iter().enumerate() {
        let last = events(d).into_iter().rfind(|(_, r)| *r == new);
        assert_eq!(
            last.map(|(e, _)| e).as_deref(),
            Some("failed"),
            "fleet-{}: the release is marked failed",
            i + 1
        );
        let was = before[i].as_deref().unwrap();
        let row = s
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("fleet-{} ", i + 1)))
            .unwrap_or_default();
        assert!(
            row.ends_with(&format!("switched back, current is {was} again")),
            "the summary says where fleet-{} is:\n{s}",
            i + 1
        );
    }
    assert_unlocked(&p);
    assert!(ssh_processes_of(group).is_empty(), "ssh processes left");
    let left = temp_dirs_of(group, tmp.path());
    assert!(left.is_empty(), "temporary directory left: {left:?}");
}

// ---------------------------------------------------------------------------
// shipit killed outright

/// Protection: a master exits on its own a short while (ControlPersist)
/// after the run that owned it is gone, even when that run was killed
/// with SIGKILL and could close nothing; the next run removes the killed
/// run's temporary directory (and says so), and only that: a live run's
/// is left alone. The next deploy finds the half-state the killed run
/// left (its lock, one host switched, the other only staged), reports it,
/// takes the dead run's lock over and brings every host to its release;
/// the release that was staged and never published is cleaned up.
#[test]
fn a_killed_run_leaves_no_ssh_master_behind_and_the_next_run_cleans_up_after_it() {
    let p = restart_holding_project(2, "    rollout: { batch: 1 }\n");
    let old = on(&p.hosts()[0]).unwrap();
    let canary = p.hosts()[0].clone();
    hold_on(&canary);
    commit(&p.repo, "VERSION", "2\n");
    let out_dir = tempfile::tempdir().unwrap();
    let tmp = private_tmp();
    let mut cmd = shipit_cmd(&p.dir, &["deploy", "staging"]);
    cmd.env("TMPDIR", tmp.path());
    let mut deploy = spawn_in_own_group_with(cmd, out_dir.path());
    let pid = deploy.id();
    wait_for_hold(&canary, 1, &mut deploy, out_dir.path());
    assert!(ssh_processes_of(pid).len() >= 2, "masters are up");
    let killed_release = on(&canary).unwrap();
    assert_ne!(killed_release, old);

    deploy.kill().unwrap(); // SIGKILL: no undo, no clean-up can run
    deploy.wait().unwrap();
    // The held step ends on the host; its session closes.
    fs::remove_file(canary.join("HOLD")).unwrap();
    release(&canary);
    wait_until(
        "the killed run's ssh masters exit",
        Duration::from_secs(40),
        || ssh_processes_of(pid).is_empty(),
    );
    let left = temp_dirs_of(pid, tmp.path());
    assert_eq!(left.len(), 1, "nobody removed it yet: {left:?}");
    // The half-state: fleet-1 switched, fleet-2 only staged, both locked.
    assert_eq!(on(&p.hosts()[1]).as_deref(), Some(old.as_str()));
    assert!(releases(&p.hosts()[1]).contains(&killed_release));
    assert!(p.hosts().iter().all(|d| locked(d)));

    // A live run's directory, which the next run must not touch.
    let live = tempfile::Builder::new()
        .prefix(&format!(
            "shipit-{}-{}-{}-",
            ns_number(),
            std::process::id(),
            start_time_of(std::process::id())
        ))
        .tempdir_in(tmp.path())
        .unwrap();

    commit(&p.repo, "VERSION", "3\n");
    let next = shipit_cmd(&p.dir, &["deploy", "staging"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let s = stdout_of(&expect_exit(next, 0));
    assert!(
        s.contains(&format!("a shipit run that was killed (pid {pid})")),
        "{s}"
    );
    assert!(!left[0].exists(), "the killed run's temp dir is removed");
    assert!(live.path().exists(), "a live run's temp dir stays");
    assert!(
        s.contains(&format!(
            "every host was locked by a run that is gone (`tester` on `{}` (pid {pid})",
            machine()
        )) && s.contains(&format!(
            "freed; it left the hosts on different releases ({killed_release} on fleet-1; {old} on fleet-2)"
        )),
        "{s}"
    );
    let now = all_on(&p);
    assert!(
        now[0].is_some() && now[1] == now[0] && now[0].as_deref() != Some(old.as_str()),
        "every host on the new release: {now:?}"
    );
    assert_ne!(now[0].as_deref(), Some(killed_release.as_str()));
    assert!(
        !releases(&p.hosts()[1]).contains(&killed_release),
        "the release staged and never published is gone from fleet-2"
    );
    assert_unlocked(&p);
}

fn ns_number() -> String {
    let ns = fs::read_link("/proc/self/ns/pid").unwrap();
    let ns = ns.to_string_lossy();
    ns.trim_start_matches("pid:[")
        .trim_end_matches(']')
        .to_string()
}

fn start_time_of(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------
// Locks from elsewhere

/// This machine's name as shipit records it.
fn machine() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// A pid that no process here has: a child that has finished.
fn dead_pid() -> (u32, u64) {
    let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
    let pid = child.id();
    let start = start_time_of(pid);
    child.wait().unwrap();
    (pid, start)
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// Writes a deploy lock on host `d` as a run on this machine's name with
/// `pid` would, with `process` (a JSON object, or nothing for the record
/// of an older version).
fn write_lock(d: &Path, pid: u32, process: Option<String>) {
    let lock = d.join(".shipit/lock");
    fs::create_dir_all(&lock).unwrap();
    let process = process
        .map(|p| format!(",\"process\":{p}"))
        .unwrap_or_default();
    fs::write(
        lock.join("info"),
        format!(
            "{{\"user\":\"ci\",\"machine\":\"{}\",\"pid\":{pid},\"time\":\"2026-11-24T19:01:02Z\",\
             \"stage\":\"staging\",\"message\":\"deploy of `staging`\",\"token\":\"other-run\"{process}}}\n",
            machine()
        ),
    )
    .unwrap();
}

/// Protection: a lock's holder is identified by boot id, pid namespace,
/// pid and start time. A lock taken by a live run in another container or
/// on another CI machine with the same hostname (another boot id; its pid
/// means nothing here) is never called stale: the deploy exits 4 naming
/// the holder, and `unlock` without `--force` leaves it. A record of an
/// older version (no process identity) is read and shown, never called
/// stale by its pid. A lock of a run of this very boot and namespace whose
/// process is gone is that run's for certain: the deploy takes it over.
#[test]
fn a_live_lock_from_another_machine_of_the_same_name_is_never_stale() {
    let p = Project::new(1);
    p.write_config(&format!("tasks:\n{SMOKE}"), "", |_| String::new());
    p.deploy_ok();
    let d = p.hosts()[0].clone();
    let before = all_on(&p);
    let (pid, start) = dead_pid();
    let ns = format!("pid:[{}]", ns_number());

    // Another boot id: alive over there, whatever this machine sees.
    write_lock(
        &d,
        pid,
        Some(format!(
            "{{\"boot_id\":\"0f0e0d0c-another-machine\",\"pid_ns\":\"{ns}\",\"start_time\":{start}}}"
        )),
    );
    commit(&p.repo, "VERSION", "2\n");
    let refused = p.deploy_expect(4);
    let s = stdout_of(&refused);
    assert!(s.contains("is locked on `fleet-1` by `ci`"), "{s}");
    assert!(s.contains(&format!("(pid {pid})")), "{s}");
    assert!(!s.contains("stale"), "{s}");
    p.run(&["unlock", "staging"]);
    assert!(
        locked(&d),
        "unlock without --force leaves a live holder's lock"
    );
    assert_eq!(all_on(&p), before);

    // An older version's record: the same, read sensibly.
    write_lock(&d, pid, None);
    let refused = p.deploy_expect(4);
    let s = stdout_of(&refused);
    assert!(
        s.contains(&format!("by `ci` on `{}` (pid {pid})", machine())),
        "{s}"
    );
    assert!(!s.contains("stale"), "{s}");

    // This boot, this namespace, the process gone: stale.
    write_lock(
        &d,
        pid,
        Some(format!(
            "{{\"boot_id\":\"{}\",\"pid_ns\":\"{ns}\",\"start_time\":{start}}}",
            boot_id()
        )),
    );
    let s = p.deploy_ok();
    assert!(
        s.contains(&format!(
            "every host was locked by a run that is gone (`ci` on `{}` (pid {pid})",
            machine()
        )),
        "{s}"
    );
    assert!(!locked(&d));
    assert_ne!(all_on(&p), before);
}

// ---------------------------------------------------------------------------
// A host that stops answering

/// Protection: a step's end must come back from the host within its time
/// limit (and a little); when it does not and the host does not answer a
/// trivial command either, the step fails as timed out and the host is
/// treated as gone for the rest of the run (its undo and unlock fail at
/// once). A host whose network dies in a step limited to 5 s ends the run
/// in well under ssh's keepalive minute: exit 1, no host switched, the
/// other hosts unlocked with their staged release removed, the summary
/// naming the silent host.
#[test]
fn a_host_whose_network_dies_fails_its_step_at_the_step_timeout() {
    let p = Project::new(3);
    p.write_config(
        &format!(
            "tasks:\n{SMOKE}  hold:\n    after: create_release\n    timeout: 5s\n    run: \"{HOLD_IF_ASKED}\"\n"
        ),
        "",
        |_| String::new(),
    );
    p.deploy_ok();
    let before = all_on(&p);
    let silent = p.hosts()[1].clone();
    hold_on(&silent);
    commit(&p.repo, "VERSION", "2\n");
    let out_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut deploy = spawn_in_own_group(&p, &["deploy", "staging"], out_dir.path());
    wait_for_hold(&silent, 1, &mut deploy, out_dir.path());

    // fleet-2's network dies: its sshd and everything under it stop.
    let sshd = p.fleet.hosts()[1].pid().unwrap();
    let mut frozen = procs::descendants(sshd);
    frozen.push(sshd);
    procs::signal("STOP", &frozen);
    let out = wait_bounded(deploy, LIMIT, out_dir.path());
    let took = started.elapsed();
    procs::signal("CONT", &frozen);
    let _ = fs::remove_file(silent.join("HOLD"));
    let _ = fs::OpenOptions::new()
        .write(true)
        .custom_flags_nonblock()
        .open(silent.join("gate"));

    let out = expect_exit(out, 1);
    let s = stdout_of(&out);
    assert!(took < Duration::from_secs(20), "took {took:?}:\n{s}");
    assert!(
        s.contains("[fleet-2] hold FAILED") && s.contains("timed out after 5s"),
        "{}",
        text(&out)
    );
    assert_eq!(all_on(&p), before, "no host was switched");
    for i in [0, 2] {
        let d = &p.hosts()[i];
        assert!(!locked(d), "fleet-{} unlocked", i + 1);
        assert_eq!(
            releases(d).len(),
            1,
            "fleet-{}: staged release removed",
            i + 1
        );
    }
    // fleet-2 is named with what is known of it: its step, its staged
    // release and lock that could not be removed, where `current` was.
    let row = s
        .lines()
        .find(|l| l.trim_start().starts_with("fleet-2 "))
        .unwrap_or_default();
    let was = before[1].as_deref().unwrap();
    assert!(
        row.contains("failed at hold: timed out after 5s (the host stopped answering)")
            && row.contains("could not remove the staged release")
            && row.ends_with(&format!("current unchanged ({was})")),
        "{s}"
    );
    assert!(s.contains("[fleet-2] unlock FAILED"), "{s}");
    assert!(locked(&silent), "the lock of the unreachable host stays");
}

/// Opening the fifo without waiting for a reader (the held step may be
/// gone), so the test never blocks on it.
trait NonBlocking {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlocking for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        // O_NONBLOCK on Linux.
        self.custom_flags(0o4000)
    }
}

// ---------------------------------------------------------------------------
// Signals before anything changed

/// Protection: until the run changes anything outside shipit (its first
/// connection), SIGTERM (a Jenkins abort) ends it at once with exit 130
/// instead of being noticed only once loading and planning are over. Here
/// the stage's `hosts_from` command blocks (as a slow cloud API would, for
/// up to its 10 minute time limit) when the signal comes: shipit exits
/// promptly, says nothing was changed, and no host, control directory or
/// ssh process was touched or left. Without the protection shipit waits
/// for the command and the bounded wait fails.
#[test]
fn sigterm_while_loading_exits_130_at_once_and_changes_nothing() {
    let p = Project::new(1);
    let fifo = p.dir.join("inventory-gate");
    let started = p.dir.join("inventory-started");
    let ok = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo");
    let run = format!(
        "touch {}; read -r _ < {}; echo fleet-1",
        started.display(),
        fifo.display()
    );
    let d = p.fleet.hosts()[0].deploy_to.clone();
    p.write_config(
        &format!(
            "deploy_to: {}\n",
            support::deploy_yml::yaml_str(&d.to_string_lossy())
        ),
        &format!(
            "    hosts_from:\n      - {{ run: {}, timeout: 10m }}\n",
            support::deploy_yml::yaml_str(&run)
        ),
        |_| String::new(),
    );
    let out_dir = tempfile::tempdir().unwrap();
    let tmp = private_tmp();
    let mut cmd = shipit_cmd(&p.dir, &["deploy", "staging"]);
    cmd.env("TMPDIR", tmp.path());
    let mut child = spawn_in_own_group_with(cmd, out_dir.path());
    let pid = child.id();
    let start = Instant::now();
    while !started.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "shipit ended before its inventory command started:\n{}",
                text(&read_output(status, out_dir.path()))
            );
        }
        assert!(
            start.elapsed() < LIMIT,
            "the inventory command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let signalled = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM {pid}");
    let o = wait_bounded(child, Duration::from_secs(20), out_dir.path());
    let took = signalled.elapsed();
    // Let the orphaned inventory command end.
    fs::write(&fifo, "go\n").unwrap();

    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        text(&o).contains("interrupted before anything changed"),
        "{}",
        text(&o)
    );
    assert!(!d.join(".shipit").exists() && !d.join("releases").exists());
    let left = temp_dirs_of(pid, tmp.path());
    assert!(left.is_empty(), "{left:?}");
    assert!(ssh_processes_of(pid).is_empty());
    eprintln!("shipit exited {took:?} after SIGTERM");
}
