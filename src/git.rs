//! Resolving what to deploy, once, on the machine running shipit.

use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot open repository `{repo}`: {reason}")]
    Open { repo: String, reason: String },
    #[error("`{reference}` is not a branch, tag or commit in `{repo}`")]
    UnknownRef { repo: String, reference: String },
    #[error("cannot list `{reference}` in `{repo}`: {reason}")]
    Remote {
        repo: String,
        reference: String,
        reason: String,
    },
}

/// The commit every host will get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Full SHA.
    pub commit: String,
    /// First line of its message (empty when only the SHA is known, as for
    /// remote repositories).
    pub subject: String,
    /// Committer time, epoch seconds (unknown for remote repositories: the
    /// host reads it from its mirror, or the archive's build does).
    pub time: Option<i64>,
}

fn is_url(repo: &str) -> bool {
    repo.contains("://") || (repo.contains('@') && repo.contains(':') && !repo.starts_with('/'))
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Resolves `reference` (branch, tag, `HEAD` or commit) in `repository`.
///
/// A local repository is read with git2. For a URL, `git ls-remote` asks the
/// server (through the user's own git and ssh set-up); a full SHA is taken
/// as is, and the hosts' fetch step checks that it exists.
pub fn resolve(repository: &str, reference: &str) -> Result<Resolved, GitError> {
    if is_url(repository) {
        return resolve_remote(repository, reference);
    }
    let repo = git2::Repository::open(Path::new(repository)).map_err(|e| GitError::Open {
        repo: repository.to_string(),
        reason: e.message().to_string(),
    })?;
    let unknown = || GitError::UnknownRef {
        repo: repository.to_string(),
        reference: reference.to_string(),
    };
    // A branch name that does not exist locally may exist as a remote
    // tracking branch.
    let obj = repo
        .revparse_single(reference)
        .or_else(|_| repo.revparse_single(&format!("origin/{reference}")))
        .map_err(|_| unknown())?;
    let commit = obj.peel_to_commit().map_err(|_| unknown())?;
    Ok(Resolved {
        commit: commit.id().to_string(),
        subject: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into_owned(),
        time: Some(commit.time().seconds()),
    })
}

/// A bare mirror of `url` in shipit's cache (`$XDG_CACHE_HOME/shipit` or
/// `~/.cache/shipit`), cloned once and fetched after, for building a
/// strategy-copy archive of a remote repository. Uses the system git, so
/// the user's own credentials and ssh set-up apply.
pub fn local_mirror(
    url: &str,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<std::path::PathBuf, GitError> {
    use sha2::{Digest, Sha256};
    let base = env
        .get("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("shipit/repos");
    let key = format!("{:x}", Sha256::digest(url.as_bytes()));
    let dir = base.join(&key[..16]);
    let fail = |reason: String| GitError::Remote {
        repo: url.to_string(),
        reference: "refs/*".to_string(),
        reason,
    };
    std::fs::create_dir_all(&base)
        .map_err(|e| fail(format!("cannot create `{}`: {e}", base.display())))?;
    let mut cmd = Command::new("git");
    if dir.join("HEAD").exists() {
        cmd.arg(format!("--git-dir={}", dir.display())).args([
            "fetch",
            "--quiet",
            "--prune",
            "origin",
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ]);
    } else {
        cmd.args(["clone", "--quiet", "--mirror", "--", url])
            .arg(&dir);
    }
    let out = cmd
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| fail(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(dir)
}

/// Whether `repository` names a remote (URL or scp-like) rather than a path.
pub fn is_remote(repository: &str) -> bool {
    is_url(repository)
}

fn resolve_remote(repository: &str, reference: &str) -> Result<Resolved, GitError> {
    if is_full_sha(reference) {
        return Ok(Resolved {
            commit: reference.to_lowercase(),
            subject: String::new(),
            time: None,
        });
    }
    let out = Command::new("git")
        .args(["ls-remote", "--", repository, reference])
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| GitError::Remote {
            repo: repository.to_string(),
            reference: reference.to_string(),
            reason: format!("cannot run git: {e}"),
        })?;
    if !out.status.success() {
        return Err(GitError::Remote {
            repo: repository.to_string(),
            reference: reference.to_string(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // Prefer an exact branch, then a peeled tag, then anything.
    let rows: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    let pick = rows
        .iter()
        .find(|(_, r)| *r == format!("refs/heads/{reference}"))
        .or_else(|| {
            rows.iter()
                .find(|(_, r)| *r == format!("refs/tags/{reference}^{{}}"))
        })
        .or_else(|| rows.first());
    match pick {
        Some((sha, _)) => Ok(Resolved {
            commit: sha.to_string(),
            subject: String::new(),
            time: None,
        }),
        None => Err(GitError::UnknownRef {
            repo: repository.to_string(),
            reference: reference.to_string(),
        }),
    }
}

/// The commits between `from` (exclusive) and `to`, newest first, at most
/// `max`, from the local repository (or shipit's mirror of a remote one).
pub fn changes(
    repository: &str,
    env: &std::collections::BTreeMap<String, String>,
    from: Option<&str>,
    to: &str,
    max: usize,
) -> Vec<String> {
    let path = if is_remote(repository) {
        match local_mirror(repository, env) {
            Ok(p) => p,
            Err(_) => return Vec::new(),
        }
    } else {
        std::path::PathBuf::from(repository)
    };
    let Ok(repo) = git2::Repository::open(path) else {
        return Vec::new();
    };
    let Ok(mut walk) = repo.revwalk() else {
        return Vec::new();
    };
    let Ok(to) = git2::Oid::from_str(to) else {
        return Vec::new();
    };
    if walk.push(to).is_err() {
        return Vec::new();
    }
    if let Some(f) = from.and_then(|f| git2::Oid::from_str(f).ok()) {
        let _ = walk.hide(f);
    }
    walk.flatten()
        .take(max)
        .filter_map(|oid| repo.find_commit(oid).ok())
        .map(|c| {
            format!(
                "{} {} ({})",
                &c.id().to_string()[..12],
                String::from_utf8_lossy(c.summary_bytes().unwrap_or_default()),
                c.author().name().unwrap_or("")
            )
        })
        .collect()
}

/// The subject line of `commit`, or nothing when it cannot be read.
pub fn subject(
    repository: &str,
    env: &std::collections::BTreeMap<String, String>,
    commit: &str,
) -> String {
    changes(repository, env, None, commit, 1)
        .into_iter()
        .next()
        .map(|l| l.split_once(' ').map(|(_, s)| s.to_string()).unwrap_or(l))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with_commits() -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
        let mut ids = Vec::new();
        let mut parent: Option<git2::Oid> = None;
        for i in 0..2 {
            std::fs::write(dir.path().join("f"), format!("{i}")).unwrap();
            let mut idx = repo.index().unwrap();
            idx.add_path(Path::new("f")).unwrap();
            let tree = repo.find_tree(idx.write_tree().unwrap()).unwrap();
            let parents: Vec<git2::Commit> = parent
                .iter()
                .map(|p| repo.find_commit(*p).unwrap())
                .collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            let id = repo
                .commit(
                    Some("HEAD"),
                    &sig,
                    &sig,
                    &format!("commit {i}"),
                    &tree,
                    &refs,
                )
                .unwrap();
            parent = Some(id);
            ids.push(id.to_string());
        }
        let first = repo
            .find_commit(git2::Oid::from_str(&ids[0]).unwrap())
            .unwrap();
        repo.tag_lightweight("v1", first.as_object(), false)
            .unwrap();
        (dir, ids)
    }

    #[test]
    fn resolves_head_tags_and_shas_locally() {
        let (dir, ids) = repo_with_commits();
        let repo = dir.path().to_str().unwrap();
        let head = resolve(repo, "HEAD").unwrap();
        assert_eq!(head.commit, ids[1]);
        assert_eq!(head.subject, "commit 1");
        assert_eq!(resolve(repo, "v1").unwrap().commit, ids[0]);
        assert_eq!(resolve(repo, &ids[0][..10]).unwrap().commit, ids[0]);
    }

    #[test]
    fn unknown_refs_and_repos_are_named() {
        let (dir, _) = repo_with_commits();
        let repo = dir.path().to_str().unwrap();
        let e = resolve(repo, "no-such-branch").unwrap_err().to_string();
        assert!(
            e.contains("`no-such-branch` is not a branch, tag or commit"),
            "{e}"
        );
        let e = resolve("/nonexistent/repo", "main")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot open repository `/nonexistent/repo`"),
            "{e}"
        );
    }

    #[test]
    fn url_detection() {
        assert!(is_url("git@github.com:acme/shop.git"));
        assert!(is_url("https://example.com/x.git"));
        assert!(!is_url("/srv/repo"));
        assert!(!is_url("./repo"));
    }
}
