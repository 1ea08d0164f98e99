//! `transport: ssh`: one OpenSSH ControlMaster connection per host (through
//! the `openssh` crate), shared by every command run on that host.
//!
//! The system `ssh` client does the work, so everything a user has in their
//! ssh config (aliases, `ProxyJump`, agents, certificates) applies as it
//! would for `ssh HOST`. It always runs with `BatchMode=yes`: no password or
//! passphrase prompt can ever hang a run.
//!
//! shipit starts the master itself (the same `ssh -M -f -N` that openssh's
//! `SessionBuilder` runs) and hands it to openssh with `Session::resume`:
//! that way a connection attempt can be killed when it stalls, which ssh
//! alone never gives up on once the server has sent its banner.
//!
//! Every ssh process shipit starts (the master, each command's client, the
//! master's holder) runs in a process group of its own: a Ctrl-C at the
//! terminal goes to shipit's group alone, so the commands on the hosts
//! finish and report truly while shipit stops and undoes.
//!
//! The master lives only while shipit does: it exits [`CONTROL_PERSIST`]
//! after its last client left, and a holder (a client that opens no
//! session, see [`hold_args`]) stays connected until shipit closes the
//! connection or dies; whatever a killed run still leaves behind is
//! cleaned by the next run (`transport::leftovers`).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openssh::Session;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, Semaphore};

use super::{CommandOutput, Transport, TransportError};
use crate::config::model::{Host, HostKeyChecking, SshSettings};

/// Where and how to connect: `deploy.yml`'s `ssh:` settings merged with the
/// host's own overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct SshTarget {
    /// What ssh is given as the destination; may be an alias from the ssh
    /// config.
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub proxy_jump: Option<String>,
    /// Passed to ssh as `-F`; `None` means ssh's own default
    /// (`~/.ssh/config`).
    pub config_file: Option<PathBuf>,
    /// Rounded down to whole seconds, at least one.
    pub connect_timeout: Duration,
    pub host_key_checking: HostKeyChecking,
}

impl SshTarget {
    /// `host` with shipit's defaults: everything else from the ssh config,
    /// a 10 s connect timeout, strict host key checking.
    pub fn new(host: impl Into<String>) -> SshTarget {
        SshTarget {
            host: host.into(),
            user: None,
            port: None,
            identity_file: None,
            proxy_jump: None,
            config_file: None,
            connect_timeout: Duration::from_secs(10),
            host_key_checking: HostKeyChecking::Strict,
        }
    }

    /// The target for `host` of a stage, with the global `ssh:` settings.
    /// The host's `user` and `port` already carry the global defaults.
    pub fn for_host(host: &Host, ssh: &SshSettings) -> SshTarget {
        SshTarget {
            host: host.name.to_string(),
            user: host.user.clone(),
            port: host.port,
            identity_file: ssh.identity_file.clone(),
            proxy_jump: ssh.proxy_jump.clone(),
            config_file: ssh.config_file.clone(),
            connect_timeout: ssh.connect_timeout,
            host_key_checking: ssh.host_key_checking,
        }
    }
}

/// How often ssh checks that a quiet server is still there (three missed
/// answers end the connection), so a host that vanishes is noticed even
/// between commands. A step notices sooner: at its own time limit.
const SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// How long a master stays up after its last client (the holder included)
/// went away: a master is never left running for long by a run that was
/// killed.
pub const CONTROL_PERSIST: Duration = Duration::from_secs(10);

/// Commands running at once on one host. sshd's `MaxSessions` (10 by
/// default) refuses more sessions per connection; two stay free for
/// ending timed-out commands.
pub const MAX_CONCURRENT_COMMANDS: usize = 8;

/// How long the clean-up of a timed-out command may take on the host.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Unix socket paths hold at most 107 bytes, and ssh first binds the
/// control socket's path plus `.` and 16 random characters.
const MAX_SOCKET_PATH_LEN: usize = 107 - 17;

/// Numbers the control directories this process creates.
static CONTROL_DIRS: AtomicU64 = AtomicU64::new(0);

/// The first line the remote wrapper writes to stderr, before the script
/// starts: the process group of the command, so a timeout can end it.
const PID_MARKER: &[u8] = b"shipit-pid:";

/// Runs scripts on one host over a multiplexed ssh connection.
///
/// Commands may run concurrently; each opens a session on the shared
/// master connection. Beyond [`MAX_CONCURRENT_COMMANDS`] they wait for a
/// free one (their timeout runs while they wait).
#[derive(Debug)]
pub struct SshTransport {
    host: String,
    /// `None` once closed.
    session: Mutex<Option<Arc<Session>>>,
    slots: Semaphore,
    /// Keeps the master up while this transport is open (see
    /// [`hold_args`]); it ends when its stdin closes: on `close`, on drop,
    /// or with shipit.
    holder: Mutex<Option<tokio::process::Child>>,
    control: ControlDir,
}

