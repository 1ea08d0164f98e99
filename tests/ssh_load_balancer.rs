//! Zero downtime behind a real load balancer: HAProxy in front of four
//! sshd hosts, each serving HTTP from its `current` release (a small
//! python3 server the app's `restart` task starts). A client sends
//! requests through HAProxy without pause while shipit deploys (batches of
//! one) and rolls back, draining each host through HAProxy's runtime API
//! with the recipe shipped in `templates/load_balancer/haproxy.sh`.
//!
//! With `load_balancer`, not one request fails; the same deploy and
//! rollback without it drop requests (the restart leaves a gap), which
//! shows the client would see a failure.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use support::project::{commit, current, events, stdout, text, wait_until, Project};

const HOSTS: usize = 4;

/// The application: answers every GET with the release's VERSION file.
const SERVER_PY: &str = r#"import http.server, sys
addr, port = sys.argv[1], int(sys.argv[2])
body = open("VERSION", "rb").read()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
Server((addr, port), Handler).serve_forever()
"#;

/// The app's restart: stop the running server, then start the release's
/// (a restart takes a moment, as real ones do: the gap a load balancer
/// must not send requests into). The server is detached from the ssh
/// session and writes its pid next to the releases. On a host whose
/// deploy_to holds `BROKEN`, no server starts again; on one whose
/// `BAD_VERSION` names the release's VERSION, that release does not start.
const TASKS: &str = r#"tasks:
  restart:
    run: "if [ -f ../../server.pid ]; then kill \"$(cat ../../server.pid)\" 2>/dev/null || true; fi; sleep 0.3; if [ -f ../../BROKEN ] || [ \"$(cat VERSION)\" = \"$(cat ../../BAD_VERSION 2>/dev/null)\" ]; then exit 0; fi; nohup python3 server.py {{ addr }} {{ app_port }} > ../../server.log 2>&1 < /dev/null & echo $! > ../../server.pid"
  smoke_test: { http: "http://{{ addr }}:{{ app_port }}/", retries: 50, interval: 100ms, timeout: 30s }
"#;

/// The release id `current` points at on `d`.
fn on(d: &Path) -> String {
    current(d)
        .expect("a current release")
        .trim_start_matches("releases/")
        .to_string()
}

/// A free TCP port on `addr`.
fn free_port(addr: Ipv4Addr) -> u16 {
    TcpListener::bind((addr, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `GET /` with a fresh connection: the status and body, or why not.
fn get(addr: SocketAddr) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// HAProxy in front of the fleet's app servers, with an admin socket.
struct Haproxy {
    child: Child,
    front: SocketAddr,
    socket: PathBuf,
}

impl Haproxy {
    fn start(dir: &Path, servers: &[(String, SocketAddr)]) -> Haproxy {
        let front = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST)));
        let socket = dir.join("haproxy.sock");
        // No health checks and no retries or redispatch: what HAProxy does
        // with a request is up to its runtime state alone, so a request
        // sent to a restarting server fails, visibly.
        let mut cfg = format!(
            "global\n  stats socket {} mode 600 level admin\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n  retries 0\n\
             frontend web\n  bind {front}\n  default_backend app\n\
             backend app\n  balance roundrobin\n",
            socket.display()
        );
        for (name, addr) in servers {
            cfg.push_str(&format!("  server {name} {addr}\n"));
        }
        let path = dir.join("haproxy.cfg");
        fs::write(&path, cfg).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("haproxy.log")).unwrap())
            .spawn()
            .expect("haproxy runs (apt-get install haproxy, or scripts/test.sh)");
        let h = Haproxy {
            child,
            front,
            socket,
        };
        wait_until("haproxy listening", Duration::from_secs(10), || {
            TcpStream::connect(h.front).is_ok() && h.socket.exists()
        });
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops the app servers the restart task started (they left the ssh
/// session, so the fleet does not end them).
struct Servers(Vec<PathBuf>);

impl Drop for Servers {
    fn drop(&mut self) {
        let pids: Vec<u32> = self
            .0
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("server.pid")).ok())
            .filter_map(|pid| pid.trim().parse().ok())
            .collect();
        support::procs::kill_all(&pids);
    }
}

/// What the client saw.
#[derive(Debug, Default)]
struct Seen {
    ok: usize,
    failed: Vec<String>,
    bodies: std::collections::BTreeSet<String>,
}

/// A client sending requests through HAProxy, one after the other, until
/// stopped.
struct Client {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    thread: JoinHandle<Seen>,
}

