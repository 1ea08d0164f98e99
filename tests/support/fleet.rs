//! A fleet of real OpenSSH `sshd` hosts on loopback addresses 127.0.0.2,
//! 127.0.0.3, ..., each on a free port, for tests that drive shipit over
//! ssh.
//!
//! ```ignore
//! mod support;
//! use support::Fleet;
//!
//! #[tokio::test]
//! async fn runs_on_three_hosts() {
//!     let fleet = Fleet::start(3); // sshd at 127.0.0.2..=4, aliases fleet-1..=3
//!     // Through the library:
//!     let target = SshTarget {
//!         config_file: Some(fleet.ssh_config().to_path_buf()),
//!         ..SshTarget::new("fleet-1")
//!     };
//!     let t = SshTransport::connect(&target, fleet.control_dir()).await.unwrap();
//!     // Or through the binary, with a deploy.yml naming the fleet:
//!     let config = support::deploy_yml::write(fleet.dir(), &fleet, "staging", repo, "");
//!     // shipit -c <config> deploy staging
//!     assert!(fleet.hosts()[0].deploy_to.join("current").exists());
//!     assert_eq!(fleet.hosts()[0].logins(), 1);
//! }
//! ```
//!
//! Every host lets the current user in with the fleet's client key (any
//! local account, in fact: the authorized_keys file is shared) and runs
//! its commands in that user's home directory; `deploy_to` is per host.
//! Everything lives in one temporary directory that goes away with the
//! fleet; dropping the fleet kills every sshd and whatever they started.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::procs;

/// The sshd binary. It must be an absolute path: sshd re-executes itself.
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long one host may take from spawn to answering with its banner.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// How often a host is retried on a new port when another process took the
/// one picked for it before sshd could bind it.
const BIND_ATTEMPTS: usize = 5;

/// A running fleet. See the module docs.
pub struct Fleet {
    dir: TempDir,
    user: String,
    hosts: Vec<FleetHost>,
    host_key: PathBuf,
    host_public_key: String,
    client_key: PathBuf,
    authorized_keys: PathBuf,
    known_hosts: PathBuf,
    ssh_config: PathBuf,
    control_dir: PathBuf,
    /// Appended to every host's sshd_config.
    sshd_extra: String,
    /// Whether this sshd knows `PerSourcePenalties` (OpenSSH 9.8+), which
    /// must be off: every test connects from 127.0.0.1, and failed
    /// handshakes would get that address refused for a while.
    penalties_option: bool,
}

/// One sshd of a [`Fleet`].
#[derive(Debug)]
pub struct FleetHost {
    /// 1-based position in the fleet.
    pub index: usize,
    /// `fleet-N`: a `Host` entry in the fleet's ssh config, so deploy.yml can
    /// name hosts the way users name theirs.
    pub alias: String,
    /// 127.0.0.(N+1).
    pub address: Ipv4Addr,
    pub port: u16,
    /// An empty directory for this host's `deploy_to` (it exists).
    pub deploy_to: PathBuf,
    /// sshd's log (`-E`), at LogLevel VERBOSE.
    pub log: PathBuf,
    /// What sshd printed before its log was set up (bad config and such).
    pub stderr_log: PathBuf,
    pub sshd_config: PathBuf,
    child: Option<Child>,
}

impl Fleet {
    /// Starts `n` sshd hosts and returns once each has answered with its
    /// SSH banner. Panics, saying why (with sshd's log), when one does not
    /// within 10 s, or when sshd is not installed.
    pub fn start(n: usize) -> Fleet {
        Fleet::start_with(n, "")
    }

