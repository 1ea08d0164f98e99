//! `shipit init`: a commented deploy.yml to start from.

use std::path::Path;

use anyhow::Context;

use crate::outcome::UsageError;

/// The starter file. It parses as is (a unit test checks), deploying to
/// this machine through the `local` stage until real hosts are filled in.
pub const STARTER: &str = include_str!("starter.yml");

/// Writes the starter file; returns what to tell the user.
pub fn run(path: &Path, force: bool) -> anyhow::Result<String> {
    if path.exists() && !force {
        return Err(UsageError(format!(
            "`{}` already exists; pass --force to overwrite it",
            path.display()
        ))
        .into());
    }
    std::fs::write(path, STARTER).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(format!(
        "wrote {}: edit `repository`, `deploy_to` and the stages, then `shipit plan local -c {}`\n",
        path.display(),
        path.display()
    ))
}
