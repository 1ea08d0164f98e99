//! Promotion on a real sshd fleet: staging (2 hosts) and production (3
//! hosts). Production gets exactly what staging verified, after its gate.

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::deploy_yml::yaml_str;
use support::project::{commit, expect_exit, git, ledger, shipit_cmd, text, Project};

struct Promo {
    p: Project,
    signers: PathBuf,
}

/// Fleet hosts 1-2 are staging, 3-5 production. `gate` is production's
/// gate (YAML flow map), `smoke` the smoke test command.
fn promo(gate: &str, smoke: &str) -> Promo {
    let p = Project::new(5);
    let signers = p.fleet.dir().join("allowed_signers");
    let hosts = p.fleet.hosts();
    let host = |i: usize| {
        format!(
            "      - {{ host: {}, roles: [app], deploy_to: {} }}\n",
            hosts[i].alias,
            yaml_str(&hosts[i].deploy_to.to_string_lossy())
        )
    };
    let y = format!(
        "application: shop\nrepository: {repo}\nbranch: main\n\
         ssh:\n  config_file: {cfg}\n  connect_timeout: 5s\n\
         tasks:\n  smoke_test:\n    run: {smoke}\n\
         stages:\n  staging:\n    hosts:\n{h0}{h1}  production:\n    promote_from: staging\n    gate: {gate}\n    hosts:\n{h2}{h3}{h4}",
        repo = yaml_str(p.repo.to_str().unwrap()),
        cfg = yaml_str(&p.fleet.ssh_config().to_string_lossy()),
        smoke = yaml_str(smoke),
        gate = gate.replace("SIGNERS", &yaml_str(&signers.to_string_lossy())),
        h0 = host(0),
        h1 = host(1),
        h2 = host(2),
        h3 = host(3),
        h4 = host(4),
    );
    fs::write(p.dir.join("deploy.yml"), y).unwrap();
    Promo { p, signers }
}

impl Promo {
    fn run_as(&self, user: &str, args: &[&str]) -> Output {
        shipit_cmd(&self.p.dir, args)
            .env("SHIPIT_USER", user)
            .output()
            .unwrap()
    }

    fn staging(&self) -> Vec<PathBuf> {
        self.p.hosts()[..2].to_vec()
    }

    fn production(&self) -> Vec<PathBuf> {
        self.p.hosts()[2..].to_vec()
    }

    fn deploy_staging(&self) -> Output {
        self.run_as("dev", &["deploy", "staging"])
    }
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

fn refused(o: &Output, why: &str) {
    assert_eq!(o.status.code(), Some(3), "{}", text(o));
    let all = text(o);
    assert!(all.contains(why), "wanted `{why}` in:\n{all}");
}

fn revision(d: &Path) -> Option<String> {
    fs::read_to_string(d.join("current/REVISION"))
        .ok()
        .map(|s| s.trim().to_string())
}

const OPEN: &str = "{ approvals: 1, approvers: [alice, bob], self_approval: false }";

#[test]
fn promote_is_refused_without_approval_and_accepted_with_one_even_after_the_branch_moved() {
    let w = promo(OPEN, "true");
    ok(&w.deploy_staging());
    let staged = git(&w.p.repo, &["rev-parse", "HEAD"]);
    // Without --yes and without a terminal it refuses at once.
    refused(
        &w.run_as("alice", &["promote", "production"]),
        "there is no terminal to ask on: pass --yes",
    );
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        "has 0 of the 1 approval `production` needs",
    );
    for d in w.production() {
        assert!(!d.join("current").exists());
    }
    // The branch moves on after staging was verified.
    commit(&w.p.repo, "VERSION", "newer\n");
    ok(&w.run_as("bob", &["approve", "production"]));
    let out = w.run_as("alice", &["promote", "production", "--yes"]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("approved by bob"),
        "{}",
        text(&out)
    );
    for d in w.production() {
        assert_eq!(
            revision(&d).as_deref(),
            Some(staged.as_str()),
            "{}",
            d.display()
        );
        let l = ledger(&d);
        let promoted = l
            .iter()
            .find(|e| e["event"] == "promoted")
            .expect("a promoted line");
        assert_eq!(promoted["from_stage"], "staging");
        assert_eq!(promoted["approvers"], serde_json::json!(["bob"]));
        assert_eq!(promoted["user"], "alice");
        assert_eq!(promoted["commit"], staged.as_str());
        let approved = l.iter().find(|e| e["event"] == "approved").unwrap();
        assert_eq!(approved["user"], "bob");
        assert_eq!(approved["commit"], staged.as_str());
    }
    // history shows the promotion and the approval.
    let h = w.run_as("alice", &["history", "production"]);
    ok(&h);
    let hs = String::from_utf8_lossy(&h.stdout);
    let promoted = hs
        .lines()
        .find(|l| l.contains("promoted"))
        .unwrap_or_else(|| panic!("no promoted line:\n{hs}"));
    assert!(promoted.contains("from staging release"), "{promoted}");
    assert!(promoted.contains("approved by bob"), "{promoted}");
    assert!(promoted.contains("alice"), "{promoted}");
    assert!(hs.contains("approved"), "{hs}");
    assert!(hs.contains("bob"), "{hs}");
}