impl Client {
    fn start(front: SocketAddr) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), answered.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            while !flag.load(Ordering::Relaxed) {
                let answer = get(front);
                count.fetch_add(1, Ordering::Relaxed);
                match answer {
                    Ok((200, body)) => {
                        seen.ok += 1;
                        seen.bodies.insert(body.trim().to_string());
                    }
                    Ok((status, body)) => seen.failed.push(format!("{status}: {}", body.trim())),
                    Err(e) => seen.failed.push(e),
                }
                // Not a wait for anything: it only keeps the client from
                // taking a whole core from the deploy it watches.
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        Client {
            stop,
            answered,
            thread,
        }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the client thread ends")
    }
}

struct Setup {
    // Dropped first (fields drop in order): the servers' pid files live
    // in the project's hosts, which go away with `p`.
    _servers: Servers,
    p: Project,
    haproxy: Haproxy,
    backends: Vec<SocketAddr>,
}

impl Setup {
    fn new() -> Setup {
        let p = Project::new(HOSTS);
        commit(&p.repo, "server.py", SERVER_PY);
        let ports: Vec<(Ipv4Addr, u16)> = p
            .fleet
            .hosts()
            .iter()
            .map(|h| (h.address, free_port(h.address)))
            .collect();
        let backends: Vec<SocketAddr> = ports
            .iter()
            .map(|&(a, port)| SocketAddr::from((a, port)))
            .collect();
        let servers: Vec<(String, SocketAddr)> = p
            .fleet
            .hosts()
            .iter()
            .zip(&backends)
            .map(|(h, a)| (h.alias.clone(), *a))
            .collect();
        let haproxy = Haproxy::start(&p.dir, &servers);
        // The recipe users get, run as they would run it.
        let recipe =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/load_balancer/haproxy.sh");
        fs::create_dir_all(p.dir.join("templates/load_balancer")).unwrap();
        fs::copy(recipe, p.dir.join("templates/load_balancer/haproxy.sh")).unwrap();
        let servers = Servers(p.hosts());
        Setup {
            _servers: servers,
            p,
            haproxy,
            backends,
        }
    }

    /// deploy.yml with batches of one, and HAProxy's drain and undrain
    /// when `with_lb`.
    fn config(&self, with_lb: bool) {
        self.config_with(with_lb, "");
    }

    /// [`Setup::config`] with more keys for the stage (indented by 4).
    fn config_with(&self, with_lb: bool, stage_extra: &str) {
        let socket = self.haproxy.socket.to_string_lossy().into_owned();
        let lb = if with_lb {
            format!(
                "    load_balancer:\n      \
                 drain:   {{ local: true, run: \"sh templates/load_balancer/haproxy.sh drain app {{{{ host }}}} {socket}\" }}\n      \
                 undrain: {{ local: true, run: \"sh templates/load_balancer/haproxy.sh ready app {{{{ host }}}} {socket}\" }}\n      \
                 wait: 200ms\n"
            )
        } else {
            String::new()
        };
        let stage = format!("    rollout: {{ batch: 1 }}\n{stage_extra}{lb}");
        let backends = self.backends.clone();
        self.p.write_config(TASKS, &stage, |i| {
            let a = backends[i - 1];
            format!(", vars: {{ addr: \"{}\", app_port: {} }}", a.ip(), a.port())
        });
    }

