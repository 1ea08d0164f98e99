//! How deploys and rollbacks scale with the fleet: `shipit deploy` and
//! `shipit rollback` to 1 to 200 real sshd hosts on loopback (the test
//! fleet, tests/support/fleet.rs), with and without a round-trip latency
//! between shipit and the hosts, each next to its "floor".
//!
//! ```text
//! cargo bench --bench fleet                            # the default set below
//! SHIPIT_BENCH_LATENCY_MS=0 cargo bench --bench fleet  # latencies (ms, round trip)
//! SHIPIT_BENCH_HOSTS=10,50 cargo bench --bench fleet   # sizes (1..=200), every latency
//! SHIPIT_BENCH_KEEP=1 cargo bench --bench fleet        # keep repos and shipit's logs
//! ```
//!
//! Default: latencies 0 and 50 ms; 1, 10, 50, 100 and 200 hosts at 0 ms,
//! 1, 10 and 100 hosts at 50 ms (about 10-15 minutes on 2 cores).
//!
//! This is a program, not a test: nothing is asserted beyond each run
//! succeeding. Cargo builds `target/release/shipit` (the bench profile is
//! the release profile) and this runs it as a user would. Needs OpenSSH
//! (client and server), git and GNU time (`/usr/bin/time`, Debian package
//! `time`; installed with apt-get when missing and running as root).
//!
//! **Latency.** The kernel here has no netem, so for a latency L each host
//! gets a small TCP proxy on its own address (another port) that forwards
//! both directions and holds every chunk back L/2 in each direction (a
//! reader thread stamps chunks into a queue, a writer thread sends each
//! when due: order is kept and throughput is not serialised). This run's
//! own ssh config and known_hosts point `fleet-N` at the proxies; shipit
//! and the floor's plain ssh both go through them. At 0 ms there is no
//! proxy.
//!
//! For each latency and fleet size it starts a fresh fleet, makes a sample
//! application repository (300 files, about 4 MB, 3 commits; the same
//! bytes and commit ids every run), writes a deploy.yml (strategy git, a
//! linked dir and file, a template, cheap restart and smoke_test commands)
//! and runs:
//!
//! - **cold**: the first deploy: every host clones the repository;
//! - **warm**: a second deploy after one more commit;
//! - **rollback**: `shipit rollback bench`, back to the cold release;
//! - **warm floor** (warm work without shipit): after one more commit, one
//!   plain `ssh HOST SCRIPT` per host, all hosts at once, doing what the
//!   warm deploy does on a host (lock, fetch, export, link, template,
//!   switch, restart, smoke test, ledger line, unlock), in a `floor/` dir;
//! - **rollback floor**: likewise for a rollback's host work (lock, read
//!   releases, `current` and the ledger, switch `current` back, restart,
//!   smoke test, ledger line, unlock).
//!
//! Columns: wall times and their ratios to the floors; `cmds/host`:
//! commands started on each host, counted by sshd (`Starting session:
//! command` in its VERBOSE log, the delta over the run), min-max over
//! hosts; `logins/host` (`Accepted publickey`), warm/rollback; `shipit peak
//! MiB`: the largest `ru_maxrss` of the three shipit runs, from GNU time
//! (`%M`: shipit itself; its ssh clients are smaller); `ssh private MiB`:
//! the peak over the runs of the summed private memory (`RssAnon`) of every
//! `ssh` client process of this fleet (masters and per-command clients;
//! their command lines hold the fleet's directory), sampled from /proc
//! every 50 ms.
//!
//! The repository is reached as a `file://` URL, so hosts clone and fetch
//! through git's pack protocol as from a real server, rather than
//! hard-linking a local path. shipit runs with its default `-j` (50). The
//! fleet's sessions have a `HOME` of their own, so no shell rc file of the
//! user running the bench is read on the hosts.
//!
//! Everything runs on this machine, hosts included: host-side CPU (sshd,
//! git, tar) shares the cores with shipit and is part of the floor, and the
//! numbers move with whatever else the machine is doing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::deploy_yml::{hosts_yaml, yaml_str};
use support::{Fleet, FleetHost};

