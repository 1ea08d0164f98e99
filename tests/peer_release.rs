//! What users coming from Capistrano, Deployer and ansistrano find in a
//! release, over ssh on real sshd hosts: REVISION_TIME, fixed release ids,
//! a subtree of the repository, shared dirs seeded from the release.

mod support;

use std::fs;

use support::project::{commit, current, events, git, releases, stderr, text, Project};

/// Both strategies write the commit's time beside its SHA.
#[test]
fn each_release_has_revision_time_beside_revision() {
    for strategy in ["git", "copy"] {
        let w = Project::new(1);
        w.write_config(&format!("strategy: {strategy}\n"), "", |_| String::new());
        w.deploy_ok();
        let sha = git(&w.repo, &["rev-parse", "HEAD"]);
        let time = git(&w.repo, &["show", "-s", "--format=%ct", "HEAD"]);
        let d = &w.hosts()[0];
        let rel = d.join(current(d).expect("current is set"));
        assert_eq!(
            fs::read_to_string(rel.join("REVISION")).unwrap(),
            format!("{sha}\n"),
            "{strategy}"
        );
        assert_eq!(
            fs::read_to_string(rel.join("REVISION_TIME")).unwrap(),
            format!("{time}\n"),
            "{strategy}"
        );
        assert!(time.parse::<i64>().unwrap() > 1_000_000_000, "{time}");
    }
}

/// `deploy --release ID` names the release; an id already on a host, or one
/// that sorts before a release there, is refused with nothing changed; and
/// rollback and cleanup order the named releases.
#[test]
fn a_release_named_by_the_pipeline_is_used_as_given_and_never_reused() {
    let w = Project::new(2);
    w.write_config("", "", |_| String::new());
    let yml = w.dir.join("deploy.yml");
    let text = fs::read_to_string(&yml).unwrap();
    fs::write(&yml, text.replace("keep_releases: 5", "keep_releases: 1")).unwrap();
    let first = git(&w.repo, &["rev-parse", "HEAD"]);
    w.run_expect(&["deploy", "staging", "--release", "build-0001"], 0);
    for d in w.hosts() {
        assert_eq!(current(&d).as_deref(), Some("releases/build-0001"));
        assert_eq!(
            fs::read_to_string(d.join("releases/build-0001/REVISION")).unwrap(),
            format!("{first}\n")
        );
    }

    // The same id with another commit, or with the same one: refused.
    let second = commit(&w.repo, "app.txt", "two\n");
    let err = stderr(&w.run_expect(&["deploy", "staging", "--release", "build-0001"], 2));
    assert!(
        err.contains(&format!(
            "release `build-0001` already exists there with commit {first}, not {second}"
        )),
        "{err}"
    );
    let err = stderr(&w.run_expect(
        &[
            "deploy",
            "staging",
            "--release",
            "build-0001",
            "--revision",
            &first,
        ],
        2,
    ));
    assert!(
        err.contains("already exists there with the same commit"),
        "{err}"
    );
    // An id that sorts before the hosts' releases: refused.
    let err = stderr(&w.run_expect(&["deploy", "staging", "--release", "build-0000"], 2));
    assert!(
        err.contains("release `build-0001` there sorts after `build-0000`"),
        "{err}"
    );
    // Not a simple name: refused before connecting.
    let err = stderr(&w.run_expect(&["deploy", "staging", "--release", "../x"], 2));
    assert!(err.contains("is not a usable release id"), "{err}");
    for d in w.hosts() {
        assert_eq!(current(&d).as_deref(), Some("releases/build-0001"));
        assert_eq!(releases(&d), ["build-0001"]);
        assert!(!d.join(".shipit/lock").exists(), "the lock was freed");
    }

    // The next named release; a minted id would sort before it: refused.
    w.run_expect(&["deploy", "staging", "--release", "build-0002"], 0);
    let err = stderr(&w.deploy_expect(2));
    assert!(err.contains("keep passing `--release`"), "{err}");
    w.run_expect(&["deploy", "staging", "--release", "build-0003"], 0);
    w.run_expect(&["deploy", "staging", "--release", "build-0004"], 0);
    for d in w.hosts() {
        assert_eq!(current(&d).as_deref(), Some("releases/build-0004"));
        // keep_releases 1 and the rollback target stay; the oldest named
        // releases went.
        let left = releases(&d);
        assert!(!left.contains(&"build-0001".to_string()), "{left:?}");
        assert!(left.contains(&"build-0003".to_string()), "{left:?}");
    }
    // Rollback goes to the named release before.
    w.run_expect(&["rollback", "staging"], 0);
    for d in w.hosts() {
        assert_eq!(current(&d).as_deref(), Some("releases/build-0003"));
        assert!(events(&d).contains(&("rolled_back".to_string(), "build-0004".to_string())));
    }
}