impl SshTransport {
    /// Opens the master connection to `target`, with its control socket in
    /// a new directory under `control_dir`.
    ///
    /// `control_dir` must exist and be short: unix socket paths are limited
    /// to about 100 bytes, and some 60 are left for it. Every failure (DNS,
    /// TCP, authentication, host key, no answer within
    /// [`connect_deadline`]) is a [`TransportError::Connect`] whose reason
    /// carries ssh's own message and, for host keys, how to trust the key.
    pub async fn connect(
        target: &SshTarget,
        control_dir: &Path,
    ) -> Result<SshTransport, TransportError> {
        let fail = |reason: String| TransportError::Connect {
            host: target.host.clone(),
            reason,
        };
        check_destination(&target.host).map_err(fail)?;
        let control = ControlDir::create(control_dir).map_err(fail)?;

        let args = master_args(target, &control.socket, &control.log);
        tracing::debug!(
            host = %target.host,
            "ssh master: ssh {}",
            args.iter()
                .map(|a| sh_quote(&a.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let connecting = std::time::Instant::now();
        let mut ssh = Command::new("ssh");
        ssh.args(args)
            .stdin(StdStdio::null())
            .stdout(StdStdio::null())
            .stderr(StdStdio::null())
            // A Ctrl-C at the terminal is for shipit, not its connections.
            .process_group(0)
            // Until it has connected and forked, this process is the
            // connection attempt: dropping it on the deadline ends it.
            .kill_on_drop(true);
        let mut child = ssh.spawn().map_err(|e| {
            fail(if e.kind() == io::ErrorKind::NotFound {
                "the `ssh` client is not installed (package openssh-client)".to_string()
            } else {
                format!("cannot run `ssh`: {e}")
            })
        })?;
        let deadline = connect_deadline(target.connect_timeout);
        let status = match tokio::time::timeout(deadline, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(fail(format!("cannot run `ssh`: {e}"))),
            Err(_) => {
                let _ = child.kill().await;
                return Err(fail(format!(
                    "no answer within {}s: the host took the connection but stopped \
                     answering before login completed",
                    deadline.as_secs()
                )));
            }
        };
        tracing::debug!(
            host = %target.host,
            ms = connecting.elapsed().as_millis(),
            ok = status.success(),
            "ssh master: connect attempt ended"
        );
        if !status.success() {
            let log = fs::read_to_string(&control.log).unwrap_or_default();
            return Err(fail(explain_ssh_stderr(target, &log)));
        }
        let session = Session::resume(
            control.socket.clone().into_boxed_path(),
            Some(control.log.clone().into_boxed_path()),
        );
        // Without its holder the master would go after CONTROL_PERSIST of
        // quiet (a long local step, a lock wait); the commands would then
        // fail as if the host had gone, so a failure to start it is one.
        let holder = Command::new("sh")
            .arg("-c")
            .arg(HOLD_SCRIPT)
            .arg("shipit-hold")
            .args(hold_args(&control.socket))
            .stdin(StdStdio::piped())
            .stdout(StdStdio::null())
            .stderr(StdStdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| fail(format!("cannot run `sh` to hold the connection open: {e}")))?;
        Ok(SshTransport {
            host: target.host.clone(),
            session: Mutex::new(Some(Arc::new(session))),
            slots: Semaphore::new(MAX_CONCURRENT_COMMANDS),
            holder: Mutex::new(Some(holder)),
            control,
        })
    }

    /// A client of the master running `script` (see [`remote_command`]) in
    /// a process group of its own; ended when dropped (the command on the
    /// host goes on: see [`SshTransport::kill_remote`]).
    fn client(&self, script: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(client_args(&self.control.socket))
            .arg(remote_command(script))
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    fn session(&self) -> Result<Arc<Session>, TransportError> {
        let guard = self.session.lock().unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or_else(|| TransportError::Io {
            host: self.host.clone(),
            reason: "the connection was closed".to_string(),
        })
    }

    fn io_error(&self, what: &str, e: impl std::fmt::Display) -> TransportError {
        TransportError::Io {
            host: self.host.clone(),
            reason: format!("{what}: {e}"),
        }
    }

    /// [`Transport::run`] and [`Transport::run_streaming`]: the same
    /// command, timeout and kill, with or without someone following stdout;
    /// logged (`SHIPIT_LOG=debug`) as sent, with how it ended.
    async fn run_inner(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        progress: Option<mpsc::UnboundedSender<Vec<u8>>>,
    ) -> Result<CommandOutput, TransportError> {
        tracing::debug!(
            host = %self.host,
            timeout_s = timeout.as_secs(),
            "ssh {}: {}\nstdin: {}",
            self.host,
            remote_command(script),
            crate::logging::stdin_text(stdin)
        );
        let started = std::time::Instant::now();
        let result = self.run_command(script, stdin, timeout, progress).await;
        super::log_finished(&self.host, &result, started.elapsed());
        result
    }

    async fn run_command(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        progress: Option<mpsc::UnboundedSender<Vec<u8>>>,
    ) -> Result<CommandOutput, TransportError> {
        let session = self.session()?;
        let mut stdout = Vec::new();
        let mut stderr = StderrCapture::default();
        let outcome = tokio::time::timeout(timeout, async {
            let _slot = self
                .slots
                .acquire()
                .await
                // Never closed; this only keeps the type honest.
                .map_err(|e| self.io_error("the connection was closed", e))?;
            let mut cmd = self.client(script);
            cmd.stdin(if stdin.is_some() {
                StdStdio::piped()
            } else {
                StdStdio::null()
            })
            .stdout(StdStdio::piped())
            .stderr(StdStdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| self.io_error("cannot start the command", e))?;
            let stdin_pipe = child.stdin.take();
            let stdout_pipe = child.stdout.take();
            let stderr_pipe = child.stderr.take();
            // Written concurrently with reading output, so a large upload
            // cannot deadlock against a full stdout pipe. A command that
            // does not read its stdin makes the write fail; that is fine.
            let feed = async {
                if let (Some(mut pipe), Some(data)) = (stdin_pipe, stdin) {
                    let _ = pipe.write_all(data).await;
                    let _ = pipe.shutdown().await;
                }
            };
            let (_, out, err) = tokio::join!(
                feed,
                read_stdout(stdout_pipe, &mut stdout, progress.as_ref()),
                stderr.read_all(stderr_pipe)
            );
            out.and(err)
                .map_err(|e| self.io_error("reading the command's output failed", e))?;
            Ok(child.wait().await)
        })
        .await;

        let waited = match outcome {
            Ok(Ok(waited)) => waited,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                // The local ssh client is already gone (dropped with the
                // future); the command itself still runs on the host.
                if let Some(pgid) = stderr.pgid {
                    self.kill_remote(pgid).await;
                }
                return Err(TransportError::Timeout {
                    host: self.host.clone(),
                    secs: timeout.as_secs(),
                });
            }
        };
        let status = match waited.map(|s| s.code()) {
            // ssh exits 255 when it failed itself, and when the command did.
            Ok(Some(255)) => {
                if let Err(e) = session.check().await {
                    let reason = match e {
                        openssh::Error::Disconnected => "the connection was lost".to_string(),
                        e => format!("the connection was lost: {}", error_chain(&e)),
                    };
                    return Err(TransportError::Io {
                        host: self.host.clone(),
                        reason,
                    });
                }
                if stderr.pgid.is_none() {
                    // The wrapper never ran: ssh failed before the command,
                    // e.g. the server refused another session.
                    return Err(TransportError::Io {
                        host: self.host.clone(),
                        reason: format!(
                            "cannot start the command: {}",
                            // Without a master, openssh's clients fall back
                            // to a host called `none`; that part is noise.
                            ssh_message_lines(&String::from_utf8_lossy(&stderr.buf), |l| {
                                !l.contains("hostname none")
                            })
                        ),
                    });
                }
                Some(255)
            }
            Ok(code) => code,
            Err(e) => return Err(self.io_error("the command failed", e)),
        };
        Ok(CommandOutput {
            status,
            stdout,
            stderr: stderr.buf,
        })
    }

    /// Ends the process group `pgid` on the host: TERM, then KILL for
    /// whatever is still there after about two seconds. Best effort.
    async fn kill_remote(&self, pgid: u32) {
        let mut cmd = self.client(&kill_script(pgid));
        cmd.stdin(StdStdio::null())
            .stdout(StdStdio::null())
            .stderr(StdStdio::null());
        let _ = tokio::time::timeout(KILL_TIMEOUT, cmd.status()).await;
    }
}

#[async_trait]
impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.host
    }

    /// Runs `script` as `sh -c SCRIPT` on the host (the remote sh sees it
    /// verbatim). On timeout the command's whole process group on the host
    /// is ended, not only the local ssh client.
    ///
    /// ssh cannot tell a command that exited 255 from one killed by a
    /// signal: both are reported as status 255 while the connection is up.
    /// If the connection itself is gone, the result is a
    /// [`TransportError::Io`].
    async fn run(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<CommandOutput, TransportError> {
        self.run_inner(script, stdin, timeout, None).await
    }

    /// Like [`SshTransport::run`], and sends each piece of stdout to
    /// `progress` as ssh delivers it (it is in the returned output too).
    /// `progress` is dropped when this returns, which ends the receiver's
    /// stream; on a timeout it has had whatever arrived before.
    async fn run_streaming(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        progress: mpsc::UnboundedSender<Vec<u8>>,
    ) -> Result<CommandOutput, TransportError> {
        self.run_inner(script, stdin, timeout, Some(progress)).await
    }

    /// Ends the master connection, and with it any command still running;
    /// later calls to `run` fail. A master that is gone already (the host
    /// went away) counts as closed.
    async fn close(&self) -> Result<(), TransportError> {
        let session = {
            let mut guard = self.session.lock().unwrap_or_else(|e| e.into_inner());
            guard.take()
        };
        // Its stdin closed, the holder ends its client and exits.
        drop(self.holder.lock().unwrap_or_else(|e| e.into_inner()).take());
        if session.is_none() {
            return Ok(());
        }
        let out = Command::new("ssh")
            .args(exit_args(&self.control.socket))
            .stdin(StdStdio::null())
            .process_group(0)
            .output()
            .await
            .map_err(|e| self.io_error("cannot run `ssh -O exit`", e))?;
        // The master removes its socket as it exits.
        if !out.status.success() && self.control.socket.exists() {
            return Err(self.io_error(
                "closing the connection failed",
                ssh_message(&String::from_utf8_lossy(&out.stderr)),
            ));
        }
        Ok(())
    }
}

impl Drop for SshTransport {
    /// Ends the master if `close` was not called: it would otherwise stay
    /// up (`ControlPersist=yes`) after shipit exits.
    fn drop(&mut self) {
        let open = self
            .session
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some();
        if open && self.control.socket.exists() {
            use std::os::unix::process::CommandExt as _;
            let _ = std::process::Command::new("ssh")
                .process_group(0)
                .args(exit_args(&self.control.socket))
                .stdin(StdStdio::null())
                .stdout(StdStdio::null())
                .stderr(StdStdio::null())
                .status();
        }
    }
}

/// A directory of its own for one master's control socket and log, removed
/// on drop.
#[derive(Debug)]
struct ControlDir {
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl ControlDir {
    fn create(parent: &Path) -> Result<ControlDir, String> {
        loop {
            let n = CONTROL_DIRS.fetch_add(1, Ordering::Relaxed);
            let dir = parent.join(format!("ssh-{}-{n}", std::process::id()));
            let socket = dir.join("s");
            check_socket_path(&socket)?;
            match fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(ControlDir {
                        log: dir.join("log"),
                        socket,
                        dir,
                    })
                }
                // Left over from an earlier process with the same pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(format!(
                        "cannot create a control directory in `{}`: {e}",
                        parent.display()
                    ))
                }
            }
        }
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// How long a connection attempt may take in all: four times
/// `connect_timeout`. ssh's `ConnectTimeout` covers only reaching the host
/// and its banner, not a host that stalls after it (key exchange, login;
/// twice over with a jump host).
pub fn connect_deadline(connect_timeout: Duration) -> Duration {
    self::connect_timeout(connect_timeout) * 4
}