const SHIPIT: &str = env!("CARGO_BIN_EXE_shipit");
const GNU_TIME: &str = "/usr/bin/time";
const DEFAULT_SIZES: [usize; 5] = [1, 10, 50, 100, 200];
const DEFAULT_SIZES_WITH_LATENCY: [usize; 3] = [1, 10, 100];
const DEFAULT_LATENCIES_MS: [u64; 2] = [0, 50];
const STAGE: &str = "bench";
/// A deploy that takes longer than this is stuck; the run stops.
const RUN_DEADLINE: Duration = Duration::from_secs(600);
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Sample repository shape: text files (source-like, compressible) and
/// binary assets (incompressible).
const TEXT_FILES: usize = 280;
const BINARY_FILES: usize = 20;

fn main() {
    let latencies = latencies();
    let explicit = sizes_from_env();
    check_tools();
    let work = tempfile::Builder::new()
        .prefix("shipit-bench-")
        .tempdir()
        .expect("cannot create a temporary directory");
    let base = work.path().join("app-base");
    let (files, bytes) = sample_repository(&base);
    let plan: Vec<(u64, Vec<usize>)> = latencies
        .iter()
        .map(|&l| (l, explicit.clone().unwrap_or_else(|| default_sizes(l))))
        .collect();
    eprintln!(
        "fleet bench: shipit {SHIPIT}\nfleet bench: sample repository: {files} files, \
         {:.1} MiB, 3 commits; (round-trip latency ms, fleet sizes): {plan:?}",
        bytes as f64 / (1024.0 * 1024.0)
    );

    let mut rows = Vec::new();
    for (latency, sizes) in &plan {
        for &n in sizes {
            let started = Instant::now();
            let row = bench_size(n, *latency, &base, work.path());
            eprintln!(
                "fleet bench: {n} host(s) at {latency} ms done in {:.0}s",
                started.elapsed().as_secs_f64()
            );
            print_row_line(&row);
            rows.push(row);
        }
    }
    print_table(&rows);
    if std::env::var_os("SHIPIT_BENCH_KEEP").is_some() {
        eprintln!(
            "fleet bench: kept {} (shipit's output in project-LMS-N/, sshd's in sshd-logs-LMS-N/)",
            work.keep().display()
        );
    }
}

/// Fleet sizes when `SHIPIT_BENCH_HOSTS` is not set: the full set without
/// latency, fewer with it (a default run stays within about 15 minutes).
fn default_sizes(latency_ms: u64) -> Vec<usize> {
    if latency_ms == 0 {
        DEFAULT_SIZES.to_vec()
    } else {
        DEFAULT_SIZES_WITH_LATENCY.to_vec()
    }
}

/// `SHIPIT_BENCH_LATENCY_MS=0,50` (the default): round-trip latencies to
/// put between shipit and the hosts, in milliseconds.
fn latencies() -> Vec<u64> {
    let Ok(text) = std::env::var("SHIPIT_BENCH_LATENCY_MS") else {
        return DEFAULT_LATENCIES_MS.to_vec();
    };
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<u64>() {
            Ok(l) if l <= 10_000 => l,
            _ => panic!(
                "SHIPIT_BENCH_LATENCY_MS: `{s}` is not a latency; give round trips in \
                 milliseconds separated by commas, like `0,50`"
            ),
        })
        .collect()
}

/// `SHIPIT_BENCH_HOSTS=10,50` (for every latency), else `None`.
fn sizes_from_env() -> Option<Vec<usize>> {
    let text = std::env::var("SHIPIT_BENCH_HOSTS").ok()?;
    Some(
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.parse::<usize>() {
                Ok(n) if (1..=200).contains(&n) => n,
                _ => panic!(
                    "SHIPIT_BENCH_HOSTS: `{s}` is not a fleet size; give sizes from 1 to 200 \
                     separated by commas, like `10,50`"
                ),
            })
            .collect(),
    )
}

