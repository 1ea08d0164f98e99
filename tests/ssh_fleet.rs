//! The ssh transport against real sshd hosts (see tests/support/fleet.rs).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shipit::config::model::HostKeyChecking;
use shipit::transport::ssh::{SshTarget, SshTransport};
use shipit::transport::{CommandOutput, Transport, TransportError};
use support::{Fleet, FleetHost};

const LIMIT: Duration = Duration::from_secs(20);

fn target(host: &str, config: &Path, checking: HostKeyChecking) -> SshTarget {
    SshTarget {
        config_file: Some(config.to_path_buf()),
        connect_timeout: Duration::from_secs(5),
        host_key_checking: checking,
        ..SshTarget::new(host)
    }
}

async fn connect(fleet: &Fleet, host: &FleetHost) -> SshTransport {
    let t = target(&host.alias, fleet.ssh_config(), HostKeyChecking::Strict);
    SshTransport::connect(&t, fleet.control_dir())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", host.logs()))
}

async fn run(t: &SshTransport, script: &str) -> CommandOutput {
    t.run(script, None, LIMIT)
        .await
        .unwrap_or_else(|e| panic!("`{script}` on {}: {e}", t.host()))
}

/// `client_ip client_port server_ip server_port`, as sshd tells the command.
fn ssh_connection(out: &CommandOutput) -> (String, u16, String, u16) {
    assert!(out.success(), "{out:?}");
    let text = out.stdout_str();
    let f: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(f.len(), 4, "SSH_CONNECTION = {text:?}");
    (
        f[0].to_string(),
        f[1].parse().unwrap(),
        f[2].to_string(),
        f[3].parse().unwrap(),
    )
}

/// Runs `script` on every transport at once; the outputs in the same order.
async fn run_everywhere(transports: &[Arc<SshTransport>], script: &str) -> Vec<CommandOutput> {
    let tasks: Vec<_> = transports
        .iter()
        .map(|t| {
            let t = Arc::clone(t);
            let script = script.to_string();
            tokio::spawn(async move { run(&t, &script).await })
        })
        .collect();
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.expect("the command task panicked"));
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hosts_answer_in_parallel_each_over_one_reused_connection() {
    let fleet = Fleet::start(5);

    let started = Instant::now();
    let connecting: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|h| {
            let t = target(&h.alias, fleet.ssh_config(), HostKeyChecking::Strict);
            let dir = fleet.control_dir().to_path_buf();
            tokio::spawn(async move { SshTransport::connect(&t, &dir).await })
        })
        .collect();
    let mut transports = Vec::new();
    for (task, host) in connecting.into_iter().zip(fleet.hosts()) {
        let t = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", host.logs()));
        assert_eq!(t.host(), host.alias);
        transports.push(Arc::new(t));
    }

    let first = run_everywhere(&transports, "printf %s \"$SSH_CONNECTION\"").await;
    let second = run_everywhere(&transports, "printf %s \"$SSH_CONNECTION\"").await;
    for ((host, a), b) in fleet.hosts().iter().zip(&first).zip(&second) {
        let (client_ip, client_port, server_ip, server_port) = ssh_connection(a);
        // The answer came from this host, not another one of the fleet.
        assert_eq!(server_ip, host.address.to_string(), "{}", host.alias);
        assert_eq!(server_port, host.port, "{}", host.alias);
        assert_eq!(client_ip, "127.0.0.1");
        // Same client port: the second command rode the same TCP
        // connection (the ControlMaster), not a new login.
        assert_eq!(
            ssh_connection(b),
            (client_ip, client_port, server_ip, server_port)
        );
    }
    // Ten commands on five hosts, each with a connect, well within what a
    // serial run with fresh logins would take.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    for t in &transports {
        t.close().await.unwrap();
    }
    for host in fleet.hosts() {
        assert_eq!(host.logins(), 1, "{}", host.logs());
        assert_eq!(host.commands_started(), 2, "{}", host.logs());
    }
}

