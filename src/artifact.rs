//! Strategy copy: the release archive, built once from the commit with git2
//! and uploaded to every host.
//!
//! The archive is reproducible: entries sorted (git's tree order, which is
//! byte order of the paths with directories written `dir/`), owner and
//! group 0 with no names, modes only 644, 755 or 777 (links), and every
//! mtime set to the commit's time, so the same commit always gives the same
//! bytes and the same digest, on any machine and any day (promotion relies
//! on that; a golden test pins the digest of a sample app).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot open repository `{repo}` to build the archive: {reason}")]
    Open { repo: String, reason: String },
    #[error("commit `{commit}` is not in `{repo}`")]
    NoCommit { repo: String, commit: String },
    #[error("repo_tree `{tree}` is not a directory in commit `{commit}`")]
    NoTree { commit: String, tree: String },
    #[error("cannot build the archive of `{commit}`: {reason}")]
    Build { commit: String, reason: String },
}

/// A built release archive (tar).
#[derive(Debug, Clone)]
pub struct Artifact {
    pub bytes: Arc<Vec<u8>>,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The commit's committer time, epoch seconds.
    pub commit_time: i64,
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Builds the tar of `commit`'s tree in the repository at `repo_path`.
pub fn build(repo_path: &Path, commit: &str) -> Result<Artifact, ArtifactError> {
    build_tree(repo_path, commit, None)
}

/// Builds the tar of `commit`'s tree, or with `subtree` (`repo_tree`) of
/// that directory only, its contents at the archive's root.
pub fn build_tree(
    repo_path: &Path,
    commit: &str,
    subtree: Option<&str>,
) -> Result<Artifact, ArtifactError> {
    let repo_name = repo_path.display().to_string();
    let repo = git2::Repository::open(repo_path).map_err(|e| ArtifactError::Open {
        repo: repo_name.clone(),
        reason: e.message().to_string(),
    })?;
    let no_commit = || ArtifactError::NoCommit {
        repo: repo_name.clone(),
        commit: commit.to_string(),
    };
    let oid = git2::Oid::from_str(commit).map_err(|_| no_commit())?;
    let c = repo.find_commit(oid).map_err(|_| no_commit())?;
    let mut tree = c.tree().map_err(|_| no_commit())?;
    if let Some(sub) = subtree {
        let no_tree = || ArtifactError::NoTree {
            commit: commit.to_string(),
            tree: sub.to_string(),
        };
        let entry = tree.get_path(Path::new(sub)).map_err(|_| no_tree())?;
        if entry.kind() != Some(git2::ObjectType::Tree) {
            return Err(no_tree());
        }
        tree = repo.find_tree(entry.id()).map_err(|_| no_tree())?;
    }
    let mtime = c.time().seconds().max(0) as u64;
    let fail = |reason: String| ArtifactError::Build {
        commit: commit.to_string(),
        reason,
    };

    let mut builder = tar::Builder::new(Vec::new());
    let mut error: Option<String> = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
        let name = match entry.name() {
            Ok(n) => format!("{root}{n}"),
            Err(_) => {
                error = Some(format!("a file name in `{root}` is not UTF-8"));
                return git2::TreeWalkResult::Abort;
            }
        };
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        let result = match entry.kind() {
            Some(git2::ObjectType::Tree) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, format!("{name}/"), std::io::empty())
            }
            Some(git2::ObjectType::Blob) => {
                let blob = match repo.find_blob(entry.id()) {
                    Ok(b) => b,
                    Err(e) => {
                        error = Some(format!("`{name}`: {}", e.message()));
                        return git2::TreeWalkResult::Abort;
                    }
                };
                if entry.filemode() == 0o120000 {
                    let target = String::from_utf8_lossy(blob.content()).into_owned();
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, &name, target)
                } else {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(if entry.filemode() == 0o100755 {
                        0o755
                    } else {
                        0o644
                    });
                    header.set_size(blob.content().len() as u64);
                    builder.append_data(&mut header, &name, blob.content())
                }
            }
            // Submodules (commits) are not part of the archive, as with
            // `git archive`.
            _ => Ok(()),
        };
        match result {
            Ok(()) => git2::TreeWalkResult::Ok,
            Err(e) => {
                error = Some(format!("`{name}`: {e}"));
                git2::TreeWalkResult::Abort
            }
        }
    })
    .map_err(|e| fail(e.message().to_string()))?;
    if let Some(e) = error {
        return Err(fail(e));
    }
    let mut bytes = builder.into_inner().map_err(|e| fail(e.to_string()))?;
    bytes.flush().map_err(|e| fail(e.to_string()))?;
    let digest = digest_of(&bytes);
    Ok(Artifact {
        bytes: Arc::new(bytes),
        digest,
        commit_time: c.time().seconds(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    /// Runs git in `dir` as a test's author; its stdout.
    pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn archives_are_reproducible_and_keep_modes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::fs::write(d.join("bin/run"), "#!/bin/sh\n").unwrap();
        std::fs::write(d.join("README"), "hi\n").unwrap();
        std::os::unix::fs::symlink("README", d.join("LINK")).unwrap();
        git(d, &["add", "-A"]);
        git(d, &["update-index", "--chmod=+x", "bin/run"]);
        git(d, &["commit", "-q", "-m", "one"]);
        let sha = git(d, &["rev-parse", "HEAD"]);
        let a = build(d, &sha).unwrap();
        let b = build(d, &sha).unwrap();
        assert_eq!(a.digest, b.digest);
        assert!(a.digest.starts_with("sha256:"));

        let out = tempfile::tempdir().unwrap();
        tar::Archive::new(&a.bytes[..]).unpack(out.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.path().join("bin/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
        assert_eq!(
            std::fs::read_link(out.path().join("LINK")).unwrap(),
            Path::new("README")
        );
        assert_eq!(
            std::fs::read_to_string(out.path().join("README")).unwrap(),
            "hi\n"
        );
    }

    /// The sample app, committed with fixed names and dates: the same
    /// commit on any machine, any day.
    fn sample_app(d: &Path) -> String {
        let run = |args: &[&str]| {
            let out = Command::new("git")
                .args(args)
                .current_dir(d)
                .env("GIT_AUTHOR_NAME", "Sample")
                .env("GIT_AUTHOR_EMAIL", "sample@example.invalid")
                .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
                .env("GIT_COMMITTER_NAME", "Sample")
                .env("GIT_COMMITTER_EMAIL", "sample@example.invalid")
                .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        run(&["init", "-q", "-b", "main"]);
        let files: [(&str, &str); 6] = [
            ("README.md", "# sample\n"),
            ("bin/serve", "#!/bin/sh\nexec ./app\n"),
            ("bin-tools/lint", "lint\n"),
            ("config/app.yml", "port: 8080\n"),
            ("public/index.html", "<h1>hi</h1>\n"),
            (
                "deep/a/path/longer/than/the/hundred/bytes/a/plain/tar/header/holds/for/one/name/file.txt",
                "long\n",
            ),
        ];
        for (path, body) in files {
            let p = d.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        std::os::unix::fs::symlink("config/app.yml", d.join("app.yml")).unwrap();
        run(&["add", "-A"]);
        run(&["update-index", "--chmod=+x", "bin/serve"]);
        run(&["commit", "-q", "-m", "sample"]);
        run(&["rev-parse", "HEAD"])
    }

    /// Pins the archive of the sample app. If this changes, a release
    /// promoted after upgrading shipit would not match the digest staging
    /// verified: change it only on purpose, and say so in CHANGELOG.md.
    #[test]
    fn golden_digest_of_the_sample_app() {
        let dir = tempfile::tempdir().unwrap();
        let sha = sample_app(dir.path());
        assert_eq!(sha, GOLDEN_COMMIT, "the sample commit itself changed");
        let a = build(dir.path(), &sha).unwrap();
        assert_eq!(a.digest, GOLDEN_DIGEST);

        // Another clone, checked out elsewhere and later (other mtimes,
        // another umask): the same bytes.
        let other = tempfile::tempdir().unwrap();
        let out = Command::new("git")
            .args(["clone", "-q", "--no-hardlinks"])
            .arg(dir.path())
            .arg(other.path().join("clone"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            build(&other.path().join("clone"), &sha).unwrap().digest,
            GOLDEN_DIGEST
        );

        // Sorted entries, fixed owners and mtimes.
        let mut archive = tar::Archive::new(&a.bytes[..]);
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), 1_767_323_045, "2026-01-02T03:04:05Z");
            assert_eq!(h.username().unwrap(), Some(""));
            names.push(entry.path().unwrap().to_string_lossy().into_owned());
        }
        // Git's tree order walked depth first is byte order of the paths,
        // directories written `dir/`: `bin-tools/` before `bin/`.
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names.first().map(String::as_str), Some("README.md"));
        assert!(
            names.iter().any(|n| n.ends_with("/name/file.txt")),
            "{names:?}"
        );
    }

    const GOLDEN_COMMIT: &str = "867c25833af7dcf8d8c468652cf3b2a8564193fe";
    const GOLDEN_DIGEST: &str =
        "sha256:723680f9068bc5e17f8c1d1d15d3554f4ba763e7e3a5030cbbc81de873569358";

    #[test]
    fn unknown_commits_are_named() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        let e = build(dir.path(), "0123456789012345678901234567890123456789").unwrap_err();
        assert!(
            e.to_string()
                .contains("commit `0123456789012345678901234567890123456789` is not in"),
            "{e}"
        );
    }

    #[test]
    fn a_subtree_is_archived_at_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q"]);
        std::fs::create_dir_all(d.join("services/api/bin")).unwrap();
        std::fs::write(d.join("services/api/bin/run"), "api\n").unwrap();
        std::fs::write(d.join("services/api/README"), "api\n").unwrap();
        std::fs::write(d.join("top.txt"), "top\n").unwrap();
        git(d, &["add", "-A"]);
        git(d, &["commit", "-q", "-m", "x"]);
        let sha = git(d, &["rev-parse", "HEAD"]);
        let a = build_tree(d, &sha, Some("services/api")).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&a.bytes[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["README", "bin/", "bin/run"]);
        assert_ne!(a.digest, build(d, &sha).unwrap().digest);
        for bad in ["services/nope", "top.txt"] {
            let e = build_tree(d, &sha, Some(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("repo_tree `{bad}` is not a directory in commit `{sha}`")
            );
        }
    }
}
