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

/// Where the repositories of a commit's submodules are found on this
/// machine (`submodules: true`).
pub struct Submodules<'a> {
    /// The superproject's URL or path: `./` and `../` submodule URLs are
    /// taken relative to it, as git does.
    pub base: &'a str,
    /// A local repository holding `url`'s commits: the path itself, or a
    /// mirror of a remote one.
    pub open: &'a dyn Fn(&str) -> Result<std::path::PathBuf, String>,
}

/// Builds the tar of `commit`'s tree, or with `subtree` (`repo_tree`) of
/// that directory only, its contents at the archive's root.
pub fn build_tree(
    repo_path: &Path,
    commit: &str,
    subtree: Option<&str>,
) -> Result<Artifact, ArtifactError> {
    build_with(repo_path, commit, subtree, None)
}

/// As [`build_tree`]; with `submodules`, every submodule of the commit
/// (nested ones too) is archived at its path, from the commit its gitlink
/// names. Without, submodule paths are left out, as with `git archive`.
pub fn build_with(
    repo_path: &Path,
    commit: &str,
    subtree: Option<&str>,
    submodules: Option<&Submodules<'_>>,
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
    let fail = |reason: String| ArtifactError::Build {
        commit: commit.to_string(),
        reason,
    };
    let mut writer = Writer {
        builder: tar::Builder::new(Vec::new()),
        mtime: c.time().seconds().max(0) as u64,
    };
    let modules = match submodules {
        Some(s) => Some(Modules {
            with: s,
            url: s.base.to_string(),
            paths: gitmodules(&repo, &c).map_err(fail)?,
            tree: subtree
                .map(|t| format!("{}/", t.trim_end_matches('/')))
                .unwrap_or_default(),
        }),
        None => None,
    };
    writer
        .append_tree(&repo, &tree, "", modules.as_ref())
        .map_err(fail)?;
    let mut bytes = writer
        .builder
        .into_inner()
        .map_err(|e| fail(e.to_string()))?;
    bytes.flush().map_err(|e| fail(e.to_string()))?;
    let digest = digest_of(&bytes);
    Ok(Artifact {
        bytes: Arc::new(bytes),
        digest,
        commit_time: c.time().seconds(),
    })
}

/// The submodules of one repository's commit while its tree is archived.
struct Modules<'a> {
    with: &'a Submodules<'a>,
    /// This repository's URL, which its relative submodule URLs follow.
    url: String,
    /// Submodule path in the commit → URL, from its `.gitmodules`.
    paths: std::collections::BTreeMap<String, String>,
    /// The directory of the commit being archived (`repo_tree`), `dir/`.
    tree: String,
}

/// The `path` → `url` pairs of the commit's `.gitmodules` (none without
/// one).
fn gitmodules(
    repo: &git2::Repository,
    c: &git2::Commit<'_>,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    let tree = c.tree().map_err(|e| e.message().to_string())?;
    let Ok(entry) = tree.get_path(Path::new(".gitmodules")) else {
        return Ok(out);
    };
    let blob = repo
        .find_blob(entry.id())
        .map_err(|e| format!("`.gitmodules` of {}: {}", c.id(), e.message()))?;
    let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(file.path(), blob.content()).map_err(|e| e.to_string())?;
    let config = git2::Config::open(file.path())
        .map_err(|e| format!("`.gitmodules` of {}: {}", c.id(), e.message()))?;
    let mut names = Vec::new();
    let mut entries = config
        .entries(Some(r"^submodule\..*\.path$"))
        .map_err(|e| e.message().to_string())?;
    while let Some(e) = entries.next() {
        let e = e.map_err(|e| e.message().to_string())?;
        if let (Ok(key), Ok(path)) = (e.name(), e.value()) {
            let name = &key["submodule.".len()..key.len() - ".path".len()];
            names.push((name.to_string(), path.to_string()));
        }
    }
    for (name, path) in names {
        if let Ok(url) = config.get_string(&format!("submodule.{name}.url")) {
            out.insert(path.trim_end_matches('/').to_string(), url);
        }
    }
    Ok(out)
}