#[tokio::test]
async fn output_status_and_stdin_come_back_intact() {
    let fleet = Fleet::start(1);
    let t = connect(&fleet, &fleet.hosts()[0]).await;

    let out = run(&t, "echo out; echo err >&2; exit 3").await;
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout_str(), "out\n");
    // Nothing of the transport's own bookkeeping leaks into stderr.
    assert_eq!(out.stderr_str(), "err\n");

    // The script reaches sh verbatim: quotes, `!`, `$`, newlines.
    let script = "x='it'\\''s'; printf '%s|' \"$x\" \"a!b\" '$HOME'\nprintf '%s' \"$0\"";
    let out = run(&t, script).await;
    assert_eq!(out.stdout_str(), "it's|a!b|$HOME|sh");

    // Statuses openssh would otherwise read as its own errors.
    let out = run(&t, "no-such-command-shipit").await;
    assert_eq!(out.status, Some(127));
    assert!(out.stderr_str().contains("not found"), "{out:?}");
    let out = run(&t, "echo partial; exit 255").await;
    assert_eq!(out.status, Some(255));
    assert_eq!(out.stdout_str(), "partial\n");

    let out = t
        .run("cat; echo; echo done >&2", Some(b"hello\nworld"), LIMIT)
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "hello\nworld\n");
    assert_eq!(out.stderr_str(), "done\n");

    // Big enough to fill every pipe on the way, in both directions.
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let out = t.run("cat", Some(&big), LIMIT).await.unwrap();
    assert!(out.success(), "{:?}", out.stderr_str());
    assert!(out.stdout == big, "{} bytes back", out.stdout.len());

    // Without stdin the command reads end-of-file, not a hang.
    let out = run(&t, "cat; echo eof").await;
    assert_eq!(out.stdout_str(), "eof\n");

    // The command runs in the login user's home directory (the account's,
    // from the passwd database: the fleet gives sessions another `HOME`).
    let out = run(
        &t,
        "[ \"$(pwd)\" = \"$(getent passwd \"$(id -un)\" | cut -d: -f6)\" ] && echo home",
    )
    .await;
    assert_eq!(out.stdout_str(), "home\n");

    t.close().await.unwrap();
    assert_eq!(fleet.hosts()[0].logins(), 1);
}