#[test]
fn promote_is_refused_for_a_self_approval_when_not_allowed() {
    let w = promo(OPEN, "true");
    ok(&w.deploy_staging());
    ok(&w.run_as("alice", &["approve", "production"]));
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        "the only approval of release",
    );
    // The same approval lets someone else promote.
    ok(&w.run_as("bob", &["promote", "production", "--yes"]));
}

#[test]
fn promote_is_refused_before_the_soak_time() {
    let w = promo("{ approvals: 0, soak: 2h }", "true");
    ok(&w.deploy_staging());
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        "needs a soak of 2h00m",
    );
}

#[test]
fn promote_is_refused_when_staging_hosts_disagree() {
    let w = promo("{ approvals: 0 }", "true");
    ok(&w.deploy_staging());
    commit(&w.p.repo, "VERSION", "2\n");
    ok(&w.run_as("dev", &["deploy", "staging", "--hosts", "fleet-1"]));
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        "`staging` hosts disagree about their current release",
    );
}

#[test]
fn promote_is_refused_when_the_staging_smoke_test_failed() {
    // Once BROKEN exists on a host, no release passes its smoke test there.
    let w = promo("{ approvals: 0 }", "test ! -e ../../BROKEN");
    ok(&w.deploy_staging());
    fs::write(w.staging()[1].join("BROKEN"), "").unwrap();
    commit(&w.p.repo, "VERSION", "2\n");
    // The new release fails on fleet-2 and so does the way back.
    expect_exit(w.deploy_staging(), 5);
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        "is not verified on `staging`: on fleet-2 its smoke test has not passed",
    );
    for d in w.production() {
        assert!(!d.join("current").exists());
    }
}

fn keygen(path: &Path) -> String {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "approver", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    fs::read_to_string(path.with_extension("pub")).unwrap()
}

#[test]
fn signed_approvals_must_come_from_an_allowed_signer() {
    let w = promo(
        "{ approvals: 1, self_approval: false, allowed_signers: SIGNERS }",
        "true",
    );
    let keys = w.p.dir.join("keys");
    fs::create_dir_all(&keys).unwrap();
    let good = keys.join("bob");
    let evil = keys.join("mallory");
    let promoter = keys.join("alice");
    let good_pub = keygen(&good);
    keygen(&evil);
    let promoter_pub = keygen(&promoter);
    fs::write(&w.signers, format!("bob {good_pub}alice {promoter_pub}")).unwrap();
    let promote = [
        "promote",
        "production",
        "--yes",
        "--sign-key",
        promoter.to_str().unwrap(),
    ];
    ok(&w.deploy_staging());
    // Unsigned approvals are not even recorded.
    let out = expect_exit(w.run_as("bob", &["approve", "production"]), 2);
    assert!(text(&out).contains("pass --sign-key"));
    // Signed by a key that is not bob's allowed key.
    ok(&w.run_as(
        "bob",
        &[
            "approve",
            "production",
            "--sign-key",
            evil.to_str().unwrap(),
        ],
    ));
    refused(
        &w.run_as("alice", &promote),
        "the approval by bob is not signed by a key in the allowed signers",
    );
    ok(&w.run_as(
        "bob",
        &[
            "approve",
            "production",
            "--sign-key",
            good.to_str().unwrap(),
        ],
    ));
    ok(&w.run_as("alice", &promote));
}

#[test]
fn a_recorded_rejection_blocks_promotion() {
    let w = promo("{ approvals: 1 }", "true");
    ok(&w.deploy_staging());
    ok(&w.run_as("bob", &["approve", "production"]));
    ok(&w.run_as(
        "carol",
        &["approve", "production", "--reject", "-m", "breaks checkout"],
    ));
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        "was rejected for `production` by carol",
    );
}

#[test]
fn interactive_promote_shows_the_candidate_and_takes_the_typed_stage_name() {
    let w = promo("{ approvals: 1, self_approval: true }", "true");
    ok(&w.deploy_staging());
    let staged = git(&w.p.repo, &["rev-parse", "HEAD"]);
    // util-linux `script` gives shipit a pseudo-terminal.
    let cmd = format!("{} promote production", env!("CARGO_BIN_EXE_shipit"));
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(&w.p.dir)
        .env("SHIPIT_USER", "alice")
        .env_remove("CI")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"production\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("candidate: release"), "{all}");
    assert!(all.contains(&staged[..12]), "{all}");
    assert!(
        all.contains("type `production` to promote, as alice"),
        "{all}"
    );
    for d in w.production() {
        assert_eq!(revision(&d).as_deref(), Some(staged.as_str()));
        let approved = ledger(&d);
        assert!(approved
            .iter()
            .any(|e| e["event"] == "approved" && e["user"] == "alice"));
    }
}