/// GNU time measures shipit's peak memory; install it as root, else say
/// what is missing.
fn check_tools() {
    for (tool, package) in [("git", "git"), ("ssh", "openssh-client")] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(found, "the benchmark needs `{tool}`: install {package}");
    }
    if Path::new(GNU_TIME).exists() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        panic!(
            "the benchmark measures peak memory with GNU time ({GNU_TIME}); install it \
             (sudo apt-get install time) or run the benchmark as root"
        );
    }
    eprintln!("fleet bench: installing GNU time (apt-get install time)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "time"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = install()
        || (Command::new("apt-get")
            .arg("update")
            .status()
            .is_ok_and(|s| s.success())
            && install());
    assert!(
        ok && Path::new(GNU_TIME).exists(),
        "cannot install GNU time: install the Debian package `time` ({GNU_TIME})"
    );
}

struct Row {
    latency_ms: u64,
    hosts: usize,
    cold: Run,
    warm: Run,
    rollback: Run,
    warm_commands: (usize, usize),
    warm_logins: (usize, usize),
    rollback_commands: (usize, usize),
    rollback_logins: (usize, usize),
    warm_floor: Duration,
    rollback_floor: Duration,
}

/// One shipit run, measured.
struct Run {
    wall: Duration,
    /// Peak RSS of shipit, KiB.
    shipit_kib: u64,
    /// Peak of their summed private memory (`RssAnon`), KiB.
    ssh_anon_kib: u64,
}

fn bench_size(n: usize, latency_ms: u64, base: &Path, work: &Path) -> Row {
    let fleet = Fleet::start(n);
    let tag = format!("{latency_ms}ms-{n}");
    let app = work.join(format!("app-{tag}"));
    let status = Command::new("cp")
        .arg("-a")
        .arg(base)
        .arg(&app)
        .status()
        .expect("cannot run cp");
    assert!(status.success(), "cannot copy the sample repository");
    // With a latency, shipit and the floor reach every host through a
    // delaying proxy, named in an ssh config of this run's own.
    let _proxies;
    let ssh_config = if latency_ms == 0 {
        fleet.ssh_config().to_path_buf()
    } else {
        let half = Duration::from_micros(latency_ms * 500);
        _proxies = fleet
            .hosts()
            .iter()
            .map(|h| DelayProxy::start(h, half))
            .collect::<Vec<_>>();
        write_proxied_ssh_config(&fleet, &_proxies, &tag)
    };
    let project = write_project(
        &fleet,
        &ssh_config,
        &app,
        work.join(format!("project-{tag}")),
    );

    let cold = shipit(&fleet, &project, "cold", &["deploy", STAGE]);
    let before = counts(&fleet);
    commit_changes(&app, 4, 5);
    let warm = shipit(&fleet, &project, "warm", &["deploy", STAGE]);
    let after_warm = counts(&fleet);
    let rollback = shipit(&fleet, &project, "rollback", &["rollback", STAGE]);
    let after_rollback = counts(&fleet);
    let (warm_commands, warm_logins) = deltas(&before, &after_warm);
    let (rollback_commands, rollback_logins) = deltas(&after_warm, &after_rollback);

    commit_changes(&app, 5, 5);
    let warm_floor = floor(&fleet, &ssh_config, |h| warm_floor_script(h, &app));
    let rollback_floor = floor(&fleet, &ssh_config, rollback_floor_script);
    if std::env::var_os("SHIPIT_BENCH_KEEP").is_some() {
        let logs = work.join(format!("sshd-logs-{tag}"));
        fs::create_dir_all(&logs).expect("cannot create a log directory");
        for h in fleet.hosts() {
            let _ = fs::copy(&h.log, logs.join(format!("{}.log", h.alias)));
        }
    }
    Row {
        latency_ms,
        hosts: n,
        cold,
        warm,
        rollback,
        warm_commands,
        warm_logins,
        rollback_commands,
        rollback_logins,
        warm_floor,
        rollback_floor,
    }
}

/// Per-host (commands, logins) between two [`counts`], each as min-max.
fn deltas(before: &[(usize, usize)], after: &[(usize, usize)]) -> ((usize, usize), (usize, usize)) {
    let (commands, logins): (Vec<usize>, Vec<usize>) = before
        .iter()
        .zip(after)
        .map(|(b, a)| (a.0 - b.0, a.1 - b.1))
        .unzip();
    (min_max(&commands), min_max(&logins))
}

