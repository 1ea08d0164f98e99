//! `submodules: true` (Capistrano's and ansistrano's submodule support,
//! Deployer's `git_recursive`): the commit's git submodules, nested ones
//! too, are in every release, with either strategy, over ssh on real sshd
//! hosts.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::project::{commit, current, git, text, Project};

/// A repository `name` beside the application's, with one file.
fn library(w: &Project, name: &str, file: &str, body: &str) -> PathBuf {
    let dir = w.repo.parent().unwrap().join(name);
    fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    commit(&dir, file, body);
    dir
}

/// `git submodule add URL PATH` in `repo` (local paths are fine here: the
/// test's own repositories), committed.
fn add_submodule(repo: &Path, url: &str, path: &str) {
    git(
        repo,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            url,
            path,
        ],
    );
    git(repo, &["commit", "-q", "-m", &format!("add {path}")]);
}

/// Moves the submodule at `path` of `repo` to the newest commit of its
/// `main`, committed.
fn bump_submodule(repo: &Path, path: &str) {
    let sub = repo.join(path);
    git(
        &sub,
        &[
            "-c",
            "protocol.file.allow=always",
            "pull",
            "-q",
            "origin",
            "main",
        ],
    );
    git(repo, &["add", path]);
    git(repo, &["commit", "-q", "-m", &format!("bump {path}")]);
}

fn release_dir(d: &Path) -> PathBuf {
    d.join(current(d).expect("current is set"))
}

/// The application has `lib` (relative URL `../lib`), which has
/// `vendor` (relative to lib's URL, `../vendor`): both land in the release
/// at their paths, at the commits the gitlinks name, on every host and
/// with either strategy; a later commit of the submodule reaches the next
/// release through the hosts' existing mirror.
#[test]
fn submodules_nested_ones_too_land_in_every_release() {
    for strategy in ["git", "copy"] {
        let w = Project::new(2);
        let vendor = library(&w, "vendor", "vendor.txt", "vendored v1\n");
        let lib = library(&w, "lib", "lib.txt", "lib v1\n");
        add_submodule(&lib, "../vendor", "third_party/vendor");
        add_submodule(&w.repo, "../lib", "lib");
        w.write_config(
            &format!("strategy: {strategy}\nsubmodules: true\n"),
            "",
            |_| String::new(),
        );
        w.deploy_ok();
        for d in w.hosts() {
            let rel = release_dir(&d);
            assert_eq!(
                fs::read_to_string(rel.join("lib/lib.txt")).unwrap(),
                "lib v1\n",
                "{strategy}"
            );
            assert_eq!(
                fs::read_to_string(rel.join("lib/third_party/vendor/vendor.txt")).unwrap(),
                "vendored v1\n",
                "{strategy}"
            );
            assert_eq!(fs::read_to_string(rel.join("README")).unwrap(), "the app\n");
        }

        commit(&vendor, "vendor.txt", "vendored v2\n");
        bump_submodule(&lib, "third_party/vendor");
        commit(&lib, "lib.txt", "lib v2\n");
        bump_submodule(&w.repo, "lib");
        let sha = git(&w.repo, &["rev-parse", "HEAD"]);
        w.deploy_ok();
        for d in w.hosts() {
            let rel = release_dir(&d);
            assert_eq!(
                fs::read_to_string(rel.join("REVISION")).unwrap(),
                format!("{sha}\n")
            );
            assert_eq!(
                fs::read_to_string(rel.join("lib/lib.txt")).unwrap(),
                "lib v2\n",
                "{strategy}"
            );
            assert_eq!(
                fs::read_to_string(rel.join("lib/third_party/vendor/vendor.txt")).unwrap(),
                "vendored v2\n",
                "{strategy}"
            );
            let hidden: Vec<String> = fs::read_dir(d.join("releases"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect();
            assert!(hidden.is_empty(), "{strategy}: work files left: {hidden:?}");
        }
    }
}

/// Off by default: the submodule's path stays without its files, as with
/// `git archive`, and no submodule repository is fetched.
#[test]
fn without_submodules_the_paths_stay_empty() {
    for strategy in ["git", "copy"] {
        let w = Project::new(1);
        library(&w, "lib", "lib.txt", "lib v1\n");
        add_submodule(&w.repo, "../lib", "lib");
        w.write_config(&format!("strategy: {strategy}\n"), "", |_| String::new());
        w.deploy_ok();
        let d = &w.hosts()[0];
        assert!(!release_dir(d).join("lib/lib.txt").exists(), "{strategy}");
        assert!(!d.join("repo-modules").exists(), "{strategy}");
    }
}

/// `submodules` with `repo_tree`: the submodules inside that directory
/// land at their paths relative to it.
#[test]
fn submodules_inside_repo_tree_land_relative_to_it() {
    for strategy in ["git", "copy"] {
        let w = Project::new(1);
        library(&w, "lib", "lib.txt", "lib v1\n");
        fs::create_dir_all(w.repo.join("services/api")).unwrap();
        commit(&w.repo, "services/api/index.txt", "the api\n");
        add_submodule(&w.repo, "../lib", "services/api/vendor/lib");
        w.write_config(
            &format!("strategy: {strategy}\nsubmodules: true\nrepo_tree: services/api\n"),
            "",
            |_| String::new(),
        );
        w.deploy_ok();
        let rel = release_dir(&w.hosts()[0]);
        assert_eq!(
            fs::read_to_string(rel.join("vendor/lib/lib.txt")).unwrap(),
            "lib v1\n",
            "{strategy}"
        );
        assert_eq!(
            fs::read_to_string(rel.join("index.txt")).unwrap(),
            "the api\n"
        );
    }
}

/// A gitlink naming a commit its repository does not have fails the
/// deploy, naming the submodule and the commit, and `current` stays where
/// it was.
#[test]
fn a_missing_submodule_commit_fails_the_deploy() {
    for strategy in ["git", "copy"] {
        let w = Project::new(1);
        library(&w, "lib", "lib.txt", "lib v1\n");
        add_submodule(&w.repo, "../lib", "lib");
        w.write_config(
            &format!("strategy: {strategy}\nsubmodules: true\n"),
            "",
            |_| String::new(),
        );
        w.deploy_ok();
        let d = &w.hosts()[0];
        let before = current(d);

        let ghost = "0123456789abcdef0123456789abcdef01234567";
        git(
            &w.repo,
            &[
                "update-index",
                "--cacheinfo",
                &format!("160000,{ghost},lib"),
            ],
        );
        git(&w.repo, &["commit", "-q", "-m", "ghost"]);
        let out = w.deploy();
        assert_ne!(out.status.code(), Some(0), "{}", text(&out));
        let all = text(&out);
        assert!(
            all.contains(ghost) && all.contains("lib"),
            "{strategy}: {all}"
        );
        assert_eq!(current(d), before, "{strategy}");
        // A failed creation leaves nothing behind: no release dir, no
        // archive, no work files.
        let left: Vec<String> = fs::read_dir(d.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 1, "{strategy}: {left:?}");
    }
}
