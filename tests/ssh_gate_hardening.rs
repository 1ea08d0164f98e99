//! The promotion gate against someone who wants a change in production
//! alone, on a real sshd fleet: a committer (who writes the release's files
//! and deploy.yml) and a deploy user (who writes every ledger on its
//! hosts). Each test acts as that attacker would — hand-written ledger
//! lines, a commit whose files carry the signers marker, a rejection
//! deleted from one host, an approval replayed for another application —
//! and expects exit 3 with a message naming the rule.
//!
//! Fleet host 1 is staging (and, under another `deploy_to`, dev); hosts 2
//! and 3 are production. The trust root (allowed signers file, pinned
//! gate) lives in the fleet's directory (`trust/`), which the test user owns: the
//! fleet logs in as that user, so these tests run as root, as CI does (a
//! root-owned trust root cannot be made otherwise).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use support::deploy_yml::yaml_str;
use support::json_events::assert_documented;
use support::project::{commit, git, ledger, shipit_cmd, text, wait_until, Project};

struct World {
    p: Project,
    signers: PathBuf,
    keys: PathBuf,
}

fn world() -> World {
    let p = Project::new(3);
    let trust = p.fleet.dir().join("trust");
    fs::create_dir_all(&trust).unwrap();
    fs::set_permissions(&trust, fs::Permissions::from_mode(0o755)).unwrap();
    let signers = trust.join("allowed_signers");
    let keys = p.dir.join("keys");
    fs::create_dir_all(&keys).unwrap();
    World { p, signers, keys }
}

impl World {
    /// deploy.yml for `application`: production's gate `gate` (a YAML flow
    /// map; `SIGNERS` stands for the allowed signers file), `smoke` the
    /// smoke test command.
    fn configure(&self, application: &str, gate: &str, smoke: &str) {
        let hosts = self.p.fleet.hosts();
        let host = |i: usize, deploy_to: &Path| {
            format!(
                "      - {{ host: {}, roles: [app], deploy_to: {} }}\n",
                hosts[i].alias,
                yaml_str(&deploy_to.to_string_lossy())
            )
        };
        let dev = self.p.fleet.dir().join("dev-1");
        let y = format!(
            "application: {application}\nrepository: {repo}\nbranch: main\n\
             ssh:\n  config_file: {cfg}\n  connect_timeout: 5s\n\
             tasks:\n  smoke_test:\n    run: {smoke}\n\
             stages:\n  dev:\n    hosts:\n{d}  staging:\n    hosts:\n{h0}  production:\n    promote_from: staging\n    gate: {gate}\n    hosts:\n{h1}{h2}",
            repo = yaml_str(self.p.repo.to_str().unwrap()),
            cfg = yaml_str(&self.p.fleet.ssh_config().to_string_lossy()),
            smoke = yaml_str(smoke),
            gate = gate.replace("SIGNERS", &yaml_str(&self.signers.to_string_lossy())),
            d = host(0, &dev),
            h0 = host(0, &hosts[0].deploy_to),
            h1 = host(1, &hosts[1].deploy_to),
            h2 = host(2, &hosts[2].deploy_to),
        );
        fs::write(self.p.dir.join("deploy.yml"), y).unwrap();
    }

    /// A new ed25519 key for `name`: its private key's path and its public
    /// key line.
    fn key(&self, name: &str) -> (String, String) {
        let path = self.keys.join(name);
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        let public = fs::read_to_string(path.with_extension("pub")).unwrap();
        (
            path.to_string_lossy().into_owned(),
            public.trim().to_string(),
        )
    }

    /// Writes the allowed signers file: `name public-key` per signer.
    fn trust(&self, signers: &[(&str, &str)]) {
        let text: String = signers.iter().map(|(n, k)| format!("{n} {k}\n")).collect();
        fs::write(&self.signers, text).unwrap();
        fs::set_permissions(&self.signers, fs::Permissions::from_mode(0o644)).unwrap();
    }

    fn run_as(&self, user: &str, args: &[&str]) -> Output {
        shipit_cmd(&self.p.dir, args)
            .env("SHIPIT_USER", user)
            .output()
            .unwrap()
    }

    fn staging(&self) -> PathBuf {
        self.p.hosts()[0].clone()
    }