/// The arguments of the ssh master for `target` (what openssh's
/// `SessionBuilder` passes, too). Options given on the command line win
/// over the ssh config file; what is not set here comes from it.
fn master_args(target: &SshTarget, socket: &Path, log: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |a: &dyn AsRef<std::ffi::OsStr>| args.push(a.as_ref().to_owned());
    push(&"-E");
    push(&log);
    push(&"-S");
    push(&socket);
    for a in ["-M", "-f", "-N", "-o", "BatchMode=yes"] {
        push(&a);
    }
    push(&"-o");
    push(&format!("ControlPersist={}", CONTROL_PERSIST.as_secs()));
    push(&"-o");
    push(&format!(
        "StrictHostKeyChecking={}",
        strict_host_key_checking(target.host_key_checking)
    ));
    push(&"-o");
    push(&format!(
        "ConnectTimeout={}",
        connect_timeout(target.connect_timeout).as_secs()
    ));
    push(&"-o");
    push(&format!(
        "ServerAliveInterval={}",
        SERVER_ALIVE_INTERVAL.as_secs()
    ));
    if let Some(port) = target.port {
        push(&"-p");
        push(&port.to_string());
    }
    if let Some(user) = &target.user {
        push(&"-l");
        push(user);
    }
    if let Some(key) = &target.identity_file {
        // Only that key: agent keys tried first could use up the server's
        // `MaxAuthTries`.
        push(&"-o");
        push(&"IdentitiesOnly=yes");
        push(&"-i");
        push(key);
    }
    if let Some(config) = &target.config_file {
        push(&"-F");
        push(config);
    }
    if let Some(jump) = &target.proxy_jump {
        push(&"-J");
        push(jump);
    }
    push(&"--");
    push(&target.host);
    args
}

