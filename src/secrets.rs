//! A stage's secrets at rest: an age-encrypted file in the project
//! (`secrets: { file: config/secrets/{{ stage }}.age }`), encrypted to the
//! recipients listed beside it (`config/secrets/staging.recipients`: age
//! X25519 keys `age1…` and ssh public keys `ssh-ed25519 …`, one a line,
//! `#` comments).
//!
//! The protocol: the plaintext is a JSON object of names to string values,
//! only ever held in memory here. It is decrypted with the user's key
//! (`SHIPIT_AGE_IDENTITY`, a file holding age identities or an ssh private
//! key, else `~/.ssh/id_ed25519`), and re-encrypted, ASCII-armoured, to
//! every recipient listed at the time of writing; the file is replaced
//! atomically (a temp file in the same directory, then a rename). A wrong or
//! missing key fails with the file and its recipients named.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// Why a secrets file could not be read or written. Every message names the
/// file as deploy.yml names it.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// deploy.yml has no `secrets:` key.
    #[error("{0}")]
    NotConfigured(String),
    /// The file, its recipients or the key could not be used as they are;
    /// the message says what to change.
    #[error("{0}")]
    Unusable(String),
    /// The key does not open the file.
    #[error("cannot decrypt `{file}` with `{key}`: it is encrypted to the recipients listed in `{recipients_file}`:\n{recipients}")]
    WrongKey {
        file: String,
        key: String,
        recipients_file: String,
        recipients: String,
    },
    /// Reading or writing a file failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The environment variable naming the key file that decrypts secrets.
pub const IDENTITY_VAR: &str = "SHIPIT_AGE_IDENTITY";

/// One stage's secrets file and its recipients list.
#[derive(Debug, Clone)]
pub struct SecretsFile {
    pub stage: String,
    /// Relative to deploy.yml's directory, as messages show it.
    pub shown: String,
    pub path: PathBuf,
    pub recipients_shown: String,
    pub recipients_path: PathBuf,
}

/// The user's key, loaded from `path`.
pub struct Key {
    pub path: String,
    identities: Vec<Box<dyn age::Identity>>,
}

impl SecretsFile {
    /// The secrets file of `stage` (checked by validation to lie inside the
    /// project).
    pub fn for_stage(config: &Config, stage: &str) -> Result<SecretsFile, SecretsError> {
        let settings = config.secrets.as_ref().ok_or_else(|| {
            SecretsError::NotConfigured(format!(
                "`{}` has no `secrets:` key: add `secrets: {{ file: config/secrets/{{{{ stage }}}}.age }}` to keep the stages' secrets encrypted in the project",
                config.path.display()
            ))
        })?;
        let shown = settings.file_for(stage);
        let recipients_shown = recipients_name(&shown);
        Ok(SecretsFile {
            stage: stage.to_string(),
            path: config.base_dir.join(&shown),
            recipients_path: config.base_dir.join(&recipients_shown),
            shown,
            recipients_shown,
        })
    }

