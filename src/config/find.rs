//! Where `deploy.yml` is when `-c` is not given: like git, cargo and
//! Capistrano, in the current directory or the nearest parent that has
//! one, without leaving the repository the search started in.

use std::path::{Path, PathBuf};

/// The config file's name looked for.
pub const DEFAULT_NAME: &str = "deploy.yml";

/// The first `name` found in `start` or one of its parents, walking up
/// until a directory holding `.git` (the repository's root, searched
/// itself) or `/`. `start` should be absolute.
pub fn find_upward(start: &Path, name: &str) -> Option<PathBuf> {
    let mut dir = start;
    loop {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Some(candidate);
        }
        if dir.join(".git").exists() {
            return None;
        }
        dir = dir.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_the_nearest_and_stops_at_the_repository_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let deep = root.join("outer/repo/a/b");
        fs::create_dir_all(&deep).unwrap();
        fs::create_dir_all(root.join("outer/repo/.git")).unwrap();
        fs::write(root.join("outer/deploy.yml"), "").unwrap();
        // Above the repository: not found from inside it.
        assert_eq!(find_upward(&deep, DEFAULT_NAME), None);
        fs::write(root.join("outer/repo/deploy.yml"), "").unwrap();
        assert_eq!(
            find_upward(&deep, DEFAULT_NAME),
            Some(root.join("outer/repo/deploy.yml"))
        );
        fs::write(root.join("outer/repo/a/deploy.yml"), "").unwrap();
        assert_eq!(
            find_upward(&deep, DEFAULT_NAME),
            Some(root.join("outer/repo/a/deploy.yml"))
        );
        // A directory named deploy.yml is not a config file.
        fs::create_dir_all(deep.join("deploy.yml")).unwrap();
        assert_eq!(
            find_upward(&deep, DEFAULT_NAME),
            Some(root.join("outer/repo/a/deploy.yml"))
        );
        // Outside any repository the search goes on up.
        let plain = root.join("outer/plain/x");
        fs::create_dir_all(&plain).unwrap();
        assert_eq!(
            find_upward(&plain, DEFAULT_NAME),
            Some(root.join("outer/deploy.yml"))
        );
    }
}