fn min_max(v: &[usize]) -> (usize, usize) {
    (
        v.iter().copied().min().unwrap_or(0),
        v.iter().copied().max().unwrap_or(0),
    )
}

/// (commands started, logins) so far, per host.
fn counts(fleet: &Fleet) -> Vec<(usize, usize)> {
    fleet
        .hosts()
        .iter()
        .map(|h| {
            let log = h.log_contents();
            (
                log.matches("Starting session: command ").count(),
                log.matches("Accepted publickey for ").count(),
            )
        })
        .collect()
}

fn file_url(repo: &Path) -> String {
    format!("file://{}", repo.display())
}

const TEMPLATE: &str = "PORT={{ port }}\nHOST={{ host }}\nRELEASE={{ release }}\n\
                        COMMIT={{ commit }}\n";

/// A project dir with deploy.yml and its template; returns the config path.
fn write_project(fleet: &Fleet, ssh_config: &Path, app: &Path, dir: PathBuf) -> PathBuf {
    fs::create_dir_all(dir.join("templates")).expect("cannot create the project dir");
    fs::write(dir.join("templates/app.env.tera"), TEMPLATE).expect("cannot write the template");
    let yml = format!(
        "application: shop\n\
         repository: {repo}\n\
         branch: main\n\
         keep_releases: 3\n\
         strategy: git\n\
         linked_dirs: [log]\n\
         linked_files: [.env]\n\
         vars: {{ port: 8080 }}\n\
         templates:\n  - {{ src: templates/app.env.tera, dest: shared/.env, mode: \"0600\" }}\n\
         tasks:\n  \
           restart: {{ run: \"echo restarted >> log/restarts\" }}\n  \
           smoke_test: {{ run: \"test -s REVISION && grep -q PORT= .env\" }}\n\
         ssh:\n  config_file: {config}\n  connect_timeout: 30s\n  host_key_checking: strict\n\
         stages:\n  {STAGE}:\n    hosts:\n{hosts}",
        repo = yaml_str(&file_url(app)),
        config = yaml_str(&ssh_config.to_string_lossy()),
        hosts = hosts_yaml(fleet, 6),
    );
    let path = dir.join("deploy.yml");
    fs::write(&path, yml).expect("cannot write deploy.yml");
    path
}

/// Runs `shipit ARGS` (`deploy bench`, `rollback bench`) under GNU time,
/// sampling the fleet's ssh clients until it exits. Panics with shipit's
/// output when it fails.
fn shipit(fleet: &Fleet, config: &Path, what: &str, args: &[&str]) -> Run {
    let dir = config.parent().expect("the config has a directory");
    let log = dir.join(format!("{what}.log"));
    let rss_file = dir.join(format!("{what}.maxrss"));
    let out = fs::File::create(&log).expect("cannot create the run log");
    let err = out.try_clone().expect("cannot share the run log");
    let fleet_dir = fleet.dir().to_string_lossy().into_owned();

    let started = Instant::now();
    let mut child = Command::new(GNU_TIME)
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(SHIPIT)
        .arg("-c")
        .arg(config)
        .args(["--format", "plain"])
        .args(args)
        .current_dir(dir)
        // shipit's control sockets go under the fleet's directory, so its
        // ssh clients are found by that path.
        .env("TMPDIR", fleet.dir())
        .env("SHIPIT_USER", "bench")
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {GNU_TIME}: {e}"));
    let mut ssh_anon_kib = 0;
    let status = loop {
        let clients = ssh_clients(&fleet_dir);
        ssh_anon_kib = ssh_anon_kib.max(clients.anon_kib);
        if let Some(status) = child.try_wait().expect("cannot wait for shipit") {
            break status;
        }
        if started.elapsed() > RUN_DEADLINE {
            support::procs::kill_tree(child.id());
            let _ = child.wait();
            panic!(
                "the {what} run on {} hosts took over {RUN_DEADLINE:?}; its output:\n{}",
                fleet.hosts().len(),
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    let wall = started.elapsed();
    let output = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "the {what} run on {} hosts failed ({status}); its output:\n{output}",
        fleet.hosts().len()
    );
    // GNU time writes its own line on failure; on success only `%M`.
    let rss = fs::read_to_string(&rss_file).unwrap_or_default();
    let shipit_kib = rss
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from {GNU_TIME}: {rss:?}"));
    Run {
        wall,
        shipit_kib,
        ssh_anon_kib,
    }
}

/// The `ssh` processes whose command line contains `needle`, right now.
#[derive(Default)]
struct Clients {
    count: usize,
    /// Summed VmRSS, KiB.
    rss_kib: u64,
    /// Summed RssAnon (memory of their own, not shared libraries), KiB.
    anon_kib: u64,
}

fn ssh_clients(needle: &str) -> Clients {
    let mut found = Clients::default();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for pid in entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        // `comm` first: it is short, and most processes are not ssh.
        let is_ssh = fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c == b"ssh\n");
        if !is_ssh {
            continue;
        }
        let ours = fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle));
        if !ours {
            continue;
        }
        // Gone meanwhile, or a zombie (no VmRSS line): not counted.
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let Some(rss) = status_kib(&status, "VmRSS:") else {
            continue;
        };
        found.count += 1;
        found.rss_kib += rss;
        found.anon_kib += status_kib(&status, "RssAnon:").unwrap_or(0);
    }
    found
}

