//! The release flow over ssh on a fleet of real sshd hosts: what a user
//! checks on the hosts after `shipit deploy`.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Duration;

use support::project::{
    commit, current, expect_exit, git, ledger, releases, shipit_cmd, text, wait_until, Project,
};

const TASKS: &str = r#"linked_files: [.env]
linked_dirs: [log, tmp/pids]
vars: { port: 8080 }
templates:
  - { src: templates/app.env.tera, dest: shared/.env, mode: "0600" }
tasks:
  build:
    after: link_shared
    run: "cat REVISION > BUILT"
  migrate:
    after: build
    once: true
    run: "echo {{ release }} >> log/migrated"
  restart:
    run: "echo restarted >> log/restarts"
  smoke_test:
    run: "test -s BUILT && grep -q PORT= .env"
    retries: 2
    interval: 200ms
"#;

#[test]
fn five_hosts_get_the_same_release_commit_links_templates_and_ledger() {
    let w = Project::new(5);
    // Host 3 overrides the port var.
    w.write_config(TASKS, "", |i| {
        if i == 3 {
            ", vars: { port: 9090 }".into()
        } else {
            String::new()
        }
    });
    let sha = git(&w.repo, &["rev-parse", "HEAD"]);
    let stdout = w.deploy_ok();

    let hosts = w.hosts();
    let id = releases(&hosts[0])[0].clone();
    let mut migrated = 0;
    for (i, d) in hosts.iter().enumerate() {
        let alias = format!("fleet-{}", i + 1);
        assert_eq!(releases(d), vec![id.clone()], "{alias}");
        assert_eq!(current(d).unwrap(), format!("releases/{id}"), "{alias}");
        let rel = d.join("releases").join(&id);
        assert_eq!(
            fs::read_to_string(rel.join("REVISION")).unwrap().trim(),
            sha,
            "{alias}"
        );
        assert_eq!(
            fs::read_to_string(rel.join("BUILT")).unwrap().trim(),
            sha,
            "{alias}"
        );
        for p in ["log", "tmp/pids", ".env"] {
            assert_eq!(
                fs::read_link(rel.join(p)).unwrap(),
                d.join("shared").join(p),
                "{alias} {p}"
            );
        }
        let port = if i == 2 { 9090 } else { 8080 };
        assert_eq!(
            fs::read_to_string(d.join("shared/.env")).unwrap(),
            format!("PORT={port}\nHOST={alias}\nRELEASE={id}\n")
        );
        assert_eq!(
            fs::metadata(d.join("shared/.env")).unwrap().mode() & 0o777,
            0o600
        );
        if d.join("shared/log/migrated").exists() {
            migrated += 1;
        }
        assert_eq!(
            fs::read_to_string(d.join("shared/log/restarts")).unwrap(),
            "restarted\n"
        );
        let events: Vec<(String, String, String)> = ledger(d)
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap().to_string(),
                    e["release"].as_str().unwrap().to_string(),
                    e["commit"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            events,
            ["staged", "published", "verified"]
                .iter()
                .map(|e| (e.to_string(), id.clone(), sha.clone()))
                .collect::<Vec<_>>(),
            "{alias}"
        );
        let e = &ledger(d)[0];
        assert_eq!(e["host"], alias.as_str());
        assert_eq!(e["user"], "tester");
        assert_eq!(e["stage"], "staging");
        assert!(!d.join(".shipit/lock").exists(), "{alias} still locked");
        assert_eq!(
            fs::read_to_string(d.join("revisions.log")).unwrap().trim(),
            format!("Branch main (at {sha}) deployed as release {id} by tester")
        );
    }
    assert_eq!(migrated, 1, "a `once` task runs on exactly one host");
    assert!(
        stdout.contains(&format!("deploy staging: ok — release {id}")),
        "{stdout}"
    );
    for i in 1..=5 {
        assert!(
            stdout.contains(&format!("[fleet-{i}] publish ok")),
            "{stdout}"
        );
    }
}