/// `repo_tree` deploys one directory of a monorepo, its contents at the
/// release's root, with either strategy; a directory the commit lacks fails
/// the deploy with its name.
#[test]
fn repo_tree_deploys_one_directory_of_the_repository() {
    for (strategy, missing_exit) in [("git", 1), ("copy", 2)] {
        let w = Project::new(1);
        fs::create_dir_all(w.repo.join("services/api/bin")).unwrap();
        fs::write(w.repo.join("services/api/bin/serve"), "api\n").unwrap();
        let sha = commit(&w.repo, "services/api/index.txt", "the api\n");
        w.write_config(
            &format!("strategy: {strategy}\nrepo_tree: ./services/api/\n"),
            "",
            |_| String::new(),
        );
        w.deploy_ok();
        let d = &w.hosts()[0];
        let rel = d.join(current(d).expect("current is set"));
        assert_eq!(
            fs::read_to_string(rel.join("index.txt")).unwrap(),
            "the api\n"
        );
        assert_eq!(fs::read_to_string(rel.join("bin/serve")).unwrap(), "api\n");
        assert!(!rel.join("README").exists(), "{strategy}: only the subtree");
        assert!(
            !rel.join("services").exists(),
            "{strategy}: only the subtree"
        );
        assert_eq!(
            fs::read_to_string(rel.join("REVISION")).unwrap(),
            format!("{sha}\n")
        );

        w.write_config(
            &format!("strategy: {strategy}\nrepo_tree: services/nope\n"),
            "",
            |_| String::new(),
        );
        let out = w.deploy_expect(missing_exit);
        let all = text(&out);
        assert!(
            all.contains("repo_tree `services/nope` is not a directory in commit"),
            "{strategy}: {all}"
        );
        assert_eq!(
            current(d),
            Some(rel.strip_prefix(d).unwrap().to_string_lossy().into_owned())
        );
    }
}

/// With `seed_linked_dirs`, a linked dir missing from `shared/` starts as a
/// copy of the release's; once there it is never overwritten. Without it,
/// the shared dir starts empty.
#[test]
fn seed_linked_dirs_copies_the_first_release_into_shared() {
    for seed in [true, false] {
        let w = Project::new(1);
        fs::create_dir_all(w.repo.join("storage/app")).unwrap();
        commit(&w.repo, "storage/app/default.txt", "v1\n");
        w.write_config(
            &format!("linked_dirs: [storage, log]\nseed_linked_dirs: {seed}\n"),
            "",
            |_| String::new(),
        );
        w.deploy_ok();
        let d = &w.hosts()[0];
        let shared = d.join("shared");
        let rel = d.join(current(d).expect("current is set"));
        assert_eq!(
            fs::read_link(rel.join("storage")).unwrap(),
            shared.join("storage")
        );
        assert!(
            shared.join("log").is_dir(),
            "a dir the release lacks is created"
        );
        assert_eq!(fs::read_dir(shared.join("log")).unwrap().count(), 0);
        if !seed {
            assert_eq!(fs::read_dir(shared.join("storage")).unwrap().count(), 0);
            continue;
        }
        assert_eq!(
            fs::read_to_string(shared.join("storage/app/default.txt")).unwrap(),
            "v1\n"
        );
        // Once seeded, shared is the operator's: the next release's copy
        // does not overwrite it.
        fs::write(shared.join("storage/uploaded.txt"), "user data\n").unwrap();
        commit(&w.repo, "storage/app/default.txt", "v2\n");
        w.deploy_ok();
        assert_eq!(
            fs::read_to_string(shared.join("storage/app/default.txt")).unwrap(),
            "v1\n"
        );
        assert_eq!(
            fs::read_to_string(shared.join("storage/uploaded.txt")).unwrap(),
            "user data\n"
        );
        let names: Vec<String> = fs::read_dir(&shared)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("seed")), "{names:?}");
    }
}