    /// Like [`Fleet::start`], with `sshd_extra` (sshd_config lines, such
    /// as `MaxSessions 2`) added to every host's configuration.
    pub fn start_with(n: usize, sshd_extra: &str) -> Fleet {
        assert!(
            (1..=200).contains(&n),
            "a fleet has 1 to 200 hosts, not {n}"
        );
        if !Path::new(SSHD).exists() {
            panic!(
                "{SSHD} is missing: install openssh-server (apt-get install openssh-server) \
                 or run scripts/test.sh"
            );
        }
        ensure_privsep_dir();

        let dir = tempfile::Builder::new()
            .prefix("shipit-fleet-")
            .tempdir()
            .expect("cannot create the fleet's temporary directory");
        let root = dir.path().to_path_buf();
        // Sessions get a HOME of their own: the login shell then reads no
        // rc files of the user running the tests (a shell set-up that is
        // slow or takes locks, such as `pyenv init`, would make every
        // command of every test wait on it).
        // One home per host, as real hosts have: `deploy_to: ~/app` lands in
        // a different place on each.
        for index in 1..=n {
            fs::create_dir_all(root.join(format!("home-{index}")))
                .expect("cannot create a host's home");
        }
        assert!(
            !root.to_string_lossy().contains(char::is_whitespace),
            "the temporary directory `{}` holds whitespace; set TMPDIR to a plain path",
            root.display()
        );
        let host_key = root.join("host_ed25519");
        let client_key = root.join("client_ed25519");
        keygen(&host_key, "shipit-fleet-host");
        keygen(&client_key, "shipit-fleet-client");
        let host_public_key = read_public_key(&host_key);
        let authorized_keys = root.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized_keys)
            .expect("cannot write authorized_keys");
        let control_dir = root.join("ctl");
        fs::create_dir(&control_dir).expect("cannot create the control directory");

        let mut fleet = Fleet {
            user: current_user(),
            hosts: Vec::with_capacity(n),
            known_hosts: root.join("known_hosts"),
            ssh_config: root.join("ssh_config"),
            host_key,
            host_public_key,
            client_key,
            authorized_keys,
            control_dir,
            sshd_extra: sshd_extra.to_string(),
            penalties_option: false,
            dir,
        };

        for index in 1..=n {
            let deploy_to = root.join(format!("host-{index}"));
            fs::create_dir(&deploy_to).expect("cannot create deploy_to");
            fleet.hosts.push(FleetHost {
                index,
                alias: format!("fleet-{index}"),
                address: Ipv4Addr::new(127, 0, 0, u8::try_from(index + 1).unwrap()),
                port: 0,
                deploy_to,
                log: root.join(format!("sshd-{index}.log")),
                stderr_log: root.join(format!("sshd-{index}.stderr")),
                sshd_config: root.join(format!("sshd-{index}.conf")),
                child: None,
            });
        }
        fleet.penalties_option = fleet.sshd_knows_penalties();

        // Spawn all, then wait for each: the hosts start in parallel.
        for i in 0..n {
            fleet.launch(i);
        }
        for i in 0..n {
            fleet.wait_until_ready(i);
        }