/// A client of the master at `socket` that runs the command given after
/// these (what openssh's `raw_command` runs): port 9 (discard) so that it
/// never makes a connection of its own when the master is gone.
fn client_args(socket: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-S".into(), socket.into()];
    args.extend(["-o", "BatchMode=yes", "-T", "-p", "9", "--", "none"].map(OsString::from));
    args
}

/// Runs `ssh "$@"` (the holder, [`hold_args`]) until its own stdin, a pipe
/// from shipit, closes: when the transport is dropped or shipit dies, even
/// by SIGKILL. `read` is a builtin: the holder costs one sh and one ssh.
const HOLD_SCRIPT: &str = "ssh \"$@\" </dev/null & p=$!; read -r _; kill \"$p\" 2>/dev/null";

/// A client of the master at `socket` that stays connected without opening
/// a session (`-O proxy -N`: no shell on the host, no `MaxSessions` slot),
/// which keeps the master from exiting after [`CONTROL_PERSIST`].
fn hold_args(socket: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-S".into(), socket.into()];
    args.extend(["-o", "BatchMode=yes", "-O", "proxy", "-N", "none"].map(OsString::from));
    args
}

/// `ssh -O exit` for the master at `socket`; the destination is ignored.
fn exit_args(socket: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-S".into(), socket.into()];
    args.extend(["-o", "BatchMode=yes", "-O", "exit", "none"].map(OsString::from));
    args
}