    /// What each backend serves, asked directly.
    fn served(&self) -> Vec<String> {
        self.backends
            .iter()
            .map(|&a| match get(a) {
                Ok((200, body)) => body.trim().to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn assert_all_serve(&self, version: &str) {
        assert_eq!(self.served(), vec![version.to_string(); HOSTS]);
        for d in self.p.hosts() {
            let id = current(&d).expect("a current release");
            let v = fs::read_to_string(d.join(&id).join("VERSION")).unwrap();
            assert_eq!(v.trim(), version, "{}", d.display());
        }
    }

    /// HAProxy's view of each fleet host: its status in `show stat`
    /// (`UP`, `DRAIN`, `no check`...).
    fn lb_status(&self) -> Vec<String> {
        let out = Command::new("socat")
            .arg("stdio")
            .arg(format!("unix-connect:{}", self.haproxy.socket.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(b"show stat\n")?;
                c.wait_with_output()
            })
            .expect("socat runs");
        let csv = String::from_utf8_lossy(&out.stdout).into_owned();
        self.p
            .fleet
            .hosts()
            .iter()
            .map(|h| {
                csv.lines()
                    .map(|l| l.split(',').collect::<Vec<_>>())
                    .find(|f| f.len() > 17 && f[0] == "app" && f[1] == h.alias)
                    .map(|f| f[17].to_string())
                    .unwrap_or_else(|| format!("{} not in show stat: {csv}", h.alias))
            })
            .collect()
    }

    /// Runs `shipit ARGS` (exit 0 expected) with a client sending
    /// requests through HAProxy all along; what the client saw.
    fn under_load(&self, args: &[&str]) -> Seen {
        self.under_load_expect(args, 0).0
    }

    /// Runs `shipit ARGS`, expecting exit `code`, under load; what the
    /// client saw and shipit's stdout.
    fn under_load_expect(&self, args: &[&str], code: i32) -> (Seen, String) {
        let client = Client::start(self.haproxy.front);
        // The client is under way before anything changes.
        wait_until(
            "the client's first answers",
            Duration::from_secs(10),
            || client.answered.load(Ordering::Relaxed) >= 3,
        );
        let out = self.p.run(args);
        let seen = client.finish();
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        eprintln!(
            "shipit {}: {} requests answered 200, {} failed",
            args.join(" "),
            seen.ok,
            seen.failed.len()
        );
        (seen, stdout(&out))
    }
}

#[test]
fn draining_through_haproxy_drops_no_request_and_skipping_it_does() {
    let s = Setup::new();
    s.config(true);

    // v1 everywhere, then every server in HAProxy's pool answers.
    commit(&s.p.repo, "VERSION", "v1\n");
    s.p.deploy_ok();
    s.assert_all_serve("v1");
    wait_until(
        "haproxy answers from every server",
        Duration::from_secs(10),
        || (0..HOSTS * 2).all(|_| matches!(get(s.haproxy.front), Ok((200, _)))),
    );

    // A rolling deploy of v2, one host at a time, under load.
    commit(&s.p.repo, "VERSION", "v2\n");
    let seen = s.under_load(&["deploy", "staging"]);
    assert!(
        seen.failed.is_empty(),
        "deploy: {} failed of {}: {:?}",
        seen.failed.len(),
        seen.failed.len() + seen.ok,
        seen.failed
    );
    assert!(seen.ok > 50, "the client kept sending: {seen:?}");
    // It saw both releases: the switch happened while it was sending.
    assert!(
        seen.bodies.contains("v1") && seen.bodies.contains("v2"),
        "{seen:?}"
    );
    s.assert_all_serve("v2");

    // A rollback, one host at a time, under load.
    let v2: Vec<String> = s.p.hosts().iter().map(|d| on(d)).collect();
    let seen = s.under_load(&["rollback", "staging"]);
    assert!(
        seen.failed.is_empty(),
        "rollback: {} failed of {}: {:?}",
        seen.failed.len(),
        seen.failed.len() + seen.ok,
        seen.failed
    );
    assert!(
        seen.bodies.contains("v1") && seen.bodies.contains("v2"),
        "{seen:?}"
    );
    s.assert_all_serve("v1");
    // The HTTP smoke test passed on each host: `verified` is recorded.
    for (d, from) in s.p.hosts().iter().zip(&v2) {
        let to = on(d);
        let ev = events(d);
        assert_eq!(
            ev[ev.len() - 3..],
            [
                ("rolled_back".to_string(), from.clone()),
                ("published".to_string(), to.clone()),
                ("verified".to_string(), to),
            ],
            "{}",
            d.display()
        );
    }

    // Forward again to the new release: every host serves it at the end.
    commit(&s.p.repo, "VERSION", "v3\n");
    let seen = s.under_load(&["deploy", "staging"]);
    assert!(seen.failed.is_empty(), "deploy: {:?}", seen.failed);
    s.assert_all_serve("v3");

    // The same deploy and rollback without `load_balancer`: the client
    // sees requests fail, so the assertions above can fail.
    s.config(false);
    commit(&s.p.repo, "VERSION", "v4\n");
    let seen = s.under_load(&["deploy", "staging"]);
    assert!(
        !seen.failed.is_empty(),
        "deploy without load_balancer: {seen:?}"
    );
    s.assert_all_serve("v4");
    let seen = s.under_load(&["rollback", "staging"]);
    assert!(
        !seen.failed.is_empty(),
        "rollback without load_balancer: {seen:?}"
    );
    s.assert_all_serve("v3");
}

/// A host whose release cannot start fails its smoke test: the deploy
/// undoes every switch, batch by batch behind the load balancer, and the
/// broken host, whose previous release cannot start either, stays out of
/// HAProxy's pool, named in the summary. No request fails meanwhile.
#[test]
fn a_host_that_fails_stays_drained_and_the_summary_says_so() {
    let s = Setup::new();
    s.config(true);
    commit(&s.p.repo, "VERSION", "v1\n");
    s.p.deploy_ok();
    s.assert_all_serve("v1");
    wait_until(
        "haproxy answers from every server",
        Duration::from_secs(10),
        || (0..HOSTS * 2).all(|_| matches!(get(s.haproxy.front), Ok((200, _)))),
    );
    assert_eq!(s.lb_status(), vec!["no check".to_string(); HOSTS]);

    fs::write(s.p.hosts()[1].join("BROKEN"), "").unwrap();
    commit(&s.p.repo, "VERSION", "v2\n");
    let (seen, out) = s.under_load_expect(&["deploy", "staging"], 5);
    assert!(seen.failed.is_empty(), "{:?}", seen.failed);
    assert!(
        out.contains("left drained (out of the load balancer's pool): fleet-2"),
        "{out}"
    );
    // fleet-2 is out of the pool; the others are back in it, on v1.
    let status = s.lb_status();
    assert_eq!(status[1], "DRAIN", "{status:?}");
    for i in [0, 2, 3] {
        assert_eq!(status[i], "no check", "{status:?}");
    }
    for (i, v) in s.served().iter().enumerate() {
        if i != 1 {
            assert_eq!(v, "v1");
        }
    }
}

/// A host whose new release fails its smoke test within `max_failures`
/// goes back to its previous release and, once that answers again, back
/// into the pool; the others stay on the new release. No request fails.
#[test]
fn a_tolerated_failure_goes_back_into_the_pool_on_its_previous_release() {
    let s = Setup::new();
    s.config_with(true, "    max_failures: 1\n");
    commit(&s.p.repo, "VERSION", "v1\n");
    s.p.deploy_ok();
    wait_until(
        "haproxy answers from every server",
        Duration::from_secs(10),
        || (0..HOSTS * 2).all(|_| matches!(get(s.haproxy.front), Ok((200, _)))),
    );

    fs::write(s.p.hosts()[2].join("BAD_VERSION"), "v2\n").unwrap();
    commit(&s.p.repo, "VERSION", "v2\n");
    let (seen, out) = s.under_load_expect(&["deploy", "staging"], 0);
    assert!(seen.failed.is_empty(), "{:?}", seen.failed);
    assert!(!out.contains("left drained"), "{out}");
    assert_eq!(s.lb_status(), vec!["no check".to_string(); HOSTS]);
    assert_eq!(s.served(), ["v2", "v2", "v1", "v2"]);
}

/// SIGTERM (a Jenkins abort) while a host is out of the pool: shipit
/// stops, puts every host back on its previous release, batch by batch
/// behind the load balancer, and back into the pool. No request fails.
#[test]
fn an_interrupted_deploy_puts_every_host_back_into_the_pool() {
    let s = Setup::new();
    s.config(true);
    commit(&s.p.repo, "VERSION", "v1\n");
    s.p.deploy_ok();
    wait_until(
        "haproxy answers from every server",
        Duration::from_secs(10),
        || (0..HOSTS * 2).all(|_| matches!(get(s.haproxy.front), Ok((200, _)))),
    );

    commit(&s.p.repo, "VERSION", "v2\n");
    let client = Client::start(s.haproxy.front);
    wait_until(
        "the client's first answers",
        Duration::from_secs(10),
        || client.answered.load(Ordering::Relaxed) >= 3,
    );
    let mut child = support::project::shipit_cmd(&s.p.dir, &["deploy", "staging"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shipit runs");
    // The second host of the rollout is out of the pool: interrupt.
    wait_until("fleet-2 drained", Duration::from_secs(60), || {
        s.lb_status()[1] == "DRAIN"
    });
    support::procs::signal("TERM", &[child.id()]);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("shipit did not end within 120s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let seen = client.finish();
    let shown = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(status.code(), Some(130), "{shown}");
    assert!(seen.failed.is_empty(), "{:?}", seen.failed);
    assert_eq!(
        s.lb_status(),
        vec!["no check".to_string(); HOSTS],
        "{shown}"
    );
    s.assert_all_serve("v1");
}

/// An `http:` smoke test that gets the wrong status fails the host with
/// the status and the first lines of the body in its failure tail; the
/// deploy is undone and nothing is recorded `verified`.
#[test]
fn an_http_smoke_test_shows_the_status_and_the_body_when_it_fails() {
    let p = Project::new(1);
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in server.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nmaintenance until 10:00\nsecond line\n",
            );
        }
    });
    p.write_config(
        "tasks:\n  smoke_test: { http: \"http://127.0.0.1:{{ probe_port }}/up\", retries: 2, interval: 100ms }\n",
        "",
        |_| format!(", vars: {{ probe_port: {port} }}"),
    );
    let out = p.deploy_expect(1);
    let o = stdout(&out);
    assert!(
        o.contains("[fleet-1] smoke_test FAILED") && o.contains("answered 503, expected 200"),
        "{}",
        text(&out)
    );
    assert!(
        o.contains(&format!(
            "GET http://127.0.0.1:{port}/up answered 503, expected 200 (attempt 3 of 3)"
        )),
        "{o}"
    );
    assert!(
        o.contains("| maintenance until 10:00") && o.contains("| second line"),
        "{o}"
    );
    let d = &p.hosts()[0];
    assert!(current(d).is_none(), "the first deploy is undone");
    assert!(
        !events(d).iter().any(|(e, _)| e == "verified"),
        "{:?}",
        events(d)
    );
}
