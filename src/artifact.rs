//! Strategy copy: the release archive, built once from the commit with git2
//! and uploaded to every host.
//!
//! The archive is reproducible: entries in tree order, owner 0, and every
//! mtime set to the commit's time, so the same commit always gives the same
//! bytes and the same digest (promotion relies on that).

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
    #[error("cannot build the archive of `{commit}`: {reason}")]
    Build { commit: String, reason: String },
}

/// A built release archive (tar).
#[derive(Debug, Clone)]
pub struct Artifact {
    pub bytes: Arc<Vec<u8>>,
    /// `sha256:<hex>`.
    pub digest: String,
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Builds the tar of `commit`'s tree in the repository at `repo_path`.
pub fn build(repo_path: &Path, commit: &str) -> Result<Artifact, ArtifactError> {
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
    let tree = c.tree().map_err(|_| no_commit())?;
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
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
}
