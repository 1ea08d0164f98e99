//! `shipit man [COMMAND] [--dir DIR]`: manual pages (roff) generated from the
//! clap definitions in [`crate::cli`] with clap_mangen.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::outcome::UsageError;

/// The page of shipit (`command` `None`) or of one of its subcommands,
/// named `shipit-COMMAND` as `man shipit-deploy` finds it.
pub fn page(root: clap::Command, command: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let mut root = root;
    // Propagates global flags into the subcommands, so each page lists them.
    root.build();
    let page = match command {
        None => root,
        Some(name) => {
            let sub = root.find_subcommand(name).ok_or_else(|| {
                let names: Vec<&str> = root
                    .get_subcommands()
                    .map(|c| c.get_name())
                    .filter(|n| *n != "help")
                    .collect();
                UsageError(format!(
                    "no command `{name}` in shipit; its commands are {}",
                    names.join(", ")
                ))
            })?;
            let title = format!("shipit-{}", sub.get_name());
            let version = root.get_version().unwrap_or_default().to_string();
            sub.clone().name(title).version(version)
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    Ok(out)
}

/// Every page: `shipit.1`, then `shipit-COMMAND.1` per command.
pub fn pages(root: clap::Command) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = vec![("shipit.1".to_string(), page(root.clone(), None)?)];
    for name in root
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|n| n != "help")
    {
        out.push((format!("shipit-{name}.1"), page(root.clone(), Some(&name))?));
    }
    Ok(out)
}

/// Writes [`pages`] into `dir` (created if missing); returns the files.
pub fn write_pages(root: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let mut written = Vec::new();
    for (name, text) in pages(root)? {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_main_page_lists_the_commands_and_global_flags() {
        let text = String::from_utf8(page(Cli::command(), None).unwrap()).unwrap();
        assert!(text.starts_with(".ie"), "{}", &text[..40]);
        assert!(text.contains(".TH shipit 1"), "{text}");
        for word in [
            "deploy",
            "rollback",
            "completions",
            "schema",
            "\\-\\-config",
        ] {
            assert!(text.contains(word), "no `{word}`");
        }
    }

    #[test]
    fn a_command_page_is_named_after_it_and_carries_the_global_flags() {
        let text = String::from_utf8(page(Cli::command(), Some("deploy")).unwrap()).unwrap();
        assert!(text.contains(".TH shipit-deploy 1"), "{text}");
        assert!(text.contains("\\-\\-revision"), "{text}");
        assert!(text.contains("\\-\\-config"), "{text}");
    }

    #[test]
    fn an_unknown_command_is_a_usage_error() {
        let e = page(Cli::command(), Some("deploi")).unwrap_err();
        assert!(e.is::<UsageError>());
        assert!(e.to_string().contains("no command `deploi`"), "{e}");
    }

    #[test]
    fn every_command_gets_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_pages(Cli::command(), dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "shipit.1");
        assert!(names.contains(&"shipit-deploy.1".to_string()), "{names:?}");
        assert!(names.contains(&"shipit-schema.1".to_string()), "{names:?}");
        assert_eq!(names.len(), Cli::command().get_subcommands().count() + 1);
    }
}