/// `accept-new` is openssh's `KnownHosts::Add`: unknown keys are recorded,
/// changed ones still fail.
fn strict_host_key_checking(checking: HostKeyChecking) -> &'static str {
    match checking {
        HostKeyChecking::Strict => "yes",
        HostKeyChecking::AcceptNew => "accept-new",
    }
}

/// ssh takes whole seconds, and `ConnectTimeout=0` would mean none at all.
fn connect_timeout(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

/// ssh reads a destination starting with `-` as an option.
fn check_destination(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host name is empty".to_string());
    }
    if host.starts_with('-') {
        return Err("a host name cannot start with `-`".to_string());
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a host name cannot contain spaces or control characters".to_string());
    }
    Ok(())
}

fn check_socket_path(socket: &Path) -> Result<(), String> {
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH_LEN {
        let dir = socket.parent().and_then(Path::parent).unwrap_or(socket);
        return Err(format!(
            "the control directory `{}` is too long for a unix socket path \
             (the socket would take {len} bytes, at most {MAX_SOCKET_PATH_LEN})",
            dir.display()
        ));
    }
    Ok(())
}

/// Turns what ssh printed when it gave up into a reason, with a hint for
/// the failures that need one.
fn explain_ssh_stderr(target: &SshTarget, stderr: &str) -> String {
    let host = &target.host;
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        // ssh names the exact file and entry: "remove with:" then the command.
        let remove = stderr
            .lines()
            .map(str::trim)
            .skip_while(|l| !l.ends_with("remove with:"))
            .nth(1)
            .filter(|l| l.starts_with("ssh-keygen "))
            .map(str::to_string)
            .unwrap_or_else(|| format!("ssh-keygen -R {}", known_hosts_name(target)));
        let detail = ssh_message_lines(stderr, |l| {
            l.starts_with("Offending ") || l.contains("has changed and you have requested")
        });
        return format!(
            "the host key of `{host}` has changed since it was trusted (a reinstalled \
             server, or someone in the middle); if the change is expected, forget the \
             old key with `{remove}` and trust the new one (ssh: {detail})"
        );
    }
    if stderr.contains("Host key verification failed") || stderr.contains("host key is known for") {
        let keyscan = keyscan_command(target, stderr);
        return format!(
            "host key verification failed: the host key of `{host}` is not in known_hosts \
             and host key checking is strict; after checking its fingerprint, trust it \
             with `{keyscan} >> ~/.ssh/known_hosts` (or by running `ssh {host}` once), \
             or set `host_key_checking: accept-new` under `ssh:` (ssh: {})",
            ssh_message(stderr)
        );
    }
    if stderr.contains("Permission denied (") {
        return format!(
            "authentication failed; check `user` and `identity_file` under `ssh:`, \
             or that the key is loaded in the ssh agent (ssh: {})",
            ssh_message(stderr)
        );
    }
    format!("ssh: {}", ssh_message(stderr))
}

/// How known_hosts names the target as configured: `host` or
/// `[host]:port`.
fn known_hosts_name(target: &SshTarget) -> String {
    match target.port {
        Some(port) if port != 22 => format!("'[{}]:{port}'", target.host),
        _ => target.host.clone(),
    }
}