    /// Whether the encrypted file exists yet.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// The recipients listed beside the file, as written (one a line).
    pub fn recipient_lines(&self) -> Result<Vec<String>, SecretsError> {
        let text = std::fs::read_to_string(&self.recipients_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SecretsError::Unusable(format!(
                    "no recipients for `{}`: list them in `{}`, one a line (age keys `age1…` and ssh public keys `ssh-ed25519 …`)",
                    self.shown, self.recipients_shown
                ))
            } else {
                SecretsError::Io {
                    what: format!("cannot read `{}`", self.recipients_shown),
                    source: e,
                }
            }
        })?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect())
    }

    fn recipients(&self) -> Result<Vec<Box<dyn age::Recipient + Send>>, SecretsError> {
        let lines = self.recipient_lines()?;
        if lines.is_empty() {
            return Err(SecretsError::Unusable(format!(
                "`{}` lists no recipients for `{}`",
                self.recipients_shown, self.shown
            )));
        }
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                parse_recipient(line).ok_or_else(|| {
                    SecretsError::Unusable(format!(
                        "recipient {} of `{}` is neither an age key (`age1…`) nor an ssh public key (`ssh-ed25519 …`): `{}`",
                        i + 1,
                        self.recipients_shown,
                        line.chars().take(40).collect::<String>()
                    ))
                })
            })
            .collect()
    }

    fn wrong_key(&self, key: &str) -> SecretsError {
        let recipients = match self.recipient_lines() {
            Ok(lines) => lines
                .iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("  ({e})"),
        };
        SecretsError::WrongKey {
            file: self.shown.clone(),
            key: key.to_string(),
            recipients_file: self.recipients_shown.clone(),
            recipients,
        }
    }

    /// Decrypts the file in memory with the user's key, found from `env`.
    pub fn open(&self, env: &BTreeMap<String, String>) -> Result<Secrets, SecretsError> {
        let bytes = std::fs::read(&self.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SecretsError::Unusable(format!(
                    "secrets file `{}` does not exist: `shipit secrets set STAGE NAME` or `shipit secrets edit STAGE` creates it",
                    self.shown
                ))
            } else {
                SecretsError::Io {
                    what: format!("cannot read `{}`", self.shown),
                    source: e,
                }
            }
        })?;
        let key = Key::find(env).map_err(|why| match why {
            KeyError::Missing(tried) => SecretsError::Unusable(format!(
                "no key to decrypt `{}`: {tried} does not exist; set {IDENTITY_VAR} to an age identity file or an ssh private key of one of its recipients:\n{}",
                self.shown,
                self.wrong_key("").recipients_listing()
            )),
            KeyError::Unusable(why) => SecretsError::Unusable(format!(
                "cannot decrypt `{}`: {why}",
                self.shown
            )),
        })?;
        let plain = decrypt(&bytes, &key).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => self.wrong_key(&key.path),
            other => SecretsError::Unusable(format!(
                "cannot decrypt `{}` with `{}`: {other}",
                self.shown, key.path
            )),
        })?;
        let values = parse_plaintext(&plain).map_err(|why| {
            SecretsError::Unusable(format!(
                "`{}` holds no secrets shipit wrote: {why}",
                self.shown
            ))
        })?;
        Ok(Secrets(values))
    }

    /// The secrets in the file, or none when it does not exist yet.
    pub fn open_or_new(&self, env: &BTreeMap<String, String>) -> Result<Secrets, SecretsError> {
        if self.exists() {
            self.open(env)
        } else {
            Ok(Secrets(BTreeMap::new()))
        }
    }

    /// Encrypts `secrets` to the recipients listed now and replaces the
    /// file with it.
    pub fn write(&self, secrets: &Secrets) -> Result<(), SecretsError> {
        let recipients = self.recipients()?;
        let plain = secrets.to_plaintext();
        let armored = encrypt(plain.as_bytes(), &recipients).map_err(|why| {
            SecretsError::Unusable(format!("cannot encrypt `{}`: {why}", self.shown))
        })?;
        let io = |what: &str| {
            let what = format!("cannot {what} `{}`", self.shown);
            move |source| SecretsError::Io { what, source }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".shipit-secrets-")
            .tempfile_in(dir)
            .map_err(io("write"))?;
        tmp.write_all(&armored).map_err(io("write"))?;
        tmp.as_file().sync_all().map_err(io("write"))?;
        tmp.persist(&self.path)
            .map_err(|e| io("replace")(e.error))?;
        Ok(())
    }
}

impl SecretsError {
    fn recipients_listing(&self) -> String {
        match self {
            SecretsError::WrongKey {
                recipients_file,
                recipients,
                ..
            } => format!("(recipients listed in `{recipients_file}`)\n{recipients}"),
            other => other.to_string(),
        }
    }
}

/// The recipients list beside a secrets file: its name with the extension
/// replaced by `.recipients` (`staging.age` → `staging.recipients`).
pub fn recipients_name(file: &str) -> String {
    let (dir, name) = match file.rfind('/') {
        Some(i) => (&file[..=i], &file[i + 1..]),
        None => ("", file),
    };
    let stem = match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    };
    format!("{dir}{stem}.recipients")
}

/// A stage's secrets, decrypted. Never shown: its `Debug` lists names only.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets(pub BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    /// The plaintext of the file: a JSON object, names sorted.
    pub fn to_plaintext(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.0).expect("strings serialise");
        text.push('\n');
        text
    }
}