    fn production(&self) -> Vec<PathBuf> {
        self.p.hosts()[1..].to_vec()
    }

    fn deploy_staging(&self) {
        ok(&self.run_as("dev", &["deploy", "staging"]));
    }
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

#[track_caller]
fn refused(o: &Output, why: &[&str]) {
    assert_eq!(o.status.code(), Some(3), "{}", text(o));
    let all = text(o);
    for w in why {
        assert!(all.contains(w), "wanted `{w}` in:\n{all}");
    }
}

fn ledger_file(d: &Path) -> PathBuf {
    d.join(".shipit/ledger.jsonl")
}

/// Appends a hand-written line to `d`'s ledger, as the deploy user can.
fn append(d: &Path, line: &Value) {
    let mut text = fs::read_to_string(ledger_file(d)).unwrap();
    text.push_str(&serde_json::to_string(line).unwrap());
    text.push('\n');
    fs::write(ledger_file(d), text).unwrap();
}

/// Rewrites `d`'s ledger line by line (`None` drops the line).
fn rewrite(d: &Path, f: impl Fn(Value) -> Option<Value>) {
    let text = fs::read_to_string(ledger_file(d)).unwrap();
    let out: String = text
        .lines()
        .filter_map(|l| f(serde_json::from_str(l).unwrap()))
        .map(|v| serde_json::to_string(&v).unwrap() + "\n")
        .collect();
    fs::write(ledger_file(d), out).unwrap();
}

fn find(d: &Path, event: &str, user: &str) -> Value {
    ledger(d)
        .into_iter()
        .find(|e| e["event"] == event && e["user"] == user)
        .unwrap_or_else(|| panic!("no `{event}` by {user} on {}", d.display()))
}

fn time_of(v: &Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[key].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn revision(d: &Path) -> Option<String> {
    fs::read_to_string(d.join("current/REVISION")).ok()
}

const SIGNED: &str = "{ approvals: 1, self_approval: false, allowed_signers: SIGNERS }";

/// Hole 1: text in a release's REVISION that frames an allowed-signers
/// section is never read as signers, so a promoted commit cannot make
/// later commits promotable on its author's key.
#[test]
fn a_release_whose_files_carry_the_signers_marker_is_never_read_as_policy() {
    let w = world();
    let (bob, bob_pub) = w.key("bob");
    let (carol, carol_pub) = w.key("carol");
    let (mallory, mallory_pub) = w.key("mallory");
    w.trust(&[("bob", &bob_pub), ("carol", &carol_pub)]);
    // The committer's smoke test writes the marker and her key into the
    // release's REVISION on every host it runs on.
    let smoke = format!("printf '%s\\n' '--- signers' 'mallory {mallory_pub}' >> REVISION");
    w.configure("shop", SIGNED, &smoke);
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production", "--sign-key", &bob]));
    ok(&w.run_as(
        "carol",
        &["promote", "production", "--yes", "--sign-key", &carol],
    ));
    for d in w.production() {
        let r = revision(&d).unwrap();
        assert!(r.contains("--- signers\nmallory ssh-ed25519"), "{r}");
    }
    // Her next commit, approved by her own key only.
    commit(&w.p.repo, "VERSION", "2\n");
    w.deploy_staging();
    ok(&w.run_as(
        "mallory",
        &["approve", "production", "--sign-key", &mallory],
    ));
    let before = revision(&w.production()[0]);
    refused(
        &w.run_as(
            "carol",
            &["promote", "production", "--yes", "--sign-key", &carol],
        ),
        &[
            "has 0 of the 1 approval `production` needs",
            "the approval by mallory is not signed by a key in the allowed signers",
        ],
    );
    assert_eq!(revision(&w.production()[0]), before);
}

/// Hole 1: a trust root the deploy user could rewrite is refused: not
/// owned by root, writable by group or others, in a directory others may
/// write. (The fleet logs in as root, so `test -w` by a non-root deploy
/// user is covered by unit tests; all loopback hosts share one file
/// system, so "differs between hosts" is too.)
#[test]
fn a_trust_root_the_deploy_user_could_rewrite_is_refused() {
    let w = world();
    let (bob, bob_pub) = w.key("bob");
    let (carol, carol_pub) = w.key("carol");
    w.trust(&[("bob", &bob_pub), ("carol", &carol_pub)]);
    w.configure("shop", SIGNED, "true");
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production", "--sign-key", &bob]));
    let promote = [
        "promote",
        "production",
        "--yes",
        "--sign-key",
        carol.as_str(),
    ];
    std::os::unix::fs::chown(&w.signers, Some(65534), None).unwrap();
    refused(
        &w.run_as("carol", &promote),
        &["is owned by uid 65534, not root", "`fleet-2`"],
    );
    std::os::unix::fs::chown(&w.signers, Some(0), None).unwrap();
    for mode in [0o664, 0o646] {
        fs::set_permissions(&w.signers, fs::Permissions::from_mode(mode)).unwrap();
        refused(
            &w.run_as("carol", &promote),
            &[&format!(
                "may be written by its group or by everyone (mode {mode:o})"
            )],
        );
    }
    fs::set_permissions(&w.signers, fs::Permissions::from_mode(0o644)).unwrap();
    let dir = w.signers.parent().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    let out = w.run_as("carol", &promote);
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    refused(&out, &["the file could be replaced"]);
    // Where it is root's alone, the same promotion goes through.
    ok(&w.run_as("carol", &promote));
    for d in w.production() {
        assert!(revision(&d).is_some());
    }
}

/// Hole 1: the pinned gate beside the allowed signers outranks a
/// committer's weakened `gate:`; it too must be root's alone.
#[test]
fn a_pinned_gate_outranks_a_weakened_deploy_yml() {
    let w = world();
    let (bob, bob_pub) = w.key("bob");
    let (carol, carol_pub) = w.key("carol");
    w.trust(&[("bob", &bob_pub), ("carol", &carol_pub)]);
    let pinned_dir = w.signers.parent().unwrap().join("shop");
    fs::create_dir_all(&pinned_dir).unwrap();
    fs::set_permissions(&pinned_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let pinned = pinned_dir.join("production.gate");
    fs::write(
        &pinned,
        "# production, set by the admins\napprovals: 1\nself_approval: false\n",
    )
    .unwrap();
    fs::set_permissions(&pinned, fs::Permissions::from_mode(0o644)).unwrap();
    // The committer asks for nothing.
    w.configure(
        "shop",
        "{ approvals: 0, self_approval: true, allowed_signers: SIGNERS }",
        "true",
    );
    w.deploy_staging();
    let promote = [
        "promote",
        "production",
        "--yes",
        "--sign-key",
        carol.as_str(),
    ];
    refused(
        &w.run_as("carol", &promote),
        &["has 0 of the 1 approval `production` needs"],
    );
    // Not even her own approval: the pin says `self_approval: false`.
    ok(&w.run_as("carol", &["approve", "production", "--sign-key", &carol]));
    refused(
        &w.run_as("carol", &promote),
        &["is by carol, who is promoting it"],
    );
    fs::set_permissions(&pinned, fs::Permissions::from_mode(0o666)).unwrap();
    refused(
        &w.run_as("carol", &promote),
        &["production.gate` on `fleet-2` may be written by its group or by everyone"],
    );
    fs::set_permissions(&pinned, fs::Permissions::from_mode(0o644)).unwrap();
    ok(&w.run_as("bob", &["approve", "production", "--sign-key", &bob]));
    ok(&w.run_as("carol", &promote));
}

/// Hole 2: with signers, an unsigned line (however new) does not hide a
/// signed rejection.
#[test]
fn an_unsigned_approval_does_not_hide_a_signed_rejection() {
    let w = world();
    let (bob, bob_pub) = w.key("bob");
    let (carol, carol_pub) = w.key("carol");
    let (dave, dave_pub) = w.key("dave");
    w.trust(&[
        ("bob", &bob_pub),
        ("carol", &carol_pub),
        ("dave", &dave_pub),
    ]);
    w.configure("shop", SIGNED, "true");
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production", "--sign-key", &bob]));
    ok(&w.run_as(
        "carol",
        &[
            "approve",
            "production",
            "--reject",
            "--sign-key",
            &carol,
            "-m",
            "breaks checkout",
        ],
    ));
    // The deploy user writes carol's "approval", later, without signature.
    for d in w.production() {
        let mut forged = find(&d, "rejected", "carol");
        let t = time_of(&forged, "time") + chrono::Duration::seconds(30);
        forged["event"] = "approved".into();
        forged["time"] = stamp(t).into();
        forged.as_object_mut().unwrap().remove("signature");
        forged.as_object_mut().unwrap().remove("detail");
        append(&d, &forged);
    }
    refused(
        &w.run_as(
            "dave",
            &["promote", "production", "--yes", "--sign-key", &dave],
        ),
        &[
            "was rejected for `production` by carol",
            "it cannot be promoted until carol approves it",
        ],
    );
    for d in w.production() {
        assert!(revision(&d).is_none());
    }
}

/// Hole 2: the signature covers the time: someone's older signed approval,
/// re-appended with a later time, does not cancel their later signed
/// rejection.
#[test]
fn a_re_dated_signed_approval_does_not_cancel_a_later_signed_rejection() {
    let w = world();
    let (bob, bob_pub) = w.key("bob");
    let (dave, dave_pub) = w.key("dave");
    w.trust(&[("bob", &bob_pub), ("dave", &dave_pub)]);
    w.configure("shop", SIGNED, "true");
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production", "--sign-key", &bob]));
    ok(&w.run_as(
        "bob",
        &["approve", "production", "--reject", "--sign-key", &bob],
    ));
    for d in w.production() {
        let mut replay = find(&d, "approved", "bob");
        let t = time_of(&find(&d, "rejected", "bob"), "time") + chrono::Duration::seconds(30);
        replay["time"] = stamp(t).into();
        append(&d, &replay);
    }
    refused(
        &w.run_as(
            "dave",
            &["promote", "production", "--yes", "--sign-key", &dave],
        ),
        &["was rejected for `production` by bob"],
    );
    // The re-dated copy is shown as ignored.
    let out = w.run_as(
        "dave",
        &["promote", "production", "--check", "--sign-key", &dave],
    );
    refused(
        &out,
        &["the approval by bob is not signed by a key in the allowed signers"],
    );
}

/// Hole 3: a rejection found on any host blocks: deleting it from one
/// host does not lift it; only a later approval by the same person does.
#[test]
fn a_rejection_deleted_from_one_host_still_blocks() {
    let w = world();
    w.configure("shop", "{ approvals: 1 }", "true");
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production"]));
    ok(&w.run_as("carol", &["approve", "production", "--reject"]));
    rewrite(&w.production()[1], |v| {
        (v["event"] != "rejected").then_some(v)
    });
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        &["was rejected for `production` by carol"],
    );
    // Carol changes her mind: her later approval lifts her rejection.
    ok(&w.run_as("carol", &["approve", "production"]));
    ok(&w.run_as("alice", &["promote", "production", "--yes"]));
}

/// Hole 3: a rejection never expires, whatever expiry it was given.
#[test]
fn a_rejection_does_not_expire() {
    let w = world();
    w.configure("shop", "{ approvals: 1 }", "true");
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production"]));
    ok(&w.run_as(
        "carol",
        &["approve", "production", "--reject", "--expires", "1s"],
    ));
    let expires = time_of(&find(&w.production()[0], "rejected", "carol"), "expires");
    wait_until(
        "the rejection's expiry passes",
        Duration::from_secs(10),
        || Utc::now() > expires,
    );
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        &["was rejected for `production` by carol"],
    );
}

/// Hole 4: an approval binds the application (and both stages, release,
/// commit and digest): one recorded for `shop` and replayed for `admin`
/// on the same hosts does not count.
#[test]
fn an_approval_replayed_for_another_application_does_not_count() {
    let w = world();
    let (bob, bob_pub) = w.key("bob");
    let (dave, dave_pub) = w.key("dave");
    w.trust(&[("bob", &bob_pub), ("dave", &dave_pub)]);
    w.configure("shop", SIGNED, "true");
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production", "--sign-key", &bob]));
    // The same hosts deploy `admin` too; its promotion reuses shop's
    // approval, relabelled.
    w.configure("admin", SIGNED, "true");
    for d in w.production() {
        rewrite(&d, |mut v| {
            if v["event"] == "approved" {
                v["application"] = "admin".into();
            }
            Some(v)
        });
    }
    refused(
        &w.run_as(
            "dave",
            &["promote", "production", "--yes", "--sign-key", &dave],
        ),
        &[
            "has 0 of the 1 approval `production` needs",
            "the approval by bob is not signed by a key in the allowed signers",
        ],
    );
    // Unchanged, it is bound to `shop` and does not count for `admin`.
    for d in w.production() {
        rewrite(&d, |mut v| {
            if v["event"] == "approved" {
                v["application"] = "shop".into();
            }
            Some(v)
        });
    }
    refused(
        &w.run_as(
            "dave",
            &["promote", "production", "--yes", "--sign-key", &dave],
        ),
        &["has 0 of the 1 approval `production` needs"],
    );
}

/// Hole 4: `--expires` cannot outlive the gate's `approval_ttl`.
#[test]
fn an_approval_cannot_outlive_the_gates_ttl() {
    let w = world();
    w.configure("shop", "{ approvals: 1, approval_ttl: 1h }", "true");
    w.deploy_staging();
    let out = w.run_as("bob", &["approve", "production", "--expires", "2h"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "--expires 2h00m is longer than the approval_ttl of `production`'s gate (1h00m)"
        ),
        "{}",
        text(&out)
    );
    for d in w.production() {
        assert!(!ledger(&d).iter().any(|e| e["event"] == "approved"));
    }
    ok(&w.run_as("bob", &["approve", "production", "--expires", "30m"]));
}

/// Hole 5: staging's `verified` counts only when the release's REVISION
/// on the host is the commit the record names: a hand-written record for
/// another commit does not get that commit into production.
#[test]
fn a_forged_verified_record_is_refused() {
    let w = world();
    w.configure("shop", "{ approvals: 0 }", "true");
    w.deploy_staging();
    let s = w.staging();
    let unverified = commit(&w.p.repo, "VERSION", "never deployed\n");
    let mut forged = find(&s, "verified", "dev");
    forged["commit"] = unverified.clone().into();
    forged["time"] = stamp(Utc::now()).into();
    append(&s, &forged);
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        &[
            "(its REVISION), but its `verified` record says",
            &unverified[..12],
        ],
    );
    for d in w.production() {
        assert!(revision(&d).is_none());
    }
}

