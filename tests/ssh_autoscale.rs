//! The seed's autoscaled fleet, over ssh on real sshd hosts: `hosts_from`
//! (an inventory command, here listing instances of a real EC2 API
//! emulator with the AWS CLI), `shipit sync` bringing a new instance onto
//! exactly the release the others run, and notify hooks (`after:
//! finished`) told the run's outcome.

mod support;

use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::deploy_yml::{yaml_str, HOOKS};
use support::project::{
    commit, current, expect_exit, ledger, shipit_cmd, stdout, text, wait_until, Project,
};

/// `deploy.yml` for `p` with a global `deploy_to: ~/app` (each fleet host
/// has a home of its own), stage `staging` with `static_hosts` (fleet
/// aliases) and `hosts_from` (YAML of the list's items), and `extra`
/// top-level keys.
fn write(p: &Project, static_hosts: &[&str], hosts_from: &[&str], extra: &str) {
    let mut y = format!(
        "application: shop\nrepository: {}\nbranch: main\ndeploy_to: ~/app\nkeep_releases: 5\n\
         ssh:\n  config_file: {}\n  connect_timeout: 5s\n  host_key_checking: strict\n{extra}\
         stages:\n  staging:\n",
        yaml_str(p.repo.to_str().unwrap()),
        yaml_str(&p.fleet.ssh_config().to_string_lossy()),
    );
    if !static_hosts.is_empty() {
        y.push_str("    hosts:\n");
        for h in static_hosts {
            y.push_str(&format!("      - {{ host: {h}, roles: [app] }}\n"));
        }
    }
    if !hosts_from.is_empty() {
        y.push_str("    hosts_from:\n");
        for h in hosts_from {
            y.push_str(&format!("      - {h}\n"));
        }
    }
    fs::write(p.dir.join("deploy.yml"), y).unwrap();
}

/// Host `i`'s `deploy_to` (`~/app` under its own home).
fn app(p: &Project, i: usize) -> PathBuf {
    p.fleet.home(i).join("app")
}

/// `hosts_from` hosts join the stage: the deploy reaches them (with the
/// roles their line or entry gives), `plan` says where they came from, and
/// a host listed statically too is taken once.
#[test]
fn hosts_from_adds_the_hosts_a_command_prints() {
    let p = Project::new(3);
    let run = r"printf 'fleet-1\nfleet-2\n# a comment\nfleet-3 app,worker\n'";
    write(
        &p,
        &["fleet-1"],
        &[&format!("{{ run: {}, roles: [app] }}", yaml_str(run))],
        "tasks:\n  only_workers: { after: link_shared, roles: [worker], run: \"touch ../../worker-ran\" }\n",
    );
    let plan = stdout(&p.run_expect(&["plan", "staging"], 0));
    assert!(
        plan.contains("hosts from `printf 'fleet-1\\nfleet-2\\n# a comment\\nfleet-3 app,worker\\n'`: fleet-2, fleet-3"),
        "{plan}"
    );
    assert!(plan.contains("3 hosts"), "{plan}");
    p.deploy_ok();
    for i in 1..=3 {
        let on = current(&app(&p, i)).unwrap_or_else(|| panic!("fleet-{i} has no current"));
        assert!(on.starts_with("releases/"), "{on}");
    }
    assert!(!app(&p, 1).join("worker-ran").exists());
    assert!(!app(&p, 2).join("worker-ran").exists());
    assert!(
        app(&p, 3).join("worker-ran").exists(),
        "fleet-3's line gave it role worker"
    );
}

/// A command that fails, prints a host that is not a host name, or
/// prints none leaves the stage unusable with a message naming the
/// command (and the line); nothing is deployed.
#[test]
fn a_bad_inventory_is_refused_naming_the_command_and_line() {
    let p = Project::new(1);
    for (run, says) in [
        (
            r#"echo 'no credentials' >&2; exit 3"#,
            "failed (exit 3): no credentials",
        ),
        (
            r#"printf 'fleet-1\n-oProxyCommand=touch /tmp/x\n'"#,
            "line 2: invalid host `-oProxyCommand=touch`",
        ),
        (
            "true",
            "stage `staging` has no hosts: its `hosts_from` printed none",
        ),
    ] {
        write(
            &p,
            &[],
            &[&format!("{{ run: {}, roles: [app] }}", yaml_str(run))],
            "",
        );
        for args in [&["deploy", "staging"][..], &["plan", "staging"][..]] {
            let o = p.run_expect(args, 2);
            let all = text(&o);
            assert!(all.contains(says), "{args:?}: {all}");
            if !says.contains("printed none") {
                assert!(
                    all.contains(&format!("hosts_from `{run}` of stage `staging`")),
                    "{all}"
                );
            }
        }
    }
    assert!(!app(&p, 1).exists(), "nothing was deployed");
}