/// Whether `name` can be read as `secrets.NAME`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The secrets of a plaintext: a JSON object of names to strings. The
/// error says where and why, never a value.
pub fn parse_plaintext(text: &str) -> Result<BTreeMap<String, String>, String> {
    let values: BTreeMap<String, serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        format!(
            "expected a JSON object of names to strings (line {} column {}: {})",
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof =>
                    "not valid JSON",
                _ => "not an object",
            }
        )
    })?;
    values
        .into_iter()
        .map(|(name, v)| {
            if !valid_name(&name) {
                return Err(format!(
                    "`{name}` is not a name a template can read as `secrets.NAME` (letters, digits, `_`)"
                ));
            }
            match v {
                serde_json::Value::String(s) => Ok((name, s)),
                _ => Err(format!("the value of `{name}` is not a string")),
            }
        })
        .collect()
}

/// Why no key could be loaded.
#[derive(Debug)]
pub enum KeyError {
    /// The file at this (shown) path does not exist.
    Missing(String),
    /// Exists but cannot be used; says why.
    Unusable(String),
}

impl Key {
    /// `SHIPIT_AGE_IDENTITY`, else `$HOME/.ssh/id_ed25519`.
    pub fn find(env: &BTreeMap<String, String>) -> Result<Key, KeyError> {
        let (path, shown) = match env.get(IDENTITY_VAR).filter(|p| !p.is_empty()) {
            Some(p) => (PathBuf::from(p), format!("`{p}` ({IDENTITY_VAR})")),
            None => {
                let home = env.get("HOME").cloned().unwrap_or_default();
                let p = Path::new(&home).join(".ssh/id_ed25519");
                let shown = format!("`{}` (set {IDENTITY_VAR} for another key)", p.display());
                (p, shown)
            }
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(format!("`{}`", path.display())))
            }
            Err(e) => return Err(KeyError::Unusable(format!("cannot read {shown}: {e}"))),
        };
        Key::parse(&text, &path.display().to_string())
            .map_err(|why| KeyError::Unusable(format!("{shown}: {why}")))
    }

    /// A key from the text of its file: an ssh private key, or age
    /// identities (`AGE-SECRET-KEY-1…` lines).
    pub fn parse(text: &str, path: &str) -> Result<Key, String> {
        let identities: Vec<Box<dyn age::Identity>> = if text.trim_start().starts_with("-----BEGIN")
        {
            let id = age::ssh::Identity::from_buffer(text.as_bytes(), Some(path.to_string()))
                .map_err(|e| format!("not an ssh private key age can use ({e})"))?;
            match id {
                age::ssh::Identity::Unencrypted(_) => vec![Box::new(id)],
                age::ssh::Identity::Encrypted(_) => {
                    return Err("the ssh key is protected by a passphrase, which shipit cannot ask for: point SHIPIT_AGE_IDENTITY at an age identity file or an unprotected key".into())
                }
                age::ssh::Identity::Unsupported(_) => {
                    return Err("this kind of ssh key cannot decrypt age files (use ed25519 or rsa)".into())
                }
            }
        } else {
            age::IdentityFile::from_buffer(text.as_bytes())
                .map_err(|e| format!("not an age identity file ({e})"))?
                .into_identities()
                .map_err(|e| format!("not an age identity file ({e})"))?
        };
        if identities.is_empty() {
            return Err("holds no key".into());
        }
        Ok(Key {
            path: path.to_string(),
            identities,
        })
    }
}

/// An age recipient from one line of a recipients list.
fn parse_recipient(line: &str) -> Option<Box<dyn age::Recipient + Send>> {
    if line.starts_with("age1") {
        line.parse::<age::x25519::Recipient>()
            .ok()
            .map(|r| Box::new(r) as _)
    } else if line.starts_with("ssh-") {
        line.parse::<age::ssh::Recipient>()
            .ok()
            .map(|r| Box::new(r) as _)
    } else {
        None
    }
}