#[test]
fn warm_deploys_reuse_the_mirror_and_keep_five_releases() {
    let w = Project::new(3);
    w.write_config(TASKS, "", |_| String::new());
    w.deploy_ok();
    let hosts = w.hosts();
    let mirror_inode = fs::metadata(hosts[0].join("repo")).unwrap().ino();
    let before: Vec<usize> = w
        .fleet
        .hosts()
        .iter()
        .map(|h| h.commands_started())
        .collect();
    let sha = commit(&w.repo, "VERSION", "2\n");
    let stdout = w.deploy_ok();
    // The mirror was fetched into, not cloned again.
    assert_eq!(
        fs::metadata(hosts[0].join("repo")).unwrap().ino(),
        mirror_inode
    );
    // A warm deploy costs a handful of commands per host, counted by sshd.
    for (i, h) in w.fleet.hosts().iter().enumerate() {
        let used = h.commands_started() - before[i];
        assert!(used <= 6, "{} ran {used} commands:\n{stdout}", h.alias);
    }
    for d in &hosts {
        assert_eq!(
            fs::read_to_string(d.join("current/REVISION"))
                .unwrap()
                .trim(),
            sha
        );
        assert_eq!(
            fs::read_to_string(d.join("current/VERSION")).unwrap(),
            "2\n"
        );
    }
    for i in 3..=7 {
        commit(&w.repo, "VERSION", &format!("{i}\n"));
        w.deploy_ok();
    }
    for d in &hosts {
        let rels = releases(d);
        assert_eq!(rels.len(), 5, "{rels:?}");
        assert_eq!(current(d).unwrap(), format!("releases/{}", rels[4]));
        assert_eq!(
            fs::read_to_string(d.join("current/VERSION")).unwrap(),
            "7\n"
        );
    }
    // Every host has the same five releases.
    let first = releases(&hosts[0]);
    assert!(hosts.iter().all(|d| releases(d) == first));
}

#[test]
fn strategy_copy_deploys_the_same_archive_everywhere() {
    let w = Project::new(3);
    w.write_config(&format!("strategy: copy\n{TASKS}"), "", |_| String::new());
    let sha = git(&w.repo, &["rev-parse", "HEAD"]);
    w.deploy_ok();
    let mut digests = Vec::new();
    for d in w.hosts() {
        assert!(!d.join("repo").exists());
        assert_eq!(
            fs::read_to_string(d.join("current/REVISION"))
                .unwrap()
                .trim(),
            sha
        );
        assert_eq!(
            fs::read_to_string(d.join("current/README")).unwrap(),
            "the app\n"
        );
        digests.push(ledger(&d)[0]["digest"].as_str().unwrap().to_string());
    }
    assert!(digests[0].starts_with("sha256:"));
    assert!(digests.iter().all(|x| *x == digests[0]), "{digests:?}");
}

#[test]
fn a_missing_linked_file_fails_check_naming_file_and_host() {
    let w = Project::new(3);
    // .env comes from no template here: it must already be in shared/.
    w.write_config("linked_files: [.env]\n", "", |_| String::new());
    for (i, d) in w.hosts().iter().enumerate() {
        if i != 1 {
            fs::create_dir_all(d.join("shared")).unwrap();
            fs::write(d.join("shared/.env"), "X=1\n").unwrap();
        }
    }
    let out = expect_exit(w.deploy(), 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let missing = w.hosts()[1].join("shared/.env");
    assert!(
        stdout.contains(&format!(
            "[fleet-2]   | missing linked file: {}",
            missing.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("staging failed on fleet-2; no host was switched"),
        "{stdout}"
    );
    for d in w.hosts() {
        assert!(!d.join("current").exists());
        assert!(
            releases(&d).is_empty(),
            "staged release left on {}",
            d.display()
        );
        assert!(!d.join(".shipit/lock").exists());
    }
}

#[test]
fn a_concurrent_deploy_of_the_stage_is_refused_with_exit_4() {
    let w = Project::new(2);
    let gate = w.dir.join("gate");
    let started = w.dir.join("started");
    w.write_config(
        &format!(
            "tasks:\n  hold:\n    after: create_release\n    once: true\n    run: \"touch {s}; while [ ! -e {g} ]; do sleep 0.05; done\"\n",
            s = started.display(),
            g = gate.display()
        ),
        "",
        |_| String::new(),
    );
    let first = shipit_cmd(&w.dir, &["deploy", "staging"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "the first deploy holds the lock",
        Duration::from_secs(60),
        || started.exists(),
    );
    let second = w.deploy();
    fs::write(&gate, "").unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(second.status.code(), Some(4), "{}", text(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("is locked on `fleet-1` by `tester`"),
        "{stdout}"
    );
    assert!(stdout.contains("deploy of `staging`"), "{stdout}");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    for d in w.hosts() {
        assert_eq!(
            releases(&d).len(),
            1,
            "only the first deploy made a release"
        );
        assert!(!d.join(".shipit/lock").exists());
    }
}