/// A real EC2 API emulator (moto's server, from PyPI, installed by the
/// test command into target/tools/aws) on a free loopback port.
struct Ec2 {
    child: Child,
    endpoint: String,
    bin: PathBuf,
}

impl Ec2 {
    fn start() -> Ec2 {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/aws/bin");
        assert!(
            bin.join("moto_server").is_file() && bin.join("aws").is_file(),
            "the EC2 API emulator is missing from {}: run the tests with `bash scripts/test.sh`, which installs it",
            bin.display()
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin.join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        wait_until(
            "the EC2 emulator to listen",
            Duration::from_secs(60),
            || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok(),
        );
        Ec2 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bin,
        }
    }

    /// The environment the AWS CLI (and so the recipe) needs.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            (
                "PATH",
                format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap()),
            ),
        ]
    }

    /// Launches an instance tagged for `stage` whose `Name` is `name` (an
    /// alias of the fleet's ssh config), as an autoscaling group would.
    fn launch(&self, stage: &str, name: &str) {
        let out = Command::new(self.bin.join("aws"))
            .envs(self.env())
            .args(["ec2", "run-instances", "--image-id", "ami-12c6146b", "--count", "1"])
            .arg("--tag-specifications")
            .arg(format!(
                "ResourceType=instance,Tags=[{{Key=shipit:stage,Value={stage}}},{{Key=Name,Value={name}}}]"
            ))
            .output()
            .expect("aws runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Ec2 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_with(p: &Project, ec2: &Ec2, args: &[&str]) -> Output {
    shipit_cmd(&p.dir, args)
        .envs(ec2.env())
        .output()
        .expect("shipit runs")
}

/// The recipe shipped in templates/ lists the instances tagged for the
/// stage; a new instance (an sshd host) is synced onto exactly the release
/// the others run — same id, commit and archive digest, smoke-tested and
/// in its ledger — even after the branch moved on, and the others are left
/// alone; then `releases` shows the fleet agreeing and sync has nothing
/// left to do.
#[test]
fn sync_brings_a_new_instance_onto_the_running_release() {
    let p = Project::new(3);
    let ec2 = Ec2::start();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/hosts_from/aws-ec2.sh");
    let entry = format!(
        "{{ run: {}, roles: [app] }}",
        yaml_str(&format!("{} shop-staging name", recipe.display()))
    );
    write(&p, &[], &[&entry], &format!("strategy: copy\n{HOOKS}"));
    ec2.launch("shop-staging", "fleet-1");
    ec2.launch("shop-staging", "fleet-2");
    ec2.launch("shop-production", "fleet-3");
    expect_exit(run_with(&p, &ec2, &["deploy", "staging"]), 0);
    let on = current(&app(&p, 1)).expect("fleet-1 deployed");
    assert_eq!(current(&app(&p, 2)).as_deref(), Some(on.as_str()));
    assert!(!app(&p, 3).exists(), "fleet-3 is production's");
    let id = on.trim_start_matches("releases/").to_string();
    let deployed = fs::read_to_string(app(&p, 1).join(&on).join("REVISION")).unwrap();
    let digest = ledger(&app(&p, 1))
        .iter()
        .find(|e| e["release"] == id.as_str() && e["event"] == "verified")
        .and_then(|e| e["digest"].as_str().map(String::from))
        .expect("strategy copy records the digest");
    let before: Vec<usize> = [1, 2].iter().map(|&i| ledger(&app(&p, i)).len()).collect();

    // The branch moves on; then autoscaling launches a new instance.
    commit(&p.repo, "VERSION", "2\n");
    ec2.launch("shop-staging", "fleet-3");
    let o = expect_exit(run_with(&p, &ec2, &["sync", "staging"]), 0);
    let all = text(&o);
    assert!(all.contains("sync: fleet-3 onto release"), "{all}");
    assert_eq!(current(&app(&p, 3)).as_deref(), Some(on.as_str()), "{all}");
    assert_eq!(
        fs::read_to_string(app(&p, 3).join(&on).join("REVISION")).unwrap(),
        deployed,
        "the running commit, not the branch's"
    );
    let synced = ledger(&app(&p, 3));
    let verified = synced
        .iter()
        .find(|e| e["event"] == "verified")
        .expect("the smoke test passed and is recorded");
    assert_eq!(verified["release"], id.as_str());
    assert_eq!(verified["commit"], deployed.trim());
    assert_eq!(verified["digest"], digest.as_str());
    for (k, i) in [1, 2].iter().enumerate() {
        assert_eq!(ledger(&app(&p, *i)).len(), before[k], "fleet-{i} untouched");
        assert_eq!(current(&app(&p, *i)).as_deref(), Some(on.as_str()));
    }

    let o = expect_exit(run_with(&p, &ec2, &["releases", "staging"]), 0);
    assert!(!text(&o).contains("disagree"), "{}", text(&o));
    let o = expect_exit(run_with(&p, &ec2, &["sync", "staging"]), 0);
    assert!(text(&o).contains("nothing to sync"), "{}", text(&o));
    assert_eq!(ledger(&app(&p, 3)).len(), synced.len());
}

/// Sync refuses, changing nothing, when the hosts that have a release
/// disagree about it, and when no host has one.
#[test]
fn sync_refuses_when_there_is_no_agreed_release() {
    let p = Project::new(3);
    write(
        &p,
        &[],
        &[r#"{ run: "printf 'fleet-1\nfleet-2\nfleet-3\n'", roles: [app] }"#],
        HOOKS,
    );
    let o = p.run_expect(&["sync", "staging"], 1);
    assert!(
        text(&o).contains("no host of `staging` has a current release to sync from"),
        "{}",
        text(&o)
    );
    p.run_expect(&["deploy", "staging", "--hosts", "fleet-1,fleet-2"], 0);
    commit(&p.repo, "VERSION", "2\n");
    p.run_expect(&["deploy", "staging", "--hosts", "fleet-2"], 0);
    let o = p.run_expect(&["sync", "staging"], 1);
    assert!(text(&o).contains("disagree"), "{}", text(&o));
    assert!(!app(&p, 3).exists(), "fleet-3 untouched");
}

/// Notify hooks (`after: finished`, on this machine) run after every
/// deploy and rollback, whatever the result, with the outcome in their
/// environment and in a JSON file that is gone afterwards; a hook that
/// is not `local: true` is refused when the file is loaded.
#[test]
fn notify_hooks_are_told_the_outcome() {
    let p = Project::new(2);
    let notify = "  notify:\n    after: finished\n    local: true\n    run: \"n=$(ls outcome-* 2>/dev/null | wc -l); cp \\\"$SHIPIT_OUTCOME_FILE\\\" outcome-$n-$SHIPIT_RESULT.json; echo \\\"$SHIPIT_OUTCOME_FILE\\\" > last-outcome-file; env | grep ^SHIPIT_ | sort > env-$n.txt\"\n";
    write(
        &p,
        &["fleet-1", "fleet-2"],
        &[],
        &format!("{HOOKS}{notify}"),
    );
    let first = git_head(&p);
    p.deploy_ok();
    commit(&p.repo, "VERSION", "2\n");
    let second = git_head(&p);
    p.deploy_ok();
    // The second release fails its smoke test on fleet-2.
    commit(&p.repo, "VERSION", "3\n");
    fs::write(app(&p, 2).join("FAIL_SMOKE"), format!("{}\n", git_head(&p))).unwrap();
    p.deploy_expect(1);
    p.run_expect(&["rollback", "staging"], 0);

    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(p.dir.join(name)).unwrap()).unwrap()
    };
    let o0 = read("outcome-0-success.json");
    assert_eq!(o0["schema"], 1);
    assert_eq!(o0["recipe"], "deploy");
    assert_eq!(o0["commit"], first.as_str());
    assert_eq!(o0["previous_commit"], "");
    assert_eq!(o0["user"], "tester");
    let o1 = read("outcome-1-success.json");
    assert_eq!(o1["commit"], second.as_str());
    assert_eq!(o1["previous_commit"], first.as_str());
    let o2 = read("outcome-2-failed.json");
    assert_eq!(o2["result"], "failed");
    assert_eq!(o2["previous_commit"], second.as_str());
    let failed: Vec<&str> = o2["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["ok"] == false)
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"fleet-2"), "{o2}");
    let o3 = read("outcome-3-success.json");
    assert_eq!(o3["recipe"], "rollback");
    assert_eq!(o3["commit"], first.as_str());
    assert_eq!(o3["previous_commit"], second.as_str());
    assert_eq!(o3["previous_release"], o1["release"]);
    assert_eq!(o3["release"], o0["release"]);
    assert_eq!(
        current(&app(&p, 1)).unwrap(),
        format!("releases/{}", o0["release"].as_str().unwrap())
    );

    let env = fs::read_to_string(p.dir.join("env-2.txt")).unwrap();
    assert!(env.contains("SHIPIT_RESULT=failed\n"), "{env}");
    assert!(env.contains("SHIPIT_STAGE=staging\n"), "{env}");
    assert!(
        env.contains(&format!("SHIPIT_PREVIOUS_COMMIT={second}\n")),
        "{env}"
    );
    let file = fs::read_to_string(p.dir.join("last-outcome-file")).unwrap();
    assert!(
        !Path::new(file.trim()).exists(),
        "the outcome file is removed: {file}"
    );

    let bad = "  notify:\n    after: finished\n    run: \"true\"\n";
    write(&p, &["fleet-1"], &[], &format!("tasks:\n{bad}"));
    let o = p.run_expect(&["plan", "staging"], 2);
    assert!(
        text(&o).contains("task `notify` runs `after: finished`, which needs `local: true`"),
        "{}",
        text(&o)
    );
}

fn git_head(p: &Project) -> String {
    support::project::git(&p.repo, &["rev-parse", "HEAD"])
}