#[tokio::test]
async fn a_hung_command_times_out_and_is_killed_on_the_host() {
    let fleet = Fleet::start(1);
    let host = &fleet.hosts()[0];
    let t = connect(&fleet, host).await;
    let pidfile = host.deploy_to.join("sleep.pid");

    let started = Instant::now();
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let err = t
        .run(&script, None, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Timeout { host, secs: 1 } if host == "fleet-1"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "`fleet-1` did not finish within 1s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The fleet runs on this machine, so the host's processes are ours to
    // see: the background `sleep` went with its process group.
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while support::procs::is_alive(pid) {
        assert!(Instant::now() < deadline, "sleep ({pid}) still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The connection survived the timeout.
    assert_eq!(
        run(&t, "echo still here").await.stdout_str(),
        "still here\n"
    );
    t.close().await.unwrap();
}

#[tokio::test]
async fn an_unknown_host_key_is_refused_with_advice() {
    let fleet = Fleet::start(1);
    let host = &fleet.hosts()[0];
    let empty = fleet.known_hosts_with("known_hosts_empty", []);
    let config = fleet.ssh_config_with("ssh_config_unknown", &empty, "yes");

    let t = target(&host.alias, &config, HostKeyChecking::Strict);
    let err = SshTransport::connect(&t, fleet.control_dir())
        .await
        .unwrap_err();
    let TransportError::Connect { host: name, reason } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(name, "fleet-1");
    assert!(reason.contains("host key"), "{reason}");
    // For the address the alias stands for: ssh-keyscan reads no ssh config.
    let keyscan = format!(
        "`ssh-keyscan -p {} {} >> ~/.ssh/known_hosts`",
        host.port, host.address
    );
    assert!(reason.contains(&keyscan), "{reason}");
    assert!(reason.contains("accept-new"), "{reason}");
    assert!(reason.contains("Host key verification failed"), "{reason}");
    assert_eq!(host.logins(), 0);
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "");
}

#[tokio::test]
async fn accept_new_trusts_an_unknown_host_and_records_its_key() {
    let fleet = Fleet::start(1);
    let host = &fleet.hosts()[0];
    let known = fleet.known_hosts_with("known_hosts_new", []);
    // The config says strict; shipit's `host_key_checking` wins.
    let config = fleet.ssh_config_with("ssh_config_new", &known, "yes");

    let t = target(&host.alias, &config, HostKeyChecking::AcceptNew);
    let transport = SshTransport::connect(&t, fleet.control_dir())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run(&transport, "echo ok").await.stdout_str(), "ok\n");
    transport.close().await.unwrap();

    let recorded = std::fs::read_to_string(&known).unwrap();
    assert!(
        recorded.contains(&host.known_hosts_name()) && recorded.contains(fleet.host_public_key()),
        "{recorded}"
    );
}

#[tokio::test]
async fn a_changed_host_key_is_refused_even_with_accept_new() {
    let fleet = Fleet::start(1);
    let host = &fleet.hosts()[0];
    let known = fleet.dir().join("known_hosts_changed");
    // Some other ed25519 key recorded for this host.
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    std::fs::write(&known, format!("{} {other}\n", host.known_hosts_name())).unwrap();
    let config = fleet.ssh_config_with("ssh_config_changed", &known, "yes");

    let t = target(&host.alias, &config, HostKeyChecking::AcceptNew);
    let err = SshTransport::connect(&t, fleet.control_dir())
        .await
        .unwrap_err();
    let reason = err.to_string();
    assert!(reason.contains("has changed"), "{reason}");
    // ssh's own advice, naming the file and the entry to remove.
    let remove = format!(
        "`ssh-keygen -f \"{}\" -R \"{}\"`",
        known.display(),
        host.known_hosts_name()
    );
    assert!(reason.contains(&remove), "{reason}");
    assert!(!reason.contains("@@@"), "{reason}");
}

#[tokio::test]
async fn a_host_that_is_down_fails_to_connect_and_one_that_dies_fails_its_command() {
    let mut fleet = Fleet::start(2);
    let alive = connect(&fleet, &fleet.hosts()[1]).await;
    fleet.hosts_mut()[0].stop();
    fleet.hosts_mut()[1].stop();

    let down = &fleet.hosts()[0];
    let t = target(&down.alias, fleet.ssh_config(), HostKeyChecking::Strict);
    let err = SshTransport::connect(&t, fleet.control_dir())
        .await
        .unwrap_err();
    let TransportError::Connect { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("Connection refused"), "{reason}");

    let err = alive.run("true", None, LIMIT).await.unwrap_err();
    assert!(matches!(err, TransportError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("lost `fleet-2`: the connection was lost"),
        "{err}"
    );
    // Nothing left to close: fine, and quick.
    alive.close().await.unwrap();
}

#[tokio::test]
async fn a_closed_transport_refuses_commands() {
    let fleet = Fleet::start(1);
    let t = connect(&fleet, &fleet.hosts()[0]).await;
    t.close().await.unwrap();
    let err = t.run("true", None, LIMIT).await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    // Closing twice is fine.
    t.close().await.unwrap();
    // The master is gone, and its control directory once dropped.
    let dir = fleet.control_dir().to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !support::procs::with_cmdline_containing(&dir).is_empty() {
        assert!(Instant::now() < deadline, "the master outlived close()");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(t);
    assert_eq!(std::fs::read_dir(fleet.control_dir()).unwrap().count(), 0);
}

#[tokio::test]
async fn dropping_a_transport_without_closing_ends_its_master() {
    let fleet = Fleet::start(1);
    let t = connect(&fleet, &fleet.hosts()[0]).await;
    run(&t, "true").await;
    let dir = fleet.control_dir().to_string_lossy().into_owned();
    // The master (`ssh -M`) and the client that holds it open.
    let ssh = support::procs::with_cmdline_containing(&dir);
    let masters: Vec<u32> = ssh
        .iter()
        .copied()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"-M"))
        })
        .collect();
    assert_eq!(masters.len(), 1, "{ssh:?}");
    drop(t);
    let deadline = Instant::now() + Duration::from_secs(5);
    while ssh.iter().any(|&p| support::procs::is_alive(p)) {
        assert!(
            Instant::now() < deadline,
            "the master or its holder outlived its transport"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read_dir(fleet.control_dir()).unwrap().count(), 0);
}

