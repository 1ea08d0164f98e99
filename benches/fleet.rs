//! How a deploy scales with the fleet: `shipit deploy` to 1, 10, 50 and 100
//! real sshd hosts on loopback (the test fleet, tests/support/fleet.rs).
//!
//! ```text
//! cargo bench --bench fleet                           # 1, 10, 50, 100 hosts
//! SHIPIT_BENCH_HOSTS=10,50 cargo bench --bench fleet  # other sizes (1..=200)
//! SHIPIT_BENCH_KEEP=1 cargo bench --bench fleet       # keep repos and shipit's logs
//! ```
//!
//! This is a program, not a test: nothing is asserted beyond each deploy
//! succeeding. Cargo builds `target/release/shipit` (the bench profile is
//! the release profile) and this runs it as a user would. Needs OpenSSH
//! (client and server), git and GNU time (`/usr/bin/time`, Debian package
//! `time`; installed with apt-get when missing and running as root).
//!
//! For each fleet size it makes a sample application repository (300
//! files, about 4 MB, 3 commits; the same bytes and commit ids every run),
//! writes a deploy.yml (strategy git, a linked dir and file, a template,
//! cheap restart and smoke_test commands) and runs:
//!
//! - **cold**: the first deploy: every host clones the repository;
//! - **warm**: a second deploy after one more commit;
//! - **floor** (warm work without shipit): after one more commit, one plain
//!   `ssh HOST SCRIPT` per host, all hosts at once, doing what the warm
//!   deploy does on a host (lock, fetch, export, link, template, switch,
//!   restart, smoke test, ledger line, unlock).
//!
//! Columns:
//!
//! - `cold s`, `warm s`, `floor s`: wall time of the whole command;
//! - `cmds/host`: commands the warm deploy started on each host, counted
//!   by sshd (`Starting session: command` in its log), min-max over hosts;
//! - `logins/host`: ssh logins per host in the warm deploy, min-max;
//! - `shipit MiB`: shipit's peak RSS (cold/warm), from `/usr/bin/time -f
//!   %M` (the kernel's `ru_maxrss`: the largest of shipit and the child
//!   processes it waited for, which is shipit itself: its ssh clients are
//!   smaller);
//! - `ssh MiB`: the peak, over the run, of the summed RSS of every `ssh`
//!   client process of this fleet (masters and per-command clients; their
//!   command lines hold the fleet's directory), sampled from /proc every
//!   50 ms (cold/warm). Shared library pages count once per process, so
//!   this overstates what they take together;
//! - `ssh anon MiB`: the same peak for their private memory (`RssAnon`,
//!   warm): closer to what they cost together;
//! - `ssh procs`: the most of those processes alive at once (warm).
//!
//! The repository is reached as a `file://` URL, so hosts clone and fetch
//! through git's pack protocol as from a real server, rather than
//! hard-linking a local path. shipit runs with its default `-j` (50). The
//! fleet's sessions have a `HOME` of their own, so no shell rc file of the
//! user running the bench is read on the hosts.
//!
//! Everything runs on this machine, hosts included: the numbers are
//! shipit's overhead and scaling with the fleet on loopback, not network
//! latency, and they move with whatever else the machine is doing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::deploy_yml::{hosts_yaml, yaml_str};
use support::Fleet;

const SHIPIT: &str = env!("CARGO_BIN_EXE_shipit");
const GNU_TIME: &str = "/usr/bin/time";
const DEFAULT_SIZES: [usize; 4] = [1, 10, 50, 100];
const STAGE: &str = "bench";
/// A deploy that takes longer than this is stuck; the run stops.
const RUN_DEADLINE: Duration = Duration::from_secs(600);
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Sample repository shape: text files (source-like, compressible) and
/// binary assets (incompressible).
const TEXT_FILES: usize = 280;
const BINARY_FILES: usize = 20;

