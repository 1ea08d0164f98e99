//! `shipit secrets edit|show|set STAGE`: the stage's age-encrypted secrets
//! file (see [`crate::secrets`] for the file and the keys).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::SecretsAction;
use crate::outcome::{Outcome, UsageError};
use crate::secrets::{parse_plaintext, valid_name, Secrets, SecretsFile};

use super::App;

pub fn run(app: &App, action: &SecretsAction, stdin: &mut dyn Read) -> anyhow::Result<Outcome> {
    let config = app.load_config()?;
    let stage = match action {
        SecretsAction::Edit { stage }
        | SecretsAction::Show { stage, .. }
        | SecretsAction::Set { stage, .. } => stage,
    };
    if config.stage(stage).is_none() {
        let known: Vec<String> = config
            .stages
            .iter()
            .map(|s| format!("`{}`", s.name))
            .collect();
        return Err(UsageError(format!(
            "unknown stage `{stage}`; deploy.yml defines {}",
            known.join(", ")
        ))
        .into());
    }
    let file = SecretsFile::for_stage(&config, stage)?;
    match action {
        SecretsAction::Show { reveal, .. } => {
            let secrets = file.open(&app.env)?;
            app.write_out(&show(&secrets, *reveal))?;
        }
        SecretsAction::Set { name, .. } => {
            if !valid_name(name) {
                return Err(UsageError(format!(
                    "invalid secret name `{name}`, expected letters, digits and `_`, not starting with a digit (it is read as `secrets.NAME`)"
                ))
                .into());
            }
            let value = read_value(stdin)?;
            let mut secrets = file.open_or_new(&app.env)?;
            secrets.0.insert(name.clone(), value);
            crate::quick_exit::changes_begin();
            file.write(&secrets)?;
            app.write_out(&format!(
                "set `{name}` in `{}` ({} secret{}, encrypted to {})\n",
                file.shown,
                secrets.0.len(),
                if secrets.0.len() == 1 { "" } else { "s" },
                recipients_count(&file)?
            ))?;
        }
        SecretsAction::Edit { .. } => edit(app, &file)?,
    }
    Ok(Outcome::Success)
}

/// Names one a line; with `reveal`, `NAME="value"` (JSON-quoted, so a
/// multi-line value stays on its line).
fn show(secrets: &Secrets, reveal: bool) -> String {
    secrets
        .0
        .iter()
        .map(|(name, value)| {
            if reveal {
                format!(
                    "{name}={}\n",
                    serde_json::to_string(value).expect("a string serialises")
                )
            } else {
                format!("{name}\n")
            }
        })
        .collect()
}

/// Everything on stdin, less one trailing newline (what `echo` adds).
fn read_value(stdin: &mut dyn Read) -> anyhow::Result<String> {
    let mut value = String::new();
    stdin
        .read_to_string(&mut value)
        .context("cannot read the secret's value from stdin (expected UTF-8 text)")?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

fn recipients_count(file: &SecretsFile) -> anyhow::Result<String> {
    let n = file.recipient_lines()?.len();
    Ok(format!(
        "{n} recipient{} of `{}`",
        if n == 1 { "" } else { "s" },
        file.recipients_shown
    ))
}

/// Decrypts into a private temp file, runs the editor on it, re-encrypts
/// what it left; the temp file is overwritten and removed whatever happens.
fn edit(app: &App, file: &SecretsFile) -> anyhow::Result<()> {
    let before = file.open_or_new(&app.env)?;
    // Checked before the editor opens, so edits are not lost to it.
    file.recipient_lines()?;
    let editor = match ["EDITOR", "VISUAL"]
        .iter()
        .find_map(|k| app.env.get(*k).filter(|v| !v.trim().is_empty()))
    {
        Some(e) => e.clone(),
        // vi without a terminal would hang a CI job.
        None if !app.interactive => {
            return Err(UsageError(format!(
                "`shipit secrets edit` needs $EDITOR or a terminal; without one, `shipit secrets set {} NAME` reads a value from stdin",
                file.stage
            ))
            .into())
        }
        None => "vi".to_string(),
    };
    crate::quick_exit::changes_begin();
    let mut tmp = private_temp_file(app)?;
    if let Err(e) = tmp
        .write_all(before.to_plaintext().as_bytes())
        .and_then(|()| tmp.flush())
    {
        scrub(tmp.path());
        return Err(e).context("cannot write the temporary file to edit");
    }
    let path = tmp.path().to_path_buf();
    // The editor is a command line (`code --wait`), the file one quoted word.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status();
    let edited = std::fs::read_to_string(&path);
    scrub(&path);
    drop(tmp);
    let status = status.with_context(|| format!("cannot run the editor `{editor}`"))?;
    if !status.success() {
        return Err(UsageError(format!(
            "the editor `{editor}` exited with {status}; `{}` is unchanged",
            file.shown
        ))
        .into());
    }
    let edited = edited.context("cannot read the edited temporary file")?;
    let after = parse_plaintext(&edited)
        .map_err(|why| UsageError(format!("`{}` is unchanged: {why}", file.shown)))?;
    if after == before.0 {
        app.write_out(&format!("no change to `{}`\n", file.shown))?;
        return Ok(());
    }
    let after = Secrets(after);
    file.write(&after)?;
    app.write_out(&format!(
        "wrote `{}` ({} secret{}, encrypted to {})\n",
        file.shown,
        after.0.len(),
        if after.0.len() == 1 { "" } else { "s" },
        recipients_count(file)?
    ))?;
    Ok(())
}

/// A temp file only its owner can read (mode 0600), in memory (/dev/shm)
/// where the system has it, else in TMPDIR or /tmp.
fn private_temp_file(app: &App) -> anyhow::Result<tempfile::NamedTempFile> {
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("shipit-secrets-").suffix(".json");
        b
    };
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(f) = builder().tempfile_in(shm) {
            return Ok(f);
        }
    }
    let dir = app
        .env
        .get("TMPDIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    builder().tempfile_in(&dir).with_context(|| {
        format!(
            "cannot create a private temporary file in `{}`",
            dir.display()
        )
    })
}

/// Overwrites the file at `path` with zeros (the editor may have replaced
/// it with a new one: whichever is there now).
fn scrub(path: &Path) {
    let Ok(len) = std::fs::metadata(path).map(|m| m.len()) else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
        let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let _ = f.write_all(&zeros).and_then(|()| f.sync_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn show_lists_names_and_reveals_values_quoted() {
        let s = Secrets(BTreeMap::from([
            ("B".to_string(), "two\nlines".to_string()),
            ("A".to_string(), "x\"y".to_string()),
        ]));
        assert_eq!(show(&s, false), "A\nB\n");
        assert_eq!(show(&s, true), "A=\"x\\\"y\"\nB=\"two\\nlines\"\n");
    }

    #[test]
    fn a_value_from_stdin_loses_one_trailing_newline() {
        let cases = [
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            ("pw", "pw"),
            ("a\nb\n\n", "a\nb\n"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(
                read_value(&mut input.as_bytes()).unwrap(),
                want,
                "{input:?}"
            );
        }
        assert!(read_value(&mut &[0xff, 0xfe][..]).is_err());
    }
}