fn encrypt(plain: &[u8], recipients: &[Box<dyn age::Recipient + Send>]) -> Result<Vec<u8>, String> {
    let encryptor = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| e.to_string())?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| e.to_string())?;
    writer.write_all(plain).map_err(|e| e.to_string())?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn decrypt(bytes: &[u8], key: &Key) -> Result<String, age::DecryptError> {
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(bytes))?;
    let mut reader = decryptor.decrypt(key.identities.iter().map(|i| i.as_ref()))?;
    let mut plain = String::new();
    reader
        .read_to_string(&mut plain)
        .map_err(age::DecryptError::from)?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn x25519() -> (String, String) {
        let id = age::x25519::Identity::generate();
        (
            id.to_string().expose_secret().to_string(),
            id.to_public().to_string(),
        )
    }

    fn file_in(dir: &Path, recipients: &[&str]) -> SecretsFile {
        std::fs::write(dir.join("s.recipients"), recipients.join("\n") + "\n").unwrap();
        SecretsFile {
            stage: "s".into(),
            shown: "s.age".into(),
            path: dir.join("s.age"),
            recipients_shown: "s.recipients".into(),
            recipients_path: dir.join("s.recipients"),
        }
    }

    fn env_with_key(dir: &Path, key: &str) -> BTreeMap<String, String> {
        let path = dir.join("key");
        std::fs::write(&path, key).unwrap();
        [(IDENTITY_VAR.to_string(), path.display().to_string())].into()
    }

    #[test]
    fn round_trips_in_memory_to_every_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let (a_key, a_pub) = x25519();
        let (b_key, b_pub) = x25519();
        let f = file_in(dir.path(), &["# two keys", &a_pub, "", &b_pub]);
        let s = Secrets([("PEM".to_string(), "line one\nline two\n".to_string())].into());
        f.write(&s).unwrap();
        let on_disk = std::fs::read_to_string(&f.path).unwrap();
        assert!(on_disk.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!on_disk.contains("line one"));
        for key in [&a_key, &b_key] {
            let got = f.open(&env_with_key(dir.path(), key)).unwrap();
            assert_eq!(got, s);
        }
        assert_eq!(format!("{got:?}", got = s), "{\"PEM\"}");
    }

    #[test]
    fn a_wrong_key_names_the_file_and_the_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let (_, a_pub) = x25519();
        let (other, _) = x25519();
        let f = file_in(dir.path(), &[&a_pub]);
        f.write(&Secrets::default()).unwrap();
        let e = f.open(&env_with_key(dir.path(), &other)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("cannot decrypt `s.age` with `"), "{msg}");
        assert!(msg.contains("listed in `s.recipients`"), "{msg}");
        assert!(msg.contains(&a_pub), "{msg}");

        let none: BTreeMap<String, String> =
            [("HOME".to_string(), "/nonexistent".to_string())].into();
        let msg = f.open(&none).unwrap_err().to_string();
        assert!(msg.contains("no key to decrypt `s.age`"), "{msg}");
        assert!(msg.contains("/nonexistent/.ssh/id_ed25519"), "{msg}");
        assert!(msg.contains(&a_pub), "{msg}");
    }

    #[test]
    fn bad_recipients_and_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_in(dir.path(), &["age1nope"]);
        let msg = f.write(&Secrets::default()).unwrap_err().to_string();
        assert!(msg.contains("recipient 1 of `s.recipients`"), "{msg}");
        let f = file_in(dir.path(), &["# only comments"]);
        let msg = f.write(&Secrets::default()).unwrap_err().to_string();
        assert_eq!(msg, "`s.recipients` lists no recipients for `s.age`");
        assert!(Key::parse("hello", "k").is_err());
        assert!(Key::parse("-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n", "k").is_err());
    }

    #[test]
    fn plaintext_is_a_json_object_of_named_strings() {
        type Want = Result<Vec<(&'static str, &'static str)>, &'static str>;
        let cases: [(&str, Want); 5] = [
            ("{\"A_1\": \"x\"}", Ok(vec![("A_1", "x")])),
            ("{}", Ok(vec![])),
            ("{\"a-b\": \"x\"}", Err("`a-b` is not a name")),
            ("{\"A\": 1}", Err("the value of `A` is not a string")),
            ("{\"A\": \"x\"", Err("(line 1 column 9: not valid JSON)")),
        ];
        for (text, want) in cases {
            match (parse_plaintext(text), want) {
                (Ok(got), Ok(want)) => {
                    let want: BTreeMap<String, String> = want
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    assert_eq!(got, want, "{text}");
                }
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: {got:?} != {want:?}"),
            }
        }
    }

    #[test]
    fn recipients_sit_beside_the_file() {
        assert_eq!(
            recipients_name("config/secrets/staging.age"),
            "config/secrets/staging.recipients"
        );
        assert_eq!(recipients_name("prod"), "prod.recipients");
        assert_eq!(recipients_name("a.b/.hidden"), "a.b/.hidden.recipients");
    }
}