fn main() {
    let sizes = sizes();
    check_tools();
    let work = tempfile::Builder::new()
        .prefix("shipit-bench-")
        .tempdir()
        .expect("cannot create a temporary directory");
    let base = work.path().join("app-base");
    let (files, bytes) = sample_repository(&base);
    eprintln!(
        "fleet bench: shipit {SHIPIT}\nfleet bench: sample repository: {files} files, \
         {:.1} MiB, 3 commits; fleet sizes {sizes:?}",
        bytes as f64 / (1024.0 * 1024.0)
    );

    let mut rows = Vec::new();
    for &n in &sizes {
        let started = Instant::now();
        let row = bench_size(n, &base, work.path());
        eprintln!(
            "fleet bench: {n} host(s) done in {:.0}s",
            started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    print_table(&rows);
    if std::env::var_os("SHIPIT_BENCH_KEEP").is_some() {
        eprintln!(
            "fleet bench: kept {} (shipit's output in project-N/, sshd's in sshd-logs-N/)",
            work.keep().display()
        );
    }
}

/// `SHIPIT_BENCH_HOSTS=10,50`, else the default sizes.
fn sizes() -> Vec<usize> {
    let Ok(text) = std::env::var("SHIPIT_BENCH_HOSTS") else {
        return DEFAULT_SIZES.to_vec();
    };
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
        .collect()
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
    hosts: usize,
    cold: Run,
    warm: Run,
    warm_commands: (usize, usize),
    warm_logins: (usize, usize),
    floor: Duration,
}

/// One shipit run, measured.
struct Run {
    wall: Duration,
    /// Peak RSS of shipit, KiB.
    shipit_kib: u64,
    /// Peak of the summed RSS of the fleet's ssh clients, KiB.
    ssh_kib: u64,
    /// Peak of their summed private memory (`RssAnon`), KiB.
    ssh_anon_kib: u64,
    /// Most ssh clients alive at once.
    ssh_procs: usize,
}

fn bench_size(n: usize, base: &Path, work: &Path) -> Row {
    let fleet = Fleet::start(n);
    let app = work.join(format!("app-{n}"));
    let status = Command::new("cp")
        .arg("-a")
        .arg(base)
        .arg(&app)
        .status()
        .expect("cannot run cp");
    assert!(status.success(), "cannot copy the sample repository");
    let project = write_project(&fleet, &app, work.join(format!("project-{n}")));

    let cold = deploy(&fleet, &project, "cold");
    let before = counts(&fleet);
    commit_changes(&app, 4, 5);
    let warm = deploy(&fleet, &project, "warm");
    let after = counts(&fleet);
    let (commands, logins): (Vec<usize>, Vec<usize>) = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.0 - b.0, a.1 - b.1))
        .unzip();

    commit_changes(&app, 5, 5);
    let floor = floor(&fleet, &app);
    if std::env::var_os("SHIPIT_BENCH_KEEP").is_some() {
        let logs = work.join(format!("sshd-logs-{n}"));
        fs::create_dir_all(&logs).expect("cannot create a log directory");
        for h in fleet.hosts() {
            let _ = fs::copy(&h.log, logs.join(format!("{}.log", h.alias)));
        }
    }
    Row {
        hosts: n,
        cold,
        warm,
        warm_commands: min_max(&commands),
        warm_logins: min_max(&logins),
        floor,
    }
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
fn write_project(fleet: &Fleet, app: &Path, dir: PathBuf) -> PathBuf {
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
        config = yaml_str(&fleet.ssh_config().to_string_lossy()),
        hosts = hosts_yaml(fleet, 6),
    );
    let path = dir.join("deploy.yml");
    fs::write(&path, yml).expect("cannot write deploy.yml");
    path
}

/// Runs `shipit deploy` under GNU time, sampling the fleet's ssh clients
/// until it exits. Panics with shipit's output when the deploy fails.
fn deploy(fleet: &Fleet, config: &Path, what: &str) -> Run {
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
        .args(["--format", "plain", "deploy", STAGE])
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
    let (mut ssh_kib, mut ssh_anon_kib, mut ssh_procs) = (0, 0, 0);
    let status = loop {
        let clients = ssh_clients(&fleet_dir);
        ssh_kib = ssh_kib.max(clients.rss_kib);
        ssh_anon_kib = ssh_anon_kib.max(clients.anon_kib);
        ssh_procs = ssh_procs.max(clients.count);
        if let Some(status) = child.try_wait().expect("cannot wait for shipit") {
            break status;
        }
        if started.elapsed() > RUN_DEADLINE {
            support::procs::kill_tree(child.id());
            let _ = child.wait();
            panic!(
                "the {what} deploy to {} hosts took over {RUN_DEADLINE:?}; its output:\n{}",
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
        "the {what} deploy to {} hosts failed ({status}); its output:\n{output}",
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
        ssh_kib,
        ssh_anon_kib,
        ssh_procs,
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

/// The warm deploy's work on each host, without shipit: one fresh `ssh
/// HOST SCRIPT` per host, all at once. Returns the wall time.
fn floor(fleet: &Fleet, app: &Path) -> Duration {
    let commit = git_out(app, &["rev-parse", "HEAD"]);
    let release = "20990101T000000Z";
    let started = Instant::now();
    let children: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|h| {
            let script = floor_script(&h.deploy_to, &file_url(app), &commit, release, &h.alias);
            Command::new("ssh")
                .arg("-F")
                .arg(fleet.ssh_config())
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

/// What a warm deploy does on a host, as one script: in a `floor/` dir of
/// its own, next to shipit's, fetching into shipit's mirror.
fn floor_script(deploy_to: &Path, url: &str, commit: &str, release: &str, host: &str) -> String {
    let d = deploy_to.display();
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

fn print_table(rows: &[Row]) {
    let header = [
        "hosts",
        "cold s",
        "warm s",
        "floor s",
        "cmds/host",
        "logins/host",
        "shipit MiB cold/warm",
        "ssh MiB cold/warm",
        "ssh anon MiB",
        "ssh procs",
    ];
    let lines: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.hosts.to_string(),
                secs(r.cold.wall),
                secs(r.warm.wall),
                secs(r.floor),
                range(r.warm_commands),
                range(r.warm_logins),
                format!("{}/{}", mib(r.cold.shipit_kib), mib(r.warm.shipit_kib)),
                format!("{}/{}", mib(r.cold.ssh_kib), mib(r.warm.ssh_kib)),
                mib(r.warm.ssh_anon_kib),
                r.warm.ssh_procs.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].len())
                .chain([header[c].len()])
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
    println!("{}", row(header.to_vec()));
    for l in &lines {
        println!("{}", row(l.iter().map(String::as_str).collect()));
    }
    println!(
        "\ncmds/host and logins/host: warm deploy, counted by sshd, min-max over hosts. \
         floor: the warm deploy's host work as one plain `ssh HOST SCRIPT` per host, \
         all at once. ssh MiB: peak summed RSS of the ssh clients (shared pages \
         counted once per process); ssh anon MiB: their private memory (warm). ssh \
         procs: most alive at once (warm). The hosts run on this machine too."
    );
}