/// `url` of a submodule whose superproject is at `base`: `./x` and `../x`
/// are taken relative to `base` as a directory, as git does; anything
/// else is as written.
pub fn submodule_url(base: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_string();
    }
    let mut b = base.trim_end_matches('/').to_string();
    let mut u = url;
    loop {
        if let Some(rest) = u.strip_prefix("./") {
            u = rest;
        } else if let Some(rest) = u.strip_prefix("../") {
            u = rest;
            b = match (b.rfind('/'), b.find(':')) {
                (Some(i), _) => b[..i].to_string(),
                (None, Some(i)) => b[..=i].to_string(),
                (None, None) => ".".to_string(),
            };
        } else {
            break;
        }
    }
    if b.ends_with(':') {
        format!("{b}{u}")
    } else {
        format!("{b}/{u}")
    }
}

struct Writer {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Writer {
    fn header(&self) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    /// Appends `tree` of `repo` under `prefix` (`""` or `dir/`), in git's
    /// tree order; with `modules`, each gitlink's submodule in its place.
    fn append_tree(
        &mut self,
        repo: &git2::Repository,
        tree: &git2::Tree<'_>,
        prefix: &str,
        modules: Option<&Modules<'_>>,
    ) -> Result<(), String> {
        let mut entries = Vec::new();
        let mut bad = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            match entry.name() {
                Ok(n) => entries.push((
                    format!("{root}{n}"),
                    entry.kind(),
                    entry.id(),
                    entry.filemode(),
                )),
                Err(_) => {
                    bad = Some(format!("a file name in `{prefix}{root}` is not UTF-8"));
                    return git2::TreeWalkResult::Abort;
                }
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(|e| e.message().to_string())?;
        if let Some(e) = bad {
            return Err(e);
        }
        for (path, kind, id, mode) in entries {
            let name = format!("{prefix}{path}");
            let at = |e: std::io::Error| format!("`{name}`: {e}");
            let mut header = self.header();
            match kind {
                Some(git2::ObjectType::Tree) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    self.builder
                        .append_data(&mut header, format!("{name}/"), std::io::empty())
                        .map_err(at)?;
                }
                Some(git2::ObjectType::Blob) => {
                    let blob = repo
                        .find_blob(id)
                        .map_err(|e| format!("`{name}`: {}", e.message()))?;
                    if mode == 0o120000 {
                        let target = String::from_utf8_lossy(blob.content()).into_owned();
                        header.set_entry_type(tar::EntryType::Symlink);
                        header.set_mode(0o777);
                        header.set_size(0);
                        self.builder
                            .append_link(&mut header, &name, target)
                            .map_err(at)?;
                    } else {
                        header.set_entry_type(tar::EntryType::Regular);
                        header.set_mode(if mode == 0o100755 { 0o755 } else { 0o644 });
                        header.set_size(blob.content().len() as u64);
                        self.builder
                            .append_data(&mut header, &name, blob.content())
                            .map_err(at)?;
                    }
                }
                // A gitlink: the submodule's commit, archived in its place
                // with `submodules: true`, else left out as with `git
                // archive`.
                Some(git2::ObjectType::Commit) => {
                    if let Some(m) = modules {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_mode(0o755);
                        header.set_size(0);
                        self.builder
                            .append_data(&mut header, format!("{name}/"), std::io::empty())
                            .map_err(at)?;
                        self.append_submodule(m, &path, &name, id)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The submodule at `path` (in the tree being archived) at commit
    /// `link`, under `name/` in the archive.
    fn append_submodule(
        &mut self,
        m: &Modules<'_>,
        path: &str,
        name: &str,
        link: git2::Oid,
    ) -> Result<(), String> {
        let full = format!("{}{path}", m.tree);
        let Some(url) = m.paths.get(&full) else {
            return Err(format!("submodule `{full}` is not in its `.gitmodules`"));
        };
        let url = submodule_url(&m.url, url);
        let local = (m.with.open)(&url).map_err(|e| format!("submodule `{name}`: {e}"))?;
        let repo = git2::Repository::open(&local).map_err(|e| {
            format!(
                "submodule `{name}`: cannot open `{}`: {}",
                local.display(),
                e.message()
            )
        })?;
        let c = repo
            .find_commit(link)
            .map_err(|_| format!("commit {link} of submodule `{name}` is not in `{url}`"))?;
        let tree = c.tree().map_err(|e| e.message().to_string())?;
        let nested = Modules {
            with: m.with,
            url: url.clone(),
            paths: gitmodules(&repo, &c)?,
            tree: String::new(),
        };
        self.append_tree(&repo, &tree, &format!("{name}/"), Some(&nested))
    }
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
    fn relative_submodule_urls_follow_the_superproject_as_git_does() {
        for (base, url, want) in [
            ("/srv/git/app.git", "../lib.git", "/srv/git/lib.git"),
            ("/srv/git/app.git/", "./lib", "/srv/git/app.git/lib"),
            ("/srv/git/app", "../../x/lib", "/srv/x/lib"),
            (
                "https://git.example/org/app.git",
                "../lib.git",
                "https://git.example/org/lib.git",
            ),
            (
                "git@git.example:org/app.git",
                "../lib.git",
                "git@git.example:org/lib.git",
            ),
            (
                "git@git.example:app.git",
                "../lib.git",
                "git@git.example:lib.git",
            ),
            ("app", "../lib", "./lib"),
            (
                "/srv/git/app.git",
                "https://other.example/lib.git",
                "https://other.example/lib.git",
            ),
            ("/srv/git/app.git", "/abs/lib", "/abs/lib"),
        ] {
            assert_eq!(submodule_url(base, url), want, "{base} + {url}");
        }
    }

    /// With submodules, the gitlink's commit is archived at its path (and
    /// the digest changes with it); without, the path is left out.
    #[test]
    fn submodules_are_archived_at_their_paths_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (app, lib) = (dir.path().join("app"), dir.path().join("lib"));
        for d in [&app, &lib] {
            std::fs::create_dir_all(d).unwrap();
            git(d, &["init", "-q", "-b", "main"]);
        }
        std::fs::write(lib.join("lib.txt"), "lib\n").unwrap();
        git(&lib, &["add", "-A"]);
        git(&lib, &["commit", "-q", "-m", "lib"]);
        std::fs::write(app.join("README"), "app\n").unwrap();
        git(&app, &["add", "-A"]);
        git(
            &app,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                "../lib",
                "vendor/lib",
            ],
        );
        git(&app, &["commit", "-q", "-m", "app"]);
        let sha = git(&app, &["rev-parse", "HEAD"]);
        let base = app.to_str().unwrap();
        let opened = std::cell::RefCell::new(Vec::new());
        let open = |url: &str| {
            opened.borrow_mut().push(url.to_string());
            Ok(std::path::PathBuf::from(url))
        };
        let subs = Submodules { base, open: &open };
        let with = build_with(&app, &sha, None, Some(&subs)).unwrap();
        assert_eq!(*opened.borrow(), [lib.to_str().unwrap().to_string()]);
        let names = |a: &Artifact| -> Vec<String> {
            tar::Archive::new(&a.bytes[..])
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert!(names(&with).contains(&"vendor/lib/lib.txt".to_string()));
        let without = build(&app, &sha).unwrap();
        assert!(!names(&without).iter().any(|n| n.starts_with("vendor/lib")));
        assert_ne!(with.digest, without.digest);
        assert_eq!(
            with.digest,
            build_with(&app, &sha, None, Some(&subs)).unwrap().digest
        );

        let fail = |_: &str| -> Result<std::path::PathBuf, String> { Err("unreachable".into()) };
        let e = build_with(&app, &sha, None, Some(&Submodules { base, open: &fail }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("submodule `vendor/lib`: unreachable"), "{e}");
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