/// `VmRSS:     5120 kB` -> 5120.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Host work without shipit: one fresh `ssh HOST SCRIPT` per host (through
/// `ssh_config`, so through the proxies when there is a latency), all at
/// once. Returns the wall time.
fn floor(fleet: &Fleet, ssh_config: &Path, script: impl Fn(&FleetHost) -> String) -> Duration {
    let scripts: Vec<String> = fleet.hosts().iter().map(script).collect();
    let started = Instant::now();
    let children: Vec<_> = fleet
        .hosts()
        .iter()
        .zip(scripts)
        .map(|(h, script)| {
            Command::new("ssh")
                .arg("-F")
                .arg(ssh_config)
                .arg(&h.alias)
                .arg(script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("cannot run ssh")
        })
        .collect();
    for (child, host) in children.into_iter().zip(fleet.hosts()) {
        let out = child.wait_with_output().expect("cannot wait for ssh");
        assert!(
            out.status.success(),
            "the floor script failed on {}: {}",
            host.alias,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    started.elapsed()
}

const FLOOR_RELEASE: &str = "20990101T000000Z";

/// What a warm deploy does on a host, as one script: in a `floor/` dir of
/// its own, next to shipit's, fetching into shipit's mirror.
fn warm_floor_script(h: &FleetHost, app: &Path) -> String {
    let d = h.deploy_to.display();
    let url = file_url(app);
    let commit = git_out(app, &["rev-parse", "HEAD"]);
    let release = FLOOR_RELEASE;
    let host = &h.alias;
    format!(
        "set -e\n\
         cd {d}\n\
         mkdir -p floor/releases floor/.shipit && mkdir floor/.shipit/lock\n\
         git --git-dir=repo remote set-url origin '{url}'\n\
         git --git-dir=repo fetch --quiet --prune origin '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*'\n\
         git --git-dir=repo cat-file -e '{commit}^{{commit}}'\n\
         rel=floor/releases/{release}\n\
         mkdir \"$rel\"\n\
         git --git-dir=repo archive --format=tar -o \"$rel.tar\" {commit}\n\
         tar -x -f \"$rel.tar\" -C \"$rel\" && rm -f \"$rel.tar\"\n\
         printf '%s\\n' {commit} > \"$rel/REVISION\"\n\
         mkdir -p floor/shared/log && ln -s \"$PWD/floor/shared/log\" \"$rel/log\"\n\
         (umask 077; printf 'PORT=8080\\nHOST={host}\\nRELEASE={release}\\nCOMMIT={commit}\\n' > floor/shared/.env.tmp)\n\
         mv -f floor/shared/.env.tmp floor/shared/.env\n\
         ln -s \"$PWD/floor/shared/.env\" \"$rel/.env\"\n\
         ln -sfn releases/{release} floor/current.tmp && mv -T floor/current.tmp floor/current\n\
         (cd floor/current && echo restarted >> log/restarts && test -s REVISION && grep -q PORT= .env)\n\
         printf '{{\"event\":\"verified\",\"release\":\"%s\"}}\\n' {release} >> floor/.shipit/ledger.jsonl\n\
         ls floor/releases > /dev/null\n\
         rmdir floor/.shipit/lock\n"
    )
}

/// What a rollback does on a host, as one script, after the warm floor:
/// take `floor/`'s lock, read the state (releases with their REVISION,
/// where `current` points, the ledger), pick the previous release (the
/// older of shipit's two), switch `floor/current` to it, restart and
/// smoke-test there, append a ledger line, free the lock.
fn rollback_floor_script(h: &FleetHost) -> String {
    let d = h.deploy_to.display();
    format!(
        "set -e\n\
         cd {d}\n\
         mkdir floor/.shipit/lock\n\
         for r in releases/*; do printf '%s %s\\n' \"${{r##*/}}\" \"$(head -n 1 \"$r/REVISION\")\"; done > /dev/null\n\
         readlink floor/current > /dev/null\n\
         cat .shipit/ledger.jsonl floor/.shipit/ledger.jsonl > /dev/null\n\
         prev=$(ls -1 releases | tail -n 2 | head -n 1)\n\
         test -d \"releases/$prev\"\n\
         ln -sfn \"$PWD/releases/$prev\" floor/current.tmp && mv -T floor/current.tmp floor/current\n\
         (cd floor/current && echo restarted >> log/restarts && test -s REVISION && grep -q PORT= .env)\n\
         printf '{{\"event\":\"rollback\",\"release\":\"%s\"}}\\n' \"$prev\" >> floor/.shipit/ledger.jsonl\n\
         rmdir floor/.shipit/lock\n"
    )
}

// --- the delaying proxy ----------------------------------------------

/// A TCP proxy in front of one host's sshd that delays every chunk by
/// `half` (half the round trip) in each direction, keeping each
/// direction's order: a reader thread stamps each chunk with when it may
/// go on and queues it; a writer thread sends it then. Threads live as
/// long as their connection; the accepting thread as long as the bench.
struct DelayProxy {
    port: u16,
}

impl DelayProxy {
    fn start(host: &FleetHost, half: Duration) -> DelayProxy {
        let listener = TcpListener::bind((host.address, 0))
            .unwrap_or_else(|e| panic!("cannot bind a proxy on {}: {e}", host.address));
        let port = listener.local_addr().expect("no local address").port();
        let upstream = SocketAddr::from((host.address, host.port));
        spawn_small(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                pipe(client, s2, half);
                pipe(server, c2, half);
            }
        });
        DelayProxy { port }
    }
}

fn spawn_small(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(f)
        .expect("cannot start a proxy thread");
}

/// Copies `from` to `to`, each chunk held back until `delay` after it was
/// read.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    spawn_small(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // Dropping `tx` tells the writer the stream ended.
    });
    spawn_small(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// An ssh config like the fleet's, but with each `fleet-N` at its proxy,
/// and a known_hosts naming the proxies' addresses. Returns its path.
fn write_proxied_ssh_config(fleet: &Fleet, proxies: &[DelayProxy], tag: &str) -> PathBuf {
    let known = fleet.dir().join(format!("known_hosts-{tag}"));
    let config = fleet.dir().join(format!("ssh_config-{tag}"));
    let mut known_text = String::new();
    let mut text = String::from("# The fleet bench: every host through its delaying proxy.\n");
    for (h, p) in fleet.hosts().iter().zip(proxies) {
        known_text.push_str(&format!(
            "[{}]:{} {}\n",
            h.address,
            p.port,
            fleet.host_public_key()
        ));
        text.push_str(&format!(
            "Host {}\n  HostName {}\n  Port {}\n",
            h.alias, h.address, p.port
        ));
    }
    let base = fs::read_to_string(fleet.ssh_config()).expect("cannot read the fleet's ssh config");
    let rest = &base[base
        .find("Host *\n")
        .expect("the fleet's ssh config has `Host *`")..];
    let fleet_known = fleet.known_hosts().display().to_string();
    assert!(
        rest.contains(&fleet_known),
        "the fleet's ssh config names its known_hosts"
    );
    text.push_str(&rest.replace(&fleet_known, &known.display().to_string()));
    fs::write(&known, known_text).expect("cannot write known_hosts");
    fs::write(&config, text).expect("cannot write the ssh config");
    config
}

// --- the sample application repository --------------------------------

/// A small deterministic generator (xorshift64*), so every run deploys the
/// same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: [&str; 32] = [
    "def", "end", "class", "module", "return", "if", "else", "self", "user", "order", "item",
    "price", "total", "cart", "render", "params", "id", "name", "status", "config", "log", "error",
    "true", "false", "nil", "each", "map", "do", "value", "key", "json", "cache",
];