#[test]
fn the_fleet_ssh_config_works_for_plain_ssh() {
    let fleet = Fleet::start(2);
    for host in fleet.hosts() {
        let out = std::process::Command::new("ssh")
            .arg("-F")
            .arg(fleet.ssh_config())
            .arg(&host.alias)
            .arg("printf %s \"$SSH_CONNECTION\"")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            host.logs()
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.ends_with(&format!(" {} {}", host.address, host.port)),
            "{text}"
        );
        assert_eq!(host.commands_started(), 1);
    }
}

#[test]
fn dropping_the_fleet_ends_every_sshd() {
    let fleet = Fleet::start(3);
    let pids: Vec<u32> = fleet.hosts().iter().filter_map(FleetHost::pid).collect();
    let addrs: Vec<_> = fleet.hosts().iter().map(|h| (h.address, h.port)).collect();
    assert_eq!(pids.len(), 3);
    drop(fleet);
    for pid in pids {
        assert!(!support::procs::is_alive(pid), "sshd {pid} survived");
    }
    for addr in addrs {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr:?} still answers"
        );
    }
}

#[tokio::test]
async fn a_deploy_yml_for_the_fleet_reaches_its_hosts() {
    let fleet = Fleet::start(2);
    let path = support::deploy_yml::write(
        fleet.dir(),
        &fleet,
        "staging",
        "git@example.invalid:acme/shop.git",
        "",
    );
    let config = shipit::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.ssh.config_file.as_deref(), Some(fleet.ssh_config()));
    assert_eq!(config.ssh.host_key_checking, HostKeyChecking::Strict);
    let stage = config.stage("staging").expect("stage `staging`");
    assert_eq!(stage.hosts.len(), 2);
    for (host, fleet_host) in stage.hosts.iter().zip(fleet.hosts()) {
        assert_eq!(host.name, fleet_host.alias);
        assert_eq!(Path::new(&host.deploy_to), fleet_host.deploy_to);
        let target = SshTarget::for_host(host, &config.ssh);
        let t = SshTransport::connect(&target, fleet.control_dir())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let out = run(&t, &format!("cd {} && pwd", host.deploy_to)).await;
        assert_eq!(out.stdout_str().trim_end(), host.deploy_to);
        t.close().await.unwrap();
    }
}

/// A refused session must not pass for a command that exited 255.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_the_server_refuses_is_a_transport_error() {
    let fleet = Fleet::start_with(1, "MaxSessions 2");
    let t = Arc::new(connect(&fleet, &fleet.hosts()[0]).await);
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let t = Arc::clone(&t);
            tokio::spawn(async move { t.run(&format!("sleep 1; echo {i}"), None, LIMIT).await })
        })
        .collect();
    let (mut ran, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(out) => {
                assert!(out.success(), "{out:?}");
                ran += 1;
            }
            Err(TransportError::Io { reason, .. }) => {
                assert!(reason.starts_with("cannot start the command"), "{reason}");
                assert!(reason.contains("refused"), "{reason}");
                assert!(!reason.contains("hostname none"), "{reason}");
                refused += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(ran >= 2 && refused >= 1, "{ran} ran, {refused} refused");
}

/// More commands than sshd's default `MaxSessions` (10) at once: they
/// queue for a session instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_commands_at_once_on_one_host_wait_for_a_session() {
    let fleet = Fleet::start(1);
    let t = Arc::new(connect(&fleet, &fleet.hosts()[0]).await);
    let transports = vec![t; 16];
    let outputs = run_everywhere(&transports, "sleep 0.3; echo done").await;
    for out in outputs {
        assert_eq!(out.stdout_str(), "done\n", "{out:?}");
    }
    assert_eq!(fleet.hosts()[0].logins(), 1);
}

