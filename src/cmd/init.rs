//! `shipit init`: a commented deploy.yml to start from.

use std::path::Path;

use anyhow::Context;

use crate::outcome::UsageError;

/// The starter file. It parses as is (a unit test checks), deploying to
/// this machine through the `local` stage until real hosts are filled in.
pub const STARTER: &str = include_str!("starter.yml");

/// Writes the starter file, with `stages` in place of its own when any are
/// named; returns what to tell the user.
pub fn run(path: &Path, force: bool, stages: &[String]) -> anyhow::Result<String> {
    let text = starter(stages)?;
    if path.exists() && !force {
        return Err(UsageError(format!(
            "`{}` already exists; pass --force to overwrite it",
            path.display()
        ))
        .into());
    }
    crate::quick_exit::changes_begin();
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    let first = stages.first().map_or("local", String::as_str);
    Ok(format!(
        "wrote {}: edit `repository`, `deploy_to` and the stages, then `shipit plan {first} -c {}`\n",
        path.display(),
        path.display()
    ))
}

/// The starter file with `stages` (in order, each promoted from the one
/// before, as a comment to turn on) in place of its `stages:` section, or
/// as it is when `stages` is empty. Each stage deploys to this machine,
/// in `./.shipit-STAGE`, until its hosts are filled in.
pub fn starter(stages: &[String]) -> Result<String, UsageError> {
    if stages.is_empty() {
        return Ok(STARTER.to_string());
    }
    for (i, name) in stages.iter().enumerate() {
        // Also what YAML would read as something other than a name
        // (`1`, `true`, `null`): the key must come back as written.
        let yaml_plain = serde_saphyr::from_str_with_options::<serde_json::Value>(
            name,
            crate::config::spans::options(),
        )
        .is_ok_and(|v| v.as_str() == Some(name.as_str()));
        if !crate::config::checks::is_name(name) || name.starts_with('-') || !yaml_plain {
            return Err(UsageError(format!(
                "invalid stage name `{}` in --stages, expected letters, digits, `_` or `-`",
                name.escape_debug()
            )));
        }
        if stages[..i].contains(name) {
            return Err(UsageError(format!(
                "stage `{name}` named twice in --stages"
            )));
        }
    }
    let head = STARTER
        .find("\nstages:\n")
        .map_or(STARTER, |i| &STARTER[..=i]);
    let mut out = format!("{head}stages:\n");
    for (i, name) in stages.iter().enumerate() {
        out.push_str(&format!("  {name}:\n"));
        if i > 0 {
            out.push_str(&format!(
                "    # promote_from: {}         # `shipit promote {name}` brings its verified release\n",
                stages[i - 1]
            ));
        }
        out.push_str(&format!(
            "    hosts:                           # this machine until real hosts are filled in\n\
             \x20     - {{ host: localhost, transport: local, deploy_to: ./.shipit-{name} }}\n\
             \x20     # - {{ host: {name}-1.example.com, roles: [app, db] }}\n"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_with, ParseContext};
    use std::path::PathBuf;

    fn parse(text: &str) -> crate::config::Config {
        let ctx = ParseContext {
            cwd: PathBuf::from("/work/project"),
            home: None,
        };
        parse_with(text, Path::new("deploy.yml"), &ctx).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn the_starter_and_its_variants_parse() {
        let c = parse(&starter(&[]).unwrap());
        assert_eq!(c.stages.len(), 1);
        let names = ["staging".to_string(), "production".to_string()];
        let text = starter(&names).unwrap();
        let c = parse(&text);
        let got: Vec<&str> = c.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(got, ["staging", "production"]);
        assert_eq!(
            c.stages[1].hosts[0].deploy_to,
            "/work/project/.shipit-production"
        );
        assert!(text.contains("    # promote_from: staging"), "{text}");
        // Everything above the stages is the starter's.
        assert!(text.starts_with(&STARTER[..STARTER.find("\nstages:").unwrap()]));
        let one = parse(&starter(&["qa_1".to_string()]).unwrap());
        assert_eq!(one.stages[0].name.as_str(), "qa_1");
    }

    #[test]
    fn stage_names_are_checked() {
        for (names, want) in [
            (&["a b"][..], "invalid stage name `a b`"),
            (&["prod", "prod"][..], "stage `prod` named twice"),
            (&["ok", ""][..], "invalid stage name ``"),
            (&["true"][..], "invalid stage name `true`"),
            (&["1"][..], "invalid stage name `1`"),
            (&["-x"][..], "invalid stage name `-x`"),
            (&["a:b"][..], "invalid stage name `a:b`"),
        ] {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            let e = starter(&names).unwrap_err();
            assert!(e.0.contains(want), "{names:?}: {}", e.0);
        }
    }
}