/// `ssh-keyscan` for the name ssh looked up (after resolving aliases), as
/// in "No ED25519 host key is known for [10.0.0.5]:2222 and ...", else for
/// the target as configured (ssh-keyscan does not read the ssh config).
fn keyscan_command(target: &SshTarget, stderr: &str) -> String {
    let looked_up = stderr
        .split_once("host key is known for ")
        .and_then(|(_, rest)| rest.split_whitespace().next());
    let (host, port) = match looked_up {
        Some(name) => match name
            .strip_prefix('[')
            .and_then(|n| n.split_once("]:"))
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (name.to_string(), None),
        },
        None => (target.host.clone(), target.port),
    };
    match port {
        Some(port) if port != 22 => format!("ssh-keyscan -p {port} {host}"),
        _ => format!("ssh-keyscan {host}"),
    }
}

/// ssh's message on one line: banner art and blank lines dropped.
fn ssh_message(stderr: &str) -> String {
    ssh_message_lines(stderr, |_| true)
}

/// The lines of ssh's message that `keep` selects, joined with `; `.
fn ssh_message_lines(stderr: &str, keep: impl Fn(&str) -> bool) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim())
        .map(|l| l.strip_prefix("ssh: ").unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
        .filter(|l| !l.starts_with("Warning: Permanently added"))
        .filter(|l| keep(l))
        .collect();
    if lines.is_empty() {
        "no message".to_string()
    } else {
        lines.join("; ")
    }
}

/// An openssh error with its sources, which carry the actual message.
fn error_chain(err: &openssh::Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let msg = s.to_string();
        if !msg.is_empty() {
            out.push_str(": ");
            out.push_str(msg.trim());
        }
        source = s.source();
    }
    out
}

/// POSIX single quoting. `!` is quoted apart too, as openssh does, so a
/// csh login shell does not expand history.
fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            '!' => out.push_str("'\\!'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The command line sent to the host for `script`; sshd hands it to the
/// login shell.
///
/// The login shell `exec`s sh, so sh keeps the session leader's pid, which
/// sshd made the process group of the whole command. The wrapper reports
/// that pid on stderr (stripped again by [`StderrCapture`]) and `exec`s
/// `sh -c SCRIPT`, which sees the script verbatim with `$0` = `sh`.
fn remote_command(script: &str) -> String {
    let wrapper = "echo \"shipit-pid:$$\" >&2; exec sh -c \"$1\"";
    format!(
        "exec sh -c {} shipit {}",
        sh_quote(wrapper),
        sh_quote(script)
    )
}

/// Ends process group `pgid`: TERM, then KILL if it is still there after
/// about two seconds. `kill -SIG -PGID` is the spelling dash, bash and
/// busybox all accept.
fn kill_script(pgid: u32) -> String {
    format!(
        "kill -TERM -{pgid} 2>/dev/null || exit 0; i=0; \
         while [ $i -lt 20 ] && kill -0 -{pgid} 2>/dev/null; do sleep 0.1; i=$((i+1)); done; \
         kill -KILL -{pgid} 2>/dev/null; exit 0"
    )
}

/// Reads the command's stdout into `buf`, passing each piece on to
/// `progress` as it arrives. A receiver that has gone away only stops the
/// passing on, not the reading.
async fn read_stdout<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    buf: &mut Vec<u8>,
    progress: Option<&mpsc::UnboundedSender<Vec<u8>>>,
) -> io::Result<()> {
    let Some(mut pipe) = pipe else {
        return Ok(());
    };
    let mut chunk = [0u8; 8192];
    loop {
        let n = pipe.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = progress {
            let _ = p.send(chunk[..n].to_vec());
        }
    }
}

/// The command's stderr, minus the wrapper's pid line, which it records.
#[derive(Debug, Default)]
struct StderrCapture {
    buf: Vec<u8>,
    pgid: Option<u32>,
}