/// Source-like text of about `size` bytes: lines of words, indented.
fn text(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 80);
    while out.len() < size {
        let indent = 2 * rng.below(4) as usize;
        out.extend(std::iter::repeat_n(b' ', indent));
        for i in 0..3 + rng.below(8) {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        }
        out.push(b'\n');
    }
    out
}

fn binary(rng: &mut Rng, size: usize) -> Vec<u8> {
    (0..size).map(|_| rng.next() as u8).collect()
}

/// The path of sample file `i`.
fn sample_path(i: usize) -> String {
    if i >= TEXT_FILES {
        return format!("public/assets/image-{:02}.bin", i - TEXT_FILES);
    }
    let dir = [
        "app/models",
        "app/controllers",
        "app/views",
        "lib",
        "config",
        "spec",
    ][i % 6];
    format!("{dir}/file_{i:03}.rb")
}

/// The contents of sample file `i` in `version` (1 = first).
fn sample_contents(i: usize, version: u64) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((i as u64) << 8) ^ version);
    rng.next();
    if i >= TEXT_FILES {
        let size = 20_000 + rng.below(60_000) as usize;
        binary(&mut rng, size)
    } else {
        let size = 4_000 + rng.below(15_000) as usize;
        text(&mut rng, size)
    }
}

fn write_sample(repo: &Path, i: usize, version: u64) -> usize {
    let path = repo.join(sample_path(i));
    fs::create_dir_all(path.parent().expect("sample paths have a directory"))
        .expect("cannot create a sample directory");
    let data = sample_contents(i, version);
    fs::write(&path, &data).expect("cannot write a sample file");
    data.len()
}