/// Hole 5: a `verified` time that does not parse, or lies in the future,
/// does not pass the soak check.
#[test]
fn a_verified_time_that_does_not_parse_or_lies_ahead_is_refused() {
    let w = world();
    w.configure("shop", "{ approvals: 0, soak: 2h }", "true");
    w.deploy_staging();
    let s = w.staging();
    rewrite(&s, |mut v| {
        if v["event"] == "verified" {
            v["time"] = "long ago".into();
        }
        Some(v)
    });
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        &["has a time that does not parse (`long ago`): its soak cannot be counted"],
    );
    rewrite(&s, |mut v| {
        if v["event"] == "verified" {
            v["time"] = "2999-01-01T00:00:00Z".into();
        }
        Some(v)
    });
    refused(
        &w.run_as("alice", &["promote", "production", "--yes"]),
        &["is dated 2999-01-01T00:00:00Z, in the future"],
    );
    for d in w.production() {
        assert!(revision(&d).is_none());
    }
}

/// Hole 6: with signers, the promoter is who the allowed signers say their
/// key is, not `SHIPIT_USER`; the `promoted` record carries their
/// signature.
#[test]
fn self_approval_is_checked_against_the_promoters_key() {
    let w = world();
    let (alice, alice_pub) = w.key("alice");
    let (bob, bob_pub) = w.key("bob");
    let (stranger, _) = w.key("stranger");
    w.trust(&[("alice", &alice_pub), ("bob", &bob_pub)]);
    w.configure("shop", SIGNED, "true");
    w.deploy_staging();
    ok(&w.run_as("alice", &["approve", "production", "--sign-key", &alice]));
    // Alice, calling herself jenkins.
    refused(
        &w.run_as(
            "jenkins",
            &["promote", "production", "--yes", "--sign-key", &alice],
        ),
        &[
            "the only approval of release",
            "is by alice, who is promoting it",
        ],
    );
    let out = w.run_as("jenkins", &["promote", "production", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("pass --sign-key"), "{}", text(&out));
    refused(
        &w.run_as(
            "jenkins",
            &["promote", "production", "--yes", "--sign-key", &stranger],
        ),
        &["is not in the allowed signers of `production`"],
    );
    ok(&w.run_as(
        "jenkins",
        &["promote", "production", "--yes", "--sign-key", &bob],
    ));
    for d in w.production() {
        let p = ledger(&d)
            .into_iter()
            .find(|e| e["event"] == "promoted")
            .unwrap();
        assert_eq!(p["signed_by"], "bob");
        assert_eq!(p["approvers"], serde_json::json!(["alice"]));
        assert!(p["signature"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN SSH SIGNATURE-----"));
    }
}

/// Hole 8: `promote FROM TO` takes FROM only when it is TO's
/// `promote_from`.
#[test]
fn promoting_from_a_stage_other_than_promote_from_is_refused() {
    let w = world();
    w.configure("shop", "{ approvals: 0 }", "true");
    ok(&w.run_as("dev", &["deploy", "dev"]));
    refused(
        &w.run_as("alice", &["promote", "dev", "production", "--yes"]),
        &["`production` is promoted from `staging` only (its `promote_from`), not from `dev`"],
    );
    let out = w.run_as(
        "alice",
        &["promote", "dev", "production", "--yes", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let ev = json_lines(&out);
    assert_documented(&ev);
    assert_eq!(ev[0]["event"], "gate");
    assert_eq!(ev[0]["rules"][0]["rule"], "source");
    assert_eq!(ev[0]["rules"][0]["passed"], false);
    for d in w.production() {
        assert!(revision(&d).is_none());
    }
}

/// Hole 9: an approval pinned to the commit (or release) the release
/// manager saw is refused when staging runs another one by then.
#[test]
fn an_approval_pinned_to_another_commit_is_refused() {
    let w = world();
    w.configure("shop", "{ approvals: 1 }", "true");
    w.deploy_staging();
    let seen = git(&w.p.repo, &["rev-parse", "HEAD"]);
    let seen_release = find(&w.staging(), "verified", "dev")["release"]
        .as_str()
        .unwrap()
        .to_string();
    commit(&w.p.repo, "VERSION", "2\n");
    w.deploy_staging();
    refused(
        &w.run_as(
            "bob",
            &["approve", "production", "--release", &seen_release],
        ),
        &[&format!(
            "not release `{seen_release}`: nothing was recorded"
        )],
    );
    refused(
        &w.run_as("bob", &["approve", "production", "--commit", &seen]),
        &[&format!("not commit `{seen}`: nothing was recorded")],
    );
    for d in w.production() {
        assert!(!ledger(&d).iter().any(|e| e["event"] == "approved"));
    }
    let now = git(&w.p.repo, &["rev-parse", "HEAD"]);
    ok(&w.run_as("bob", &["approve", "production", "--commit", &now[..8]]));
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Hole 10: `promote --check` shows every rule, passed or why not, exits
/// 0 or 3 and deploys nothing; `promote` reports the same verdict as a
/// JSON `gate` event.
#[test]
fn the_gate_shows_every_rule_and_reports_it_as_a_json_event() {
    let w = world();
    w.configure("shop", "{ approvals: 1, soak: 2h }", "true");
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production"]));
    let out = w.run_as("alice", &["promote", "production", "--check"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    for want in [
        "ok   source: `staging` is `production`'s promote_from",
        "ok   trust_root: approvals are not signed; no pinned gate",
        "ok   candidate: release",
        "ok   rejection: no rejection stands",
        "FAIL soak: release",
        "ok   approvals: approved by bob (needs 1)",
        "ok   self_approval: the approvals that count are by someone other than the promoter",
        "promote production: the gate refuses",
    ] {
        assert!(s.contains(want), "wanted `{want}` in:\n{s}");
    }
    let out = w.run_as(
        "alice",
        &["promote", "production", "--check", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let ev = json_lines(&out);
    assert_documented(&ev);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["event"], "gate");
    assert_eq!(ev[0]["passed"], false);
    let soak = ev[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "soak")
        .unwrap();
    assert_eq!(soak["passed"], false);
    assert!(soak["detail"]
        .as_str()
        .unwrap()
        .contains("needs a soak of 2h00m"));
    // A refusal during `promote` is the same event, then the error.
    let out = w.run_as(
        "alice",
        &["promote", "production", "--yes", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let ev = json_lines(&out);
    assert_documented(&ev);
    let kinds: Vec<&str> = ev.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["gate", "error"]);
    for d in w.production() {
        assert!(revision(&d).is_none());
    }
    // A promotion that passes reports its gate before its deploy.
    w.configure("shop", "{ approvals: 1 }", "true");
    let out = w.run_as("alice", &["promote", "production", "--check"]);
    ok(&out);
    let out = w.run_as(
        "alice",
        &["promote", "production", "--yes", "--format", "json"],
    );
    ok(&out);
    let ev = json_lines(&out);
    assert_documented(&ev);
    assert_eq!(ev[0]["event"], "gate");
    assert_eq!(ev[0]["passed"], true);
    assert_eq!(ev[1]["event"], "run_started");
}

/// Reads a child's output as it comes, for waiting on a line or a prompt.
struct Stream {
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Stream {
    fn of(mut out: impl std::io::Read + Send + 'static) -> Stream {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Stream { seen, reader }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, what: &str) {
        wait_until(
            &format!("`{what}` in the output"),
            Duration::from_secs(60),
            || self.text().contains(what),
        );
    }

    fn finish(self) -> String {
        let Stream { seen, reader } = self;
        reader.join().unwrap();
        let bytes = seen.lock().unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Hole 7: a rejection recorded while the release manager reads the prompt
/// is not missed: the gate is evaluated again after it.
#[test]
fn a_rejection_recorded_during_the_prompt_is_seen() {
    use std::io::Write;
    use std::process::Stdio;
    let w = world();
    w.configure("shop", "{ approvals: 1, self_approval: true }", "true");
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production"]));
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
    let out = Stream::of(child.stdout.take().unwrap());
    out.wait_for("type `production` to promote, as alice");
    assert!(
        out.text().contains("gate: open, approved by bob"),
        "{}",
        out.text()
    );
    ok(&w.run_as("carol", &["approve", "production", "--reject"]));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"production\n")
        .unwrap();
    let status = child.wait().unwrap();
    let all = out.finish();
    assert_eq!(status.code(), Some(3), "{all}");
    assert!(
        all.contains("was rejected for `production` by carol"),
        "{all}"
    );
    for d in w.production() {
        assert!(revision(&d).is_none());
    }
}

/// Hole 7: a rejection recorded while the promotion waits for the lock is
/// not missed: the gate is evaluated again once the lock is held, and a
/// refusal frees the lock and changes nothing.
#[test]
fn a_rejection_recorded_while_waiting_for_the_lock_is_seen() {
    use std::process::Stdio;
    let w = world();
    w.configure("shop", "{ approvals: 1 }", "true");
    w.deploy_staging();
    ok(&w.run_as("bob", &["approve", "production"]));
    ok(&w.run_as("ops", &["lock", "production", "-m", "maintenance"]));
    let mut child = shipit_cmd(
        &w.p.dir,
        &["promote", "production", "--yes", "--wait-lock", "2m"],
    )
    .env("SHIPIT_USER", "alice")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let out = Stream::of(child.stdout.take().unwrap());
    let err = Stream::of(child.stderr.take().unwrap());
    out.wait_for("waiting for it (--wait-lock)");
    ok(&w.run_as("carol", &["approve", "production", "--reject"]));
    ok(&w.run_as("ops", &["unlock", "production"]));
    let status = child.wait().unwrap();
    let all = format!("{}\n{}", out.finish(), err.finish());
    assert_eq!(status.code(), Some(3), "{all}");
    assert!(
        all.contains("promote refused once the lock was held: release")
            && all.contains("was rejected for `production` by carol"),
        "{all}"
    );
    for d in w.production() {
        assert!(revision(&d).is_none());
        assert!(!d.join(".shipit/lock").exists(), "{}", d.display());
    }
}