impl StderrCapture {
    async fn read_all<R: AsyncRead + Unpin>(&mut self, pipe: Option<R>) -> io::Result<()> {
        let Some(mut pipe) = pipe else {
            return Ok(());
        };
        let mut chunk = [0u8; 8192];
        loop {
            let n = pipe.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            self.push(&chunk[..n]);
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.pgid.is_none() {
            self.take_marker();
        }
    }

    /// Finds the first complete marker line (a login shell's rc file may
    /// have printed before it) and removes it.
    fn take_marker(&mut self) {
        let mut start = 0;
        while start < self.buf.len() {
            let end = match self.buf[start..].iter().position(|&b| b == b'\n') {
                Some(i) => start + i,
                // An incomplete line: wait for more.
                None => return,
            };
            let line = &self.buf[start..end];
            if let Some(pid) = line
                .strip_prefix(PID_MARKER)
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| digits.parse::<u32>().ok())
            {
                self.pgid = Some(pid);
                self.buf.drain(start..=end);
                return;
            }
            start = end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget::new("web-1")
    }

    fn args(target: &SshTarget) -> Vec<String> {
        master_args(
            target,
            Path::new("/c/ssh-1-0/s"),
            Path::new("/c/ssh-1-0/log"),
        )
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
    }

    #[test]
    fn the_master_runs_in_batch_mode_and_leaves_the_rest_to_the_ssh_config() {
        assert_eq!(
            args(&target()).join(" "),
            "-E /c/ssh-1-0/log -S /c/ssh-1-0/s -M -f -N -o BatchMode=yes \
             -o ControlPersist=10 -o StrictHostKeyChecking=yes -o ConnectTimeout=10 \
             -o ServerAliveInterval=15 -- web-1"
        );
    }

    #[test]
    fn the_master_gets_every_setting_given() {
        let t = SshTarget {
            host: "web-1".to_string(),
            user: Some("deploy".to_string()),
            port: Some(2222),
            identity_file: Some(PathBuf::from("/keys/deploy key")),
            proxy_jump: Some("bastion.acme.com".to_string()),
            config_file: Some(PathBuf::from("/etc/shipit/ssh_config")),
            connect_timeout: Duration::from_millis(2500),
            host_key_checking: HostKeyChecking::AcceptNew,
        };
        let args = args(&t);
        let tail = &args[args
            .iter()
            .position(|a| a == "StrictHostKeyChecking=accept-new")
            .unwrap()..];
        assert_eq!(
            tail,
            [
                "StrictHostKeyChecking=accept-new",
                "-o",
                "ConnectTimeout=2",
                "-o",
                "ServerAliveInterval=15",
                "-p",
                "2222",
                "-l",
                "deploy",
                "-o",
                "IdentitiesOnly=yes",
                "-i",
                "/keys/deploy key",
                "-F",
                "/etc/shipit/ssh_config",
                "-J",
                "bastion.acme.com",
                "--",
                "web-1",
            ]
        );
    }

    #[test]
    fn host_key_checking_maps_to_ssh_s_words() {
        assert_eq!(strict_host_key_checking(HostKeyChecking::Strict), "yes");
        assert_eq!(
            strict_host_key_checking(HostKeyChecking::AcceptNew),
            "accept-new"
        );
    }

    #[test]
    fn connect_timeout_is_whole_seconds_and_never_zero() {
        for (given, want) in [(0, 1), (300, 1), (1000, 1), (2500, 2), (10_000, 10)] {
            assert_eq!(
                connect_timeout(Duration::from_millis(given)),
                Duration::from_secs(want),
                "{given}ms"
            );
        }
    }

    #[test]
    fn the_connect_deadline_leaves_room_for_login_and_a_jump_host() {
        assert_eq!(
            connect_deadline(Duration::from_secs(10)),
            Duration::from_secs(40)
        );
        assert_eq!(connect_deadline(Duration::ZERO), Duration::from_secs(4));
    }

    #[test]
    fn exit_names_the_socket() {
        let args: Vec<String> = exit_args(Path::new("/c/s"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(args.join(" "), "-S /c/s -o BatchMode=yes -O exit none");
    }

    #[test]
    fn control_dirs_are_distinct_and_removed_on_drop() {
        let parent = std::env::temp_dir();
        let a = ControlDir::create(&parent).unwrap();
        let b = ControlDir::create(&parent).unwrap();
        assert_ne!(a.dir, b.dir);
        assert!(a.dir.is_dir() && b.dir.is_dir());
        assert_eq!(a.socket.parent(), Some(a.dir.as_path()));
        let dir = a.dir.clone();
        drop(a);
        assert!(!dir.exists());
    }

    #[test]
    fn destinations_that_ssh_would_misread_are_refused() {
        assert!(check_destination("web-1.acme.internal").is_ok());
        assert!(check_destination("fleet-1").is_ok());
        for bad in ["", "-oProxyCommand=evil", "web 1", "web\n1"] {
            assert!(check_destination(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn long_control_dirs_are_refused() {
        let long = PathBuf::from(format!("/{}", "d".repeat(80)));
        let err = ControlDir::create(&long).unwrap_err();
        assert!(err.contains("too long for a unix socket path"), "{err}");
        assert!(err.contains(&format!("`{}`", long.display())), "{err}");
        assert!(check_socket_path(Path::new("/tmp/shipit-abc123/ctl/ssh-1234567-0/s")).is_ok());
    }

    #[test]
    fn unknown_host_key_says_how_to_trust_it() {
        let mut t = target();
        t.port = Some(2222);
        let stderr = "No ED25519 host key is known for [10.0.0.5]:2200 and you have requested \
                      strict checking.\r\nHost key verification failed.\r\n";
        let reason = explain_ssh_stderr(&t, stderr);
        assert!(
            reason.starts_with("host key verification failed"),
            "{reason}"
        );
        // The address ssh resolved the alias to, not the alias.
        assert!(
            reason.contains("`ssh-keyscan -p 2200 10.0.0.5 >> ~/.ssh/known_hosts`"),
            "{reason}"
        );
        assert!(reason.contains("accept-new"), "{reason}");
        assert!(
            reason.ends_with("; Host key verification failed.)"),
            "{reason}"
        );

        let reason = explain_ssh_stderr(&t, "Host key verification failed.\n");
        assert!(reason.contains("`ssh-keyscan -p 2222 web-1 >>"), "{reason}");
        let stderr = "No ED25519 host key is known for web-1 and you have requested strict";
        let reason = explain_ssh_stderr(&target(), stderr);
        assert!(reason.contains("`ssh-keyscan web-1 >>"), "{reason}");
    }

    #[test]
    fn changed_host_key_says_how_to_forget_the_old_one() {
        let stderr = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
                      @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
                      @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
                      IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
                      Add correct host key in /root/.ssh/known_hosts to get rid of this message.\n\
                      Offending ED25519 key in /root/.ssh/known_hosts:3\n  \
                      remove with:\n  \
                      ssh-keygen -f \"/root/.ssh/known_hosts\" -R \"[10.0.0.5]:2200\"\n\
                      Host key for [10.0.0.5]:2200 has changed and you have requested strict checking.\n\
                      Host key verification failed.\n";
        let reason = explain_ssh_stderr(&target(), stderr);
        assert_eq!(
            reason,
            "the host key of `web-1` has changed since it was trusted (a reinstalled server, \
             or someone in the middle); if the change is expected, forget the old key with \
             `ssh-keygen -f \"/root/.ssh/known_hosts\" -R \"[10.0.0.5]:2200\"` and trust the \
             new one (ssh: Offending ED25519 key in /root/.ssh/known_hosts:3; Host key for \
             [10.0.0.5]:2200 has changed and you have requested strict checking.)"
        );
        // Without ssh's own advice, the name as configured.
        let short = "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\n";
        let mut t = target();
        t.port = Some(2222);
        let reason = explain_ssh_stderr(&t, short);
        assert!(
            reason.contains("`ssh-keygen -R '[web-1]:2222'`"),
            "{reason}"
        );
    }

    #[test]
    fn other_ssh_failures_keep_ssh_s_words_on_one_line() {
        let reason = explain_ssh_stderr(
            &target(),
            "ssh: connect to host web-1 port 22: Connection refused\n",
        );
        assert_eq!(
            reason,
            "ssh: connect to host web-1 port 22: Connection refused"
        );
        let reason = explain_ssh_stderr(
            &target(),
            "Warning: Permanently added 'web-1' (ED25519) to the list of known hosts.\n\
             deploy@web-1: Permission denied (publickey).\n",
        );
        assert!(reason.starts_with("authentication failed"), "{reason}");
        assert!(
            reason.ends_with("(ssh: deploy@web-1: Permission denied (publickey).)"),
            "{reason}"
        );
        assert_eq!(explain_ssh_stderr(&target(), "\n"), "ssh: no message");
    }

    #[test]
    fn quoting_survives_a_posix_shell() {
        for s in ["plain", "", "it's", "a!b", "$HOME `id` \"q\" \\ \n;|&*"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    /// What the login shell does with the command line: run it with
    /// `sh -c` here and check the script arrives verbatim, after the pid.
    #[test]
    fn remote_command_runs_the_script_verbatim_and_reports_its_pid() {
        let script = "printf '%s|' \"$0\" 'it'\\''s' \"a!b\"; echo err >&2; exit 3";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(remote_command(script))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "sh|it's|a!b|");
        let mut capture = StderrCapture::default();
        capture.push(&out.stderr);
        assert!(
            capture.pgid.is_some(),
            "{:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(capture.buf, b"err\n");
    }

    #[test]
    fn the_pid_marker_is_found_across_chunks_and_after_rc_noise() {
        let mut c = StderrCapture::default();
        c.push(b"welcome from .bashrc\nshipit-p");
        assert_eq!(c.pgid, None);
        c.push(b"id:4242\nreal err");
        assert_eq!(c.pgid, Some(4242));
        c.push(b"or\nshipit-pid:1\n");
        assert_eq!(c.pgid, Some(4242));
        assert_eq!(c.buf, b"welcome from .bashrc\nreal error\nshipit-pid:1\n");
    }

    #[test]
    fn a_marker_without_digits_is_kept_as_output() {
        let mut c = StderrCapture::default();
        c.push(b"shipit-pid:x\n");
        assert_eq!(c.pgid, None);
        assert_eq!(c.buf, b"shipit-pid:x\n");
    }

    #[test]
    fn kill_script_signals_the_group_and_is_valid_sh() {
        let s = kill_script(999_999);
        assert!(s.starts_with("kill -TERM -999999"), "{s}");
        assert!(s.contains("kill -KILL -999999"), "{s}");
        // No such group: it must still exit 0, quickly.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&s)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
    }
}
