//! What users coming from Capistrano, Deployer and ansistrano find in a
//! release, over ssh on real sshd hosts: REVISION_TIME, fixed release ids,
//! a subtree of the repository, shared dirs seeded from the release.

mod support;

use std::fs;

use support::project::{current, git, Project};

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