/// A host that accepts the connection and sends its banner, then stalls:
/// ssh alone would wait forever.
#[tokio::test]
async fn a_host_that_stalls_during_login_fails_within_the_connect_deadline() {
    let fleet = Fleet::start(1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stall = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        std::io::Write::write_all(&mut conn, b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        // Holds the connection open, silent, until the client gives up.
        let _ = std::io::Read::read_to_end(&mut conn, &mut Vec::new());
    });

    let mut t = target("127.0.0.1", fleet.ssh_config(), HostKeyChecking::AcceptNew);
    t.port = Some(port);
    t.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = SshTransport::connect(&t, fleet.control_dir())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.to_string().contains("no answer within 4s"), "{err}");
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    // The attempt was ended, not left behind: the stalling server sees the
    // connection close, and no ssh is left running for it.
    stall.join().unwrap();
    let dir = fleet.control_dir().to_string_lossy().into_owned();
    assert_eq!(
        support::procs::with_cmdline_containing(&dir),
        Vec::<u32>::new()
    );
    assert_eq!(std::fs::read_dir(fleet.control_dir()).unwrap().count(), 0);
}

/// stdout reaches a `run_streaming` caller while the command still runs:
/// the script cannot finish until the test, having seen its first line,
/// creates the file it waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_streaming_delivers_stdout_while_the_command_runs() {
    let fleet = Fleet::start(1);
    let host = &fleet.hosts()[0];
    let t = Arc::new(connect(&fleet, host).await);
    let go = host.deploy_to.join("go");
    // Fed on stdin to `sh -s`, as the executor sends a phase. The wait is
    // bounded so a transport that holds stdout back fails the test below
    // instead of hanging it.
    let script = format!(
        "echo first\n\
         i=0; while [ ! -e {go} ]; do i=$((i+1)); [ $i -lt 300 ] || exit 9; sleep 0.05; done\n\
         echo second\n",
        go = go.display()
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let running = {
        let t = Arc::clone(&t);
        tokio::spawn(async move {
            t.run_streaming("exec sh -s", Some(script.as_bytes()), LIMIT, tx)
                .await
        })
    };

    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no stdout while the command ran")
        .expect("the stream ended before any stdout");
    assert_eq!(first, b"first\n");
    assert!(!running.is_finished());
    std::fs::write(&go, "").unwrap();

    let mut streamed = first;
    while let Some(chunk) = rx.recv().await {
        streamed.extend(chunk);
    }
    let out = running.await.unwrap().unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "first\nsecond\n");
    assert_eq!(streamed, out.stdout);
    assert_eq!(out.stderr_str(), "");

    // The same timeout as `run`: what came before it was delivered, and the
    // stream ends.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let err = t
        .run_streaming("echo early; sleep 30", None, Duration::from_secs(1), tx)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    let mut streamed = Vec::new();
    while let Some(chunk) = rx.recv().await {
        streamed.extend(chunk);
    }
    assert_eq!(streamed, b"early\n");

    t.close().await.unwrap();
    assert_eq!(host.logins(), 1);
}

/// The fleet's sessions must not run the test user's shell set-up: root's
/// `.bashrc` here runs `pyenv init`, whose lock made every command of
/// every test wait up to 60 s when a run was killed mid-rehash.
#[tokio::test]
async fn sessions_do_not_read_the_users_shell_rc_files() {
    let fleet = Fleet::start(1);
    let t = connect(&fleet, &fleet.hosts()[0]).await;
    let out = run(&t, "printf %s \"$HOME\"").await;
    assert_eq!(out.stdout_str(), fleet.home(1).to_string_lossy());
    t.close().await.unwrap();
}