        fleet.write_known_hosts(&fleet.known_hosts, fleet.hosts.iter());
        fleet.write_ssh_config(&fleet.ssh_config, &fleet.known_hosts, "yes");
        fleet
    }

    pub fn hosts(&self) -> &[FleetHost] {
        &self.hosts
    }

    pub fn hosts_mut(&mut self) -> &mut [FleetHost] {
        &mut self.hosts
    }

    /// The fleet's temporary directory; free for the test's own files too.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Host `index`'s login home (1-based): its sessions' `$HOME`.
    pub fn home(&self, index: usize) -> PathBuf {
        self.dir().join(format!("home-{index}"))
    }

    /// The user every host lets in: whoever runs the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The ssh client config (`ssh -F`): `Host fleet-N` entries, then
    /// `Host *` with the user, the client key, the fleet's known_hosts,
    /// strict host key checking and BatchMode.
    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// Private key the hosts accept (`.pub` next to it).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// Holds `[127.0.0.N]:PORT ssh-ed25519 ...` for every host.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The one host key every host of the fleet uses, `ssh-ed25519 AAAA...`.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// A short, existing directory for ssh control sockets (unix socket
    /// paths must stay under ~100 bytes).
    pub fn control_dir(&self) -> &Path {
        &self.control_dir
    }

    /// Writes, at `name` in the fleet's directory, an ssh config like
    /// [`Fleet::ssh_config`] but reading `known_hosts` and with
    /// `StrictHostKeyChecking strict` (`yes`, `accept-new`, `no`): for tests
    /// of unknown or changed host keys. Returns its path.
    pub fn ssh_config_with(&self, name: &str, known_hosts: &Path, strict: &str) -> PathBuf {
        let path = self.dir().join(name);
        self.write_ssh_config(&path, known_hosts, strict);
        path
    }

    /// Writes a known_hosts file at `name` in the fleet's directory trusting
    /// only `hosts` (give an empty iterator for one that trusts none).
    /// Returns its path.
    pub fn known_hosts_with<'a>(
        &self,
        name: &str,
        hosts: impl IntoIterator<Item = &'a FleetHost>,
    ) -> PathBuf {
        let path = self.dir().join(name);
        self.write_known_hosts(&path, hosts);
        path
    }

    fn write_known_hosts<'a>(&self, path: &Path, hosts: impl IntoIterator<Item = &'a FleetHost>) {
        let text: String = hosts
            .into_iter()
            .map(|h| format!("{} {}\n", h.known_hosts_name(), self.host_public_key))
            .collect();
        fs::write(path, text).expect("cannot write known_hosts");
    }

    fn write_ssh_config(&self, path: &Path, known_hosts: &Path, strict: &str) {
        let mut text = String::from("# Written by the shipit test fleet.\n");
        for h in &self.hosts {
            text.push_str(&format!(
                "Host {}\n  HostName {}\n  Port {}\n",
                h.alias, h.address, h.port
            ));
        }
        text.push_str(&format!(
            "Host *\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {known}\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking {strict}\n  UpdateHostKeys no\n  BatchMode yes\n  \
             PasswordAuthentication no\n  KbdInteractiveAuthentication no\n",
            user = self.user,
            key = self.client_key.display(),
            known = known_hosts.display(),
        ));
        fs::write(path, text).expect("cannot write the ssh config");
    }

    fn sshd_config_text(&self, host: &FleetHost, port: u16, penalties: bool) -> String {
        let mut text = format!(
            "# Written by the shipit test fleet.\n\
             ListenAddress {addr}:{port}\n\
             HostKey {host_key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {auth}\n\
             StrictModes no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             UseDNS no\n\
             X11Forwarding no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             LogLevel VERBOSE\n\
             Subsystem sftp internal-sftp\n\
             SetEnv HOME={home}\n",
            home = self.home(host.index).display(),
            addr = host.address,
            host_key = self.host_key.display(),
            pid = self
                .dir()
                .join(format!("sshd-{}.pid", host.index))
                .display(),
            auth = self.authorized_keys.display(),
        );
        if penalties {
            text.push_str("PerSourcePenalties no\n");
        }
        text.push_str(&self.sshd_extra);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// Asks sshd (`-t`) whether it accepts `PerSourcePenalties`.
    fn sshd_knows_penalties(&self) -> bool {
        let host = &self.hosts[0];
        let probe = self.dir().join("sshd-probe.conf");
        // Any port: `-t` binds nothing.
        let text = self.sshd_config_text(host, 22, true);
        fs::write(&probe, &text).expect("cannot write sshd config");
        let out = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&probe)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run sshd -t");
        if out.status.success() {
            return true;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("PerSourcePenalties"),
            "sshd rejects the fleet's configuration:\n{stderr}\n{text}"
        );
        false
    }

    /// Starts host `i` again after [`FleetHost::stop`] (a crashed server
    /// coming back), on its old port when it is still free, and waits until
    /// it answers. The fleet's ssh config and known_hosts follow it if it
    /// had to move to another port.
    pub fn restart(&mut self, i: usize) {
        self.hosts[i].stop();
        let port = self.hosts[i].port;
        self.launch_on(i, port);
        self.wait_until_ready(i);
        if self.hosts[i].port != port {
            self.write_known_hosts(&self.known_hosts, self.hosts.iter());
            self.write_ssh_config(&self.ssh_config, &self.known_hosts, "yes");
        }
    }

    /// Picks a free port for host `i`, writes its config and spawns sshd.
    fn launch(&mut self, i: usize) {
        let port = free_port(self.hosts[i].address);
        self.launch_on(i, port);
    }

    /// Writes host `i`'s config for `port` and spawns sshd.
    fn launch_on(&mut self, i: usize, port: u16) {
        self.hosts[i].port = port;
        let config = self.sshd_config_text(&self.hosts[i], port, self.penalties_option);
        let host = &mut self.hosts[i];
        fs::write(&host.sshd_config, config).expect("cannot write sshd config");
        // A fresh log per attempt, so the readiness check reads this one.
        fs::write(&host.log, "").expect("cannot create the sshd log");
        let stderr = fs::File::create(&host.stderr_log).expect("cannot create the sshd stderr log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(&host.sshd_config)
            .arg("-E")
            .arg(&host.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
        host.child = Some(child);
    }

    /// Polls until host `i` answers with an SSH banner; relaunches it on a
    /// new port when its port was taken meanwhile; panics with its logs when
    /// it fails or the deadline passes.
    fn wait_until_ready(&mut self, i: usize) {
        let mut attempts = 1;
        let mut deadline = Instant::now() + READY_DEADLINE;
        loop {
            let host = &mut self.hosts[i];
            let addr = SocketAddr::V4(SocketAddrV4::new(host.address, host.port));
            let exited = host
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                // Reaped: its pid may be reused, so it must not be killed later.
                host.child = None;
                let logs = host.logs();
                if logs.contains("Address already in use") && attempts < BIND_ATTEMPTS {
                    attempts += 1;
                    self.launch(i);
                    deadline = Instant::now() + READY_DEADLINE;
                    continue;
                }
                panic!(
                    "sshd for {} ({addr}) exited ({status}) before it was ready:\n{logs}",
                    host.alias
                );
            }
            if answers_with_banner(addr) {
                return;
            }
            if Instant::now() > deadline {
                let logs = host.logs();
                host.stop();
                panic!(
                    "sshd for {} ({addr}) did not answer with an SSH banner within {:?}:\n{logs}",
                    host.alias, READY_DEADLINE
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.stop();
        }
    }
}

impl FleetHost {
    /// How known_hosts names this host: `[127.0.0.N]:PORT`.
    pub fn known_hosts_name(&self) -> String {
        format!("[{}]:{}", self.address, self.port)
    }

    /// The listening sshd's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// sshd's log so far.
    pub fn log_contents(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many lines of sshd's log contain `needle`.
    pub fn count_in_log(&self, needle: &str) -> usize {
        self.log_contents()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Logins so far (each ssh master connection is one).
    pub fn logins(&self) -> usize {
        self.count_in_log("Accepted publickey for ")
    }

    /// Commands started so far (one per `ssh HOST CMD`, multiplexed or not).
    pub fn commands_started(&self) -> usize {
        self.count_in_log("Starting session: command ")
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- {} ---\n{}--- {} ---\n{}",
            self.log.display(),
            self.log_contents(),
            self.stderr_log.display(),
            fs::read_to_string(&self.stderr_log).unwrap_or_default()
        )
    }

    /// Kills this host's sshd and everything it started (connections,
    /// commands): the host goes down, as for a crashed server. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        procs::kill_tree(child.id());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// sshd refuses to start without its privilege separation directory, which
/// the openssh-server package only creates at boot through systemd.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if dir.is_dir() {
        return;
    }
    if let Err(e) = fs::create_dir_all(dir) {
        panic!(
            "sshd needs the directory /run/sshd and it cannot be created ({e}); \
             create it as root (mkdir -p /run/sshd) or run scripts/test.sh"
        );
    }
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run ssh-keygen ({e}): install openssh-client or run scripts/test.sh")
        });
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ssh-ed25519 AAAA...` without the comment.
fn read_public_key(private_key: &Path) -> String {
    let text = fs::read_to_string(private_key.with_extension("pub")).expect("no public key");
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(kind), Some(key)) => format!("{kind} {key}"),
        _ => panic!("unexpected public key file: {text}"),
    }
}

fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("cannot run `id -un`");
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!user.is_empty(), "cannot tell the current user");
    user
}

/// A port that was free on `addr` a moment ago. sshd binds it shortly
/// after; [`Fleet::wait_until_ready`] retries when someone was quicker.
fn free_port(addr: Ipv4Addr) -> u16 {
    let listener = TcpListener::bind((addr, 0))
        .unwrap_or_else(|e| panic!("cannot bind {addr}:0 to find a free port: {e}"));
    listener.local_addr().expect("no local address").port()
}

/// Whether something at `addr` accepts a TCP connection and sends an
/// `SSH-2.0` banner.
fn answers_with_banner(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_err()
    {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < 4096 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.windows(7).any(|w| w == b"SSH-2.0") {
            return true;
        }
    }
    false
}