fn git(repo: &Path, args: &[&str], date: u64) {
    let out = git_cmd(repo, args, date).output().expect("cannot run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn git_out(repo: &Path, args: &[&str]) -> String {
    let out = git_cmd(repo, args, 0).output().expect("cannot run git");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// git with a fixed identity and date, so commit ids do not change.
fn git_cmd(repo: &Path, args: &[&str], date: u64) -> Command {
    let when = format!("{} +0000", 1_780_000_000 + date * 3600);
    let mut c = Command::new("git");
    c.args([
        "-c",
        "user.name=Bench",
        "-c",
        "user.email=bench@example.invalid",
    ])
    .args(["-c", "commit.gpgsign=false"])
    .args(args)
    .current_dir(repo)
    .env("GIT_AUTHOR_DATE", &when)
    .env("GIT_COMMITTER_DATE", &when)
    .stdin(Stdio::null());
    c
}

fn commit_all(repo: &Path, message: &str, date: u64) {
    git(repo, &["add", "-A"], date);
    git(repo, &["commit", "-q", "-m", message], date);
}

/// Three commits: most files; then changes and additions twice. Returns
/// (files, bytes) at the last one.
fn sample_repository(repo: &Path) -> (usize, usize) {
    let all = TEXT_FILES + BINARY_FILES;
    fs::create_dir_all(repo).expect("cannot create the sample repository");
    git(repo, &["init", "-q", "-b", "main"], 0);
    fs::write(
        repo.join("README"),
        "A sample application for the fleet bench.\n",
    )
    .expect("cannot write README");
    let first = all - 30;
    for i in 0..first {
        write_sample(repo, i, 1);
    }
    commit_all(repo, "The application", 1);
    for i in (0..first).step_by(13) {
        write_sample(repo, i, 2);
    }
    for i in first..first + 15 {
        write_sample(repo, i, 1);
    }
    commit_all(repo, "More of it", 2);
    for i in (5..first).step_by(29) {
        write_sample(repo, i, 3);
    }
    for i in first + 15..all {
        write_sample(repo, i, 1);
    }
    commit_all(repo, "The rest", 3);
    let bytes = (0..all)
        .map(|i| fs::metadata(repo.join(sample_path(i))).map_or(0, |m| m.len() as usize))
        .sum();
    (all + 1, bytes)
}

/// Commit `n` (4 = the warm deploy's, 5 = the floor's): `files` text files
/// changed.
fn commit_changes(repo: &Path, n: u64, files: usize) {
    for k in 0..files {
        write_sample(repo, (k * 37 + n as usize * 11) % TEXT_FILES, n);
    }
    commit_all(repo, &format!("Change {n}"), n);
}

// --- the table -------------------------------------------------------

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn range((lo, hi): (usize, usize)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

const HEADER: [&str; 14] = [
    "latency ms",
    "hosts",
    "cold s",
    "warm s",
    "warm floor s",
    "warm/floor",
    "rollback s",
    "rollback floor s",
    "rollback/floor",
    "cmds/host warm",
    "cmds/host rollback",
    "logins/host",
    "shipit peak MiB",
    "ssh private MiB",
];

fn cells(r: &Row) -> [String; 14] {
    let ratio = |a: Duration, b: Duration| format!("{:.2}", a.as_secs_f64() / b.as_secs_f64());
    let shipit_kib = r
        .cold
        .shipit_kib
        .max(r.warm.shipit_kib)
        .max(r.rollback.shipit_kib);
    let ssh_anon_kib = r
        .cold
        .ssh_anon_kib
        .max(r.warm.ssh_anon_kib)
        .max(r.rollback.ssh_anon_kib);
    [
        r.latency_ms.to_string(),
        r.hosts.to_string(),
        secs(r.cold.wall),
        secs(r.warm.wall),
        secs(r.warm_floor),
        ratio(r.warm.wall, r.warm_floor),
        secs(r.rollback.wall),
        secs(r.rollback_floor),
        ratio(r.rollback.wall, r.rollback_floor),
        range(r.warm_commands),
        range(r.rollback_commands),
        format!("{}/{}", range(r.warm_logins), range(r.rollback_logins)),
        mib(shipit_kib),
        mib(ssh_anon_kib),
    ]
}

/// One row as soon as it is measured, on stderr (a long run shows progress
/// and leaves something when cut short).
fn print_row_line(r: &Row) {
    let line: Vec<String> = HEADER
        .iter()
        .zip(cells(r))
        .map(|(h, c)| format!("{h}={c}"))
        .collect();
    eprintln!("fleet bench: {}", line.join(", "));
}

fn print_table(rows: &[Row]) {
    let lines: Vec<[String; 14]> = rows.iter().map(cells).collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].len())
                .chain([HEADER[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let row = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!();
    println!("{}", row(HEADER.to_vec()));
    for l in &lines {
        println!("{}", row(l.iter().map(String::as_str).collect()));
    }
    println!(
        "\ncold/warm/rollback s: wall time of `shipit deploy` (first, then after a commit) and \
         `shipit rollback`. floor: the same host work as one plain `ssh HOST SCRIPT` per host, \
         all hosts at once, through the same proxies. cmds/host: commands started on each \
         host, counted by sshd (`Starting session: command`), min-max over hosts. \
         logins/host: warm/rollback, counted by sshd. shipit peak MiB: the largest ru_maxrss \
         of the three shipit runs (GNU time). ssh private MiB: peak summed RssAnon of shipit's \
         ssh clients (sampled every 50 ms), largest of the three runs. The hosts run on this \
         machine too."
    );
}
