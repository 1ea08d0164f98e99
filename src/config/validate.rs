//! From the text of `deploy.yml` to a [`Config`]: deserialize the raw
//! mirror, then check and resolve it, naming the key and its position in
//! every error.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checks::{self, show, DeployToError, RelPathError};
use super::duration;
use super::error::ConfigError;
use super::host_range;
use super::model::*;
use super::raw::*;
use super::spans::{self, ypath, Pos, Seg, Spans};

/// The built-in steps of a deploy, in order. Tasks hook in `after` one of
/// these (or after another task); tasks named `restart` and `smoke_test`
/// give the commands of those two steps.
pub const BUILTIN_STEPS: &[&str] = &[
    "lock",
    "check",
    "fetch",
    "create_release",
    "link_shared",
    "render_templates",
    "publish",
    "restart",
    "smoke_test",
    "record",
    "cleanup",
    "unlock",
];

/// Built-in steps a task may take the name of, to give their command.
const DEFINABLE_STEPS: &[&str] = &["restart", "smoke_test"];

/// The steps a stage's `load_balancer` adds around each host's publish;
/// no task may take their names.
pub const LB_STEPS: &[&str] = &["drain", "undrain"];

/// The time limit of a `drain` or `undrain` command without `timeout:`.
pub const LB_TIMEOUT: Duration = Duration::from_secs(60);

/// What `after` names for a failure hook: a task that runs only when a
/// deploy or rollback fails.
pub const AFTER_FAILED: &str = "failed";
/// `after: finished`: a notify hook, run on this machine once a deploy or
/// rollback has ended, whatever its result.
pub const AFTER_FINISHED: &str = "finished";

/// What parsing needs from the world, passed in so tests control it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseContext {
    /// Against which a relative config path is made absolute.
    pub cwd: PathBuf,
    /// For `~/` in paths; `None` when `HOME` is not set.
    pub home: Option<PathBuf>,
}

impl ParseContext {
    /// The current directory and `$HOME` of this process.
    pub fn from_process() -> std::io::Result<ParseContext> {
        Ok(ParseContext {
            cwd: std::env::current_dir()?,
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
        })
    }
}

/// Reads and validates the config file at `path`.
///
/// A missing or unreadable file is an error naming `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            "config file not found, `shipit init` writes one to start from".to_string()
        } else {
            format!("cannot read config file: {e}")
        };
        ConfigError::io(path, message, e)
    })?;
    parse(&text, path)
}

/// Validates `text` as the config file at `path` (used in messages; its
/// parent directory, made absolute against the current directory, is
/// [`Config::base_dir`]). Reads only template sources, to check they exist.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = ParseContext::from_process()
        .map_err(|e| ConfigError::io(path, format!("cannot read the current directory: {e}"), e))?;
    parse_with(text, path, &ctx)
}

/// [`parse`] with the current directory and home given.
pub fn parse_with(text: &str, path: &Path, ctx: &ParseContext) -> Result<Config, ConfigError> {
    // serde refuses nesting past 128 levels anyway; this only spares it
    // the quadratic time it takes to get there from a hostile file.
    const MAX_FLOW_NESTING: usize = 1000;
    if let Some(at) = checks::flow_nesting_over(text, MAX_FLOW_NESTING) {
        return Err(ConfigError::at(
            path,
            Some(at),
            format!("invalid YAML: brackets nested more than {MAX_FLOW_NESTING} deep"),
        ));
    }
    let map = Spans::read(text).map_err(|e| yaml_error(path, text, &e, None))?;
    if map.is_empty() {
        // Blank or comments only: say so rather than "end of file".
        return Err(ConfigError::new(
            path,
            "empty config file, expected keys like `application`, `repository` and `stages`",
        ));
    }
    let raw: RawConfig = serde_saphyr::from_str_with_options(text, spans::options())
        .map_err(|e| yaml_error(path, text, &e, Some(&map)))?;
    let parent = path.parent().unwrap_or(Path::new(""));
    let base_dir = if parent.as_os_str().is_empty() {
        ctx.cwd.clone()
    } else {
        checks::absolute(&ctx.cwd, parent)
    };
    let v = Validator {
        file: path,
        map,
        ctx,
        base_dir,
    };
    v.config(raw)
}

/// Turns a serde-saphyr error into a [`ConfigError`]: serde's wording
/// becomes ours (`key` for `field`, the YAML path of the offending node
/// named after the fragment) and the location moves to the end. `map`
/// holds the document's positions, when it could be read.
fn yaml_error(
    file: &Path,
    text: &str,
    e: &serde_saphyr::Error,
    map: Option<&Spans>,
) -> ConfigError {
    use serde_saphyr::Error as E;
    // An error inside a value an alias or merge key brought in is wrapped
    // with where the alias is; the inner error knows where the value is.
    let mut e = e;
    let mut alias_at = None;
    loop {
        match e {
            E::WithSnippet { error, .. } => e = error,
            E::AliasError {
                error, locations, ..
            } => {
                alias_at = alias_at.or(spans::pos(locations.reference_location));
                e = error;
            }
            _ => break,
        }
    }
    let raw_at = e.location();
    let at = raw_at.and_then(spans::pos).or(alias_at);
    let written = raw_at
        .and_then(|l| spans::written(l, text))
        .filter(|w| !w.is_empty())
        .map(show);
    // What the error is about. serde's own errors point at the key of the
    // entry being read (or at a list item); the YAML reader's, at the value.
    let key_path = |at: Option<Pos>| at.and_then(|a| map?.key_path(a)).map(<[Seg]>::to_vec);
    let value_path = |at: Option<Pos>| at.and_then(|a| map?.path_of_value(a)).map(<[Seg]>::to_vec);
    let named = |p: &[Seg]| (!p.is_empty()).then(|| show(&spans::show_path(p)));
    let value_at = |p: &[Seg]| map.and_then(|m| m.value(p));
    let in_ = |p: Option<&[Seg]>| {
        p.and_then(named)
            .map(|p| format!(" in `{p}`"))
            .unwrap_or_default()
    };
    let for_ = |p: Option<&[Seg]>| {
        p.and_then(named)
            .map(|p| format!(" for `{p}`"))
            .unwrap_or_default()
    };
    // The value of the entry serde was reading, and where it is written.
    let serde_value = || {
        let path = key_path(at).or_else(|| value_path(at));
        let place = path.as_deref().and_then(value_at).or(at);
        (path, place)
    };
    // The node the YAML reader stopped at.
    let reader_value = || value_path(at).or_else(|| key_path(at));
    let (message, at) = match e {
        // At the alias that crossed the limit, rather than what it repeats.
        E::Budget { breach, .. } => (budget_message(breach), alias_at.or(at)),
        E::MultipleDocuments { .. } => (
            "more than one YAML document in the file, expected one".to_string(),
            at,
        ),
        E::Eof { .. } => ("unexpected end of file".to_string(), at),
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            let parent = key_path(at).map(|mut p| {
                p.pop();
                p
            });
            let expected = if expected.is_empty() {
                "this takes no keys".to_string()
            } else {
                one_of(expected)
            };
            (
                format!(
                    "unknown key `{}`{}, {expected}",
                    show(field),
                    in_(parent.as_deref())
                ),
                at,
            )
        }
        E::DuplicateMappingKey { key, .. } => {
            let parent = key_path(at).map(|mut p| {
                p.pop();
                p
            });
            let key = key.as_deref().map(show).unwrap_or_default();
            (
                format!("duplicate key `{key}`{}", in_(parent.as_deref())),
                at,
            )
        }
        E::SerdeMissingField { field, .. } => {
            // At the last key read, or at an empty mapping.
            let path = key_path(at)
                .map(|mut p| {
                    p.pop();
                    p
                })
                .or_else(|| value_path(at));
            let place = path.as_deref().and_then(value_at).or(at);
            (
                format!("missing key `{field}`{}", in_(path.as_deref())),
                place,
            )
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let path = reader_value();
            (
                format!(
                    "unknown value `{}`{}, {}",
                    show(variant),
                    for_(path.as_deref()),
                    one_of(expected)
                ),
                at,
            )
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => {
            let kind = if matches!(e, E::SerdeInvalidType { .. }) {
                "invalid type"
            } else {
                "invalid value"
            };
            let (path, place) = serde_value();
            (
                friendly_types(&format!(
                    "{kind}{}: {}, expected {expected}",
                    for_(path.as_deref()),
                    show(unexpected)
                )),
                place,
            )
        }
        E::SerdeInvalidLength { len, expected, .. } => {
            let (path, place) = serde_value();
            (
                friendly_types(&format!(
                    "invalid length{}: {len}, expected {expected}",
                    for_(path.as_deref())
                )),
                place,
            )
        }
        E::InvalidScalar { ty, .. } => {
            let path = reader_value();
            let value = written.map(|w| format!("`{w}`, ")).unwrap_or_default();
            (
                friendly_types(&format!(
                    "invalid value{}: {value}expected {ty}",
                    for_(path.as_deref())
                )),
                at,
            )
        }
        E::Unexpected { expected, .. }
            if *expected == "sequence start" || *expected == "mapping start" =>
        {
            let path = reader_value();
            let want = if *expected == "sequence start" {
                "a list"
            } else {
                "a mapping"
            };
            let value = written.map(|w| format!("`{w}`, ")).unwrap_or_default();
            (
                format!(
                    "invalid type{}: {value}expected {want}",
                    for_(path.as_deref())
                ),
                at,
            )
        }
        _ => {
            let mut msg = show(&e.to_string());
            if let Some(l) = raw_at.filter(|l| spans::pos(*l).is_some()) {
                let mark = format!(" at line {}, column {}", l.line(), l.column());
                if let Some(i) = msg.rfind(&mark) {
                    msg.replace_range(i..i + mark.len(), "");
                }
            }
            if msg.starts_with(spans::LIMIT_PREFIX) {
                (msg, alias_at.or(at))
            } else if let Some(rest) = msg
                .strip_prefix("duplicate key ")
                .or_else(|| msg.strip_prefix("duplicate field "))
            {
                // From serde or from `OrderedMap`, at the second key.
                let parent = key_path(at).map(|mut p| {
                    p.pop();
                    p
                });
                (
                    format!("duplicate key {rest}{}", in_(parent.as_deref())),
                    at,
                )
            } else if let E::Message { .. } = e {
                // A custom error of a value read in shipit's own way.
                let (path, place) = serde_value();
                (
                    format!("{}{}", friendly_types(&msg), in_(path.as_deref())),
                    place,
                )
            } else {
                (format!("invalid YAML: {msg}"), at)
            }
        }
    };
    ConfigError::at(file, at, message)
}

/// serde's list of what was expected: `` `a` ``, `` `a` or `b` ``,
/// `` one of `a`, `b`, `c` ``.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "expected nothing".to_string(),
        [a] => format!("expected `{a}`"),
        [a, b] => format!("expected `{a}` or `{b}`"),
        _ => format!("expected one of {}", list(names)),
    }
}

/// What a document that crosses one of serde-saphyr's budgets is told.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let prefix = spans::LIMIT_PREFIX;
    match breach {
        B::Depth { .. } => format!(
            "{prefix}lists and mappings nested more than {} deep",
            spans::MAX_DEPTH
        ),
        B::Nodes { .. } | B::Events { .. } => format!(
            "{prefix}more than {} keys and values, counting what aliases repeat",
            spans::MAX_VALUES
        ),
        B::ScalarBytes { .. } => format!(
            "{prefix}more than {} MiB of text, counting what aliases repeat",
            spans::MAX_TEXT_BYTES >> 20
        ),
        B::Aliases { .. } | B::Anchors { .. } | B::MergeKeys { .. } => format!(
            "{prefix}more than {} anchors, aliases or merge keys",
            spans::MAX_ALIASES
        ),
        B::Documents { .. } => "more than one YAML document in the file, expected one".into(),
        other => format!("{prefix}a limit of the YAML reader was crossed ({other:?})"),
    }
}

/// serde's Rust-flavoured expectations in YAML words.
fn friendly_types(msg: &str) -> String {
    let mut out = msg
        .replace("expected u16", "expected a port number from 1 to 65535")
        .replace("expected u32", "expected a whole number of 0 or more")
        .replace("expected a sequence", "expected a list")
        .replace("unit value", "an empty value")
        .replace(
            "expected any valid JSON value",
            "expected a plain YAML value",
        )
        .replace("invalid type: enum,", "invalid type: tagged value,");
    while let Some(i) = out.find("expected struct Raw") {
        let end = out[i + 16..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(out.len(), |j| i + 16 + j);
        out.replace_range(i..end, "expected a mapping");
    }
    out
}

struct Validator<'a> {
    file: &'a Path,
    map: Spans,
    ctx: &'a ParseContext,
    base_dir: PathBuf,
}

impl Validator<'_> {
    fn err(&self, at: Option<Pos>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, at, message)
    }

    /// An error at the value of `path`.
    fn at(&self, path: &[Seg], message: impl Into<String>) -> ConfigError {
        self.err(self.map.value(path), message)
    }

    /// An error at the key of `path` (for a key that should not be there, or
    /// a bad name).
    fn at_key(&self, path: &[Seg], message: impl Into<String>) -> ConfigError {
        self.err(self.map.key(path), message)
    }

    fn duration(
        &self,
        raw: &RawDuration,
        path: &[Seg],
        name: &str,
    ) -> Result<Duration, ConfigError> {
        duration::from_yaml(&raw.0).ok_or_else(|| {
            self.at(
                path,
                format!(
                    "invalid duration `{}` for `{name}`, expected a number followed by ms, s, m, h or d like `30s`",
                    show(&raw.0.to_string())
                ),
            )
        })
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let application = self.application(&raw.application)?;
        let repository = self.repository(&raw.repository)?;
        let branch = self.branch(raw.branch.as_deref())?;
        let current_path = self.current_path(raw.current_path.as_deref())?;
        let keep_releases = raw.keep_releases.unwrap_or(5);
        if keep_releases == 0 {
            return Err(self.at(
                &ypath!["keep_releases"],
                "`keep_releases` is 0, expected at least 1",
            ));
        }
        let strategy = match raw.strategy {
            None | Some(RawStrategy::Git) => Strategy::Git,
            Some(RawStrategy::Copy) => Strategy::Copy,
        };
        let repo_tree = raw
            .repo_tree
            .as_deref()
            .map(|t| self.rel_path(t, &ypath!["repo_tree"], "`repo_tree`", "the repository"))
            .transpose()?;
        let linked_files = self.linked("linked_files", raw.linked_files.as_deref())?;
        let linked_dirs = self.linked("linked_dirs", raw.linked_dirs.as_deref())?;
        if let Some((i, dir)) = linked_dirs
            .iter()
            .enumerate()
            .find(|(_, d)| linked_files.contains(d))
        {
            return Err(self.at(
                &ypath!["linked_dirs", i],
                format!("`{dir}` is in both `linked_files` and `linked_dirs`"),
            ));
        }
        self.no_nested_links(&linked_files, &linked_dirs)?;
        let ssh = self.ssh(raw.ssh.clone().unwrap_or_default())?;
        let vars = self.vars(raw.vars.as_ref(), &ypath!["vars"])?;
        let templates = self.templates(raw.templates.as_deref().unwrap_or_default())?;
        if let Some(i) = templates
            .iter()
            .position(|t| t.dest.as_str().split('/').next() == Some(current_path.as_str()))
        {
            return Err(self.at(
                &ypath!["templates", i, "dest"],
                format!(
                    "template `dest` `{}` would overwrite shipit's own `{current_path}` (the `current_path` link), expected a path under `shared/`",
                    templates[i].dest
                ),
            ));
        }
        let stages = self.stages(&raw, &ssh, &vars)?;
        let tasks = self.tasks(raw.tasks.as_ref(), &stages)?;
        let secrets = raw
            .secrets
            .as_ref()
            .map(|s| self.secrets(s, &stages))
            .transpose()?;
        Ok(Config {
            path: self.file.to_path_buf(),
            base_dir: self.base_dir.clone(),
            application,
            repository,
            branch,
            current_path,
            keep_releases,
            strategy,
            repo_tree,
            linked_files,
            linked_dirs,
            seed_linked_dirs: raw.seed_linked_dirs.unwrap_or(false),
            submodules: raw.submodules.unwrap_or(false),
            ssh,
            vars,
            templates,
            tasks,
            stages,
            secrets,
            secret_values: Default::default(),
        })
    }

    /// `secrets: { file }`: for every stage, a path inside the project
    /// that is not its own recipients list.
    fn secrets(&self, raw: &RawSecrets, stages: &[Stage]) -> Result<SecretsSettings, ConfigError> {
        let at = ypath!["secrets", "file"];
        let settings = SecretsSettings {
            file: raw.file.clone(),
        };
        for st in stages {
            let file = settings.file_for(&st.name);
            if file.contains("{{") || file.contains("{%") {
                return Err(self.at(
                    &at,
                    format!(
                        "`secrets.file` `{}` may use `{{{{ stage }}}}` and nothing else of Tera",
                        show(&raw.file)
                    ),
                ));
            }
            self.rel_path(&file, &at, "`secrets.file`", "the project")?;
            if file.ends_with(".recipients") {
                return Err(self.at(
                    &at,
                    format!(
                        "`secrets.file` `{}` ends in `.recipients`, the name of the list of its recipients beside it",
                        show(&raw.file)
                    ),
                ));
            }
        }
        Ok(settings)
    }

    fn application(&self, name: &str) -> Result<String, ConfigError> {
        let at = ypath!["application"];
        if name.is_empty() {
            return Err(self.at(&at, "empty `application`, expected a name like `shop`"));
        }
        let ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !name.bytes().all(|b| b == b'.');
        if !ok {
            return Err(self.at(
                &at,
                format!(
                    "invalid application name `{}`, expected letters, digits, `.`, `_` or `-`",
                    show(name)
                ),
            ));
        }
        Ok(name.to_owned())
    }

    fn repository(&self, repo: &str) -> Result<String, ConfigError> {
        let at = ypath!["repository"];
        if repo.is_empty() {
            return Err(self.at(
                &at,
                "empty `repository`, expected a git URL or a local path",
            ));
        }
        if checks::has_control(repo) {
            return Err(self.at(
                &at,
                format!(
                    "invalid repository `{}`: contains a control character",
                    show(repo)
                ),
            ));
        }
        // git would read a leading `-` as an option.
        if repo.starts_with('-') {
            return Err(self.at(&at, format!("invalid repository `{repo}`: begins with `-`")));
        }
        if checks::is_url(repo) {
            return Ok(repo.to_owned());
        }
        let expanded = checks::expand_tilde(repo, self.ctx.home.as_deref())
            .ok_or_else(|| self.no_home(&at, "repository"))?;
        Ok(checks::absolute(&self.base_dir, &expanded)
            .to_string_lossy()
            .into_owned())
    }

    fn no_home(&self, at: &[Seg], key: &str) -> ConfigError {
        self.at(
            at,
            format!("cannot expand `~` in `{key}`: `HOME` is not set"),
        )
    }

    fn branch(&self, branch: Option<&str>) -> Result<String, ConfigError> {
        let Some(branch) = branch else {
            return Ok("main".into());
        };
        let at = ypath!["branch"];
        let reason = if branch.is_empty() {
            Some("is empty")
        } else if branch.starts_with('-') {
            Some("begins with `-`")
        } else if branch.chars().any(char::is_whitespace) {
            Some("contains whitespace")
        } else if checks::has_control(branch) {
            Some("contains a control character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(self.at(
                &at,
                format!(
                    "invalid branch `{}`: {reason}, expected a branch, tag or commit like `main`",
                    show(branch)
                ),
            )),
            None => Ok(branch.to_owned()),
        }
    }

    fn current_path(&self, name: Option<&str>) -> Result<String, ConfigError> {
        let Some(name) = name else {
            return Ok(DEFAULT_CURRENT_PATH.to_string());
        };
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !name.starts_with(['.', '-']);
        let reason = if !plain {
            Some("expected a plain name of letters, digits, `.`, `_` or `-` like `public_html`, not starting with `.` or `-`")
        } else if ["releases", "shared", "repo", "revisions.log"].contains(&name) {
            Some("that is shipit's own entry in `deploy_to`")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(self.at(
                &ypath!["current_path"],
                format!("invalid current_path `{}`: {reason}", show(name)),
            )),
            None => Ok(name.to_owned()),
        }
    }

    /// A path relative to a release or to `deploy_to`; `what` names the key
    /// and `base` what it is relative to.
    fn rel_path(
        &self,
        s: &str,
        at: &[Seg],
        what: &str,
        base: &str,
    ) -> Result<RelPath, ConfigError> {
        checks::rel_path(s).map_err(|e| {
            let s = show(s);
            let message = match e {
                RelPathError::Empty => {
                    format!("empty path in {what}, expected a path relative to {base}")
                }
                RelPathError::Absolute => {
                    format!("absolute path `{s}` in {what}, expected a path relative to {base}")
                }
                RelPathError::DotDot => {
                    format!("path `{s}` in {what} leaves {base} through `..`")
                }
                RelPathError::Control => {
                    format!("path `{s}` in {what} contains a control character")
                }
            };
            self.at(at, message)
        })
    }

    fn linked(&self, key: &str, entries: Option<&[String]>) -> Result<Vec<RelPath>, ConfigError> {
        let mut out: Vec<RelPath> = Vec::new();
        for (i, entry) in entries.unwrap_or_default().iter().enumerate() {
            let at = ypath![key, i];
            let p = self.rel_path(entry, &at, &format!("`{key}`"), "the release")?;
            if out.contains(&p) {
                return Err(self.at(&at, format!("duplicate path `{p}` in `{key}`")));
            }
            out.push(p);
        }
        Ok(out)
    }

    /// A linked path inside another (`storage/logs` and `storage`) would be
    /// linked through the outer link into `shared/` itself, a symlink loop
    /// that breaks this release and every later one: refused, at the inner
    /// path.
    fn no_nested_links(&self, files: &[RelPath], dirs: &[RelPath]) -> Result<(), ConfigError> {
        let all = || {
            let files = files
                .iter()
                .enumerate()
                .map(|(i, p)| ("linked_files", i, p));
            let dirs = dirs.iter().enumerate().map(|(i, p)| ("linked_dirs", i, p));
            files.chain(dirs)
        };
        for (key, i, inner) in all() {
            if let Some((outer_key, _, outer)) = all().find(|(_, _, outer)| {
                inner
                    .as_str()
                    .strip_prefix(outer.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            }) {
                let kind = if outer_key == "linked_dirs" {
                    "linked dir"
                } else {
                    "linked file"
                };
                return Err(self.at(
                    &ypath![key, i],
                    format!(
                        "`{inner}` in `{key}` is inside the {kind} `{outer}`, which links it already; list only `{outer}`"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn ssh(&self, raw: RawSsh) -> Result<SshSettings, ConfigError> {
        if let Some(user) = &raw.user {
            self.token(
                user,
                &ypath!["ssh", "user"],
                "`ssh.user`",
                "",
                checks::USER_EXTRA,
            )?;
        }
        if raw.port == Some(0) {
            return Err(self.at(
                &ypath!["ssh", "port"],
                "port 0 for `ssh.port`, expected 1 to 65535",
            ));
        }
        if let Some(jump) = &raw.proxy_jump {
            self.token(
                jump,
                &ypath!["ssh", "proxy_jump"],
                "`ssh.proxy_jump`",
                "",
                checks::JUMP_EXTRA,
            )?;
        }
        let identity_file = self.local_file(raw.identity_file.as_deref(), "identity_file")?;
        let config_file = self.local_file(raw.config_file.as_deref(), "config_file")?;
        let connect_timeout = match &raw.connect_timeout {
            None => Duration::from_secs(10),
            Some(d) => {
                let at = ypath!["ssh", "connect_timeout"];
                let d = self.duration(d, &at, "ssh.connect_timeout")?;
                if d.is_zero() {
                    return Err(self.at(
                        &at,
                        "`ssh.connect_timeout` is 0, expected a duration like `10s`",
                    ));
                }
                d
            }
        };
        Ok(SshSettings {
            user: raw.user,
            port: raw.port,
            identity_file,
            proxy_jump: raw.proxy_jump,
            config_file,
            connect_timeout,
            host_key_checking: match raw.host_key_checking {
                None | Some(RawHostKeyChecking::Strict) => HostKeyChecking::Strict,
                Some(RawHostKeyChecking::AcceptNew) => HostKeyChecking::AcceptNew,
            },
        })
    }

    /// Rejects what could be read as an option or break a command line;
    /// `whose` ends the name of the key, like " of host `a` in stage `s`".
    fn token(
        &self,
        s: &str,
        at: &[Seg],
        what: &str,
        whose: &str,
        extra: &str,
    ) -> Result<(), ConfigError> {
        match checks::unsafe_token(s, extra) {
            Some(reason) => {
                Err(self.at(at, format!("invalid {what} `{}`{whose}: {reason}", show(s))))
            }
            None => Ok(()),
        }
    }

    /// `ssh.identity_file` or `ssh.config_file`: `~/` expanded, relative to
    /// the config file's directory.
    fn local_file(&self, value: Option<&str>, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let at = ypath!["ssh", key];
        let reason = if value.is_empty() {
            Some("is empty")
        } else if value.starts_with('-') {
            Some("begins with `-`")
        } else if checks::has_control(value) {
            Some("contains a control character")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(self.at(
                &at,
                format!("invalid `ssh.{key}` `{}`: {reason}", show(value)),
            ));
        }
        let expanded = checks::expand_tilde(value, self.ctx.home.as_deref())
            .ok_or_else(|| self.no_home(&at, &format!("ssh.{key}")))?;
        Ok(Some(checks::absolute(&self.base_dir, &expanded)))
    }

    fn vars(
        &self,
        raw: Option<&OrderedMap<serde_json::Value>>,
        at: &[Seg],
    ) -> Result<BTreeMap<String, serde_json::Value>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, value) in raw.map(|m| m.0.as_slice()).unwrap_or_default() {
            if !checks::is_var_name(name) {
                let mut key = at.to_vec();
                key.push(Seg::Key(name.clone()));
                return Err(self.at_key(
                    &key,
                    format!(
                        "invalid var name `{}`, expected letters, digits and `_`, not starting with a digit",
                        show(name)
                    ),
                ));
            }
            out.insert(name.clone(), value.clone());
        }
        Ok(out)
    }

    /// Adds the `env:` at `at` to `into`, a name already there taking the
    /// new value in place. Values are strings, numbers or booleans.
    fn env(
        &self,
        raw: Option<&OrderedMap<serde_json::Value>>,
        at: &[Seg],
        into: &mut Vec<(String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in raw.map(|m| m.0.as_slice()).unwrap_or_default() {
            let mut key = at.to_vec();
            key.push(Seg::Key(name.clone()));
            if !checks::is_var_name(name) {
                return Err(self.at_key(
                    &key,
                    format!(
                        "invalid environment variable name `{}`, expected letters, digits and `_`, not starting with a digit",
                        show(name)
                    ),
                ));
            }
            if name.starts_with("SHIPIT_") {
                return Err(self.at_key(
                    &key,
                    format!(
                        "environment variable `{name}` is reserved, shipit sets the `SHIPIT_` ones"
                    ),
                ));
            }
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(self.at(
                        &key,
                        format!("invalid value for environment variable `{name}`, expected a string, number or boolean"),
                    ))
                }
            };
            match into.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value,
                None => into.push((name.clone(), value)),
            }
        }
        Ok(())
    }

    fn templates(&self, raw: &[RawTemplate]) -> Result<Vec<Template>, ConfigError> {
        // shipit's own entries in `deploy_to`, which a template must not
        // overwrite.
        const RESERVED: &[&str] = &["current", "releases", "repo", "revisions.log", ".shipit"];
        let mut out: Vec<Template> = Vec::new();
        for (i, t) in raw.iter().enumerate() {
            let src_at = ypath!["templates", i, "src"];
            let src = self.rel_path(
                &t.src,
                &src_at,
                "template `src`",
                "the config file's directory",
            )?;
            let src_path = self.base_dir.join(src.as_str());
            if !src_path.is_file() {
                let what = if src_path.is_dir() {
                    "is a directory, not a file"
                } else {
                    "not found"
                };
                return Err(self.at(
                    &src_at,
                    format!(
                        "template `{}` {what} (looked for `{}`)",
                        show(&t.src),
                        src_path.display()
                    ),
                ));
            }
            let dest_at = ypath!["templates", i, "dest"];
            let dest = self.rel_path(&t.dest, &dest_at, "template `dest`", "`deploy_to`")?;
            let first = dest.as_str().split('/').next().unwrap_or_default();
            if RESERVED.contains(&first) || dest.as_str() == "shared" {
                return Err(self.at(
                    &dest_at,
                    format!(
                        "template `dest` `{dest}` would overwrite shipit's own `{first}`, expected a path under `shared/`"
                    ),
                ));
            }
            if out.iter().any(|o| o.dest == dest) {
                return Err(self.at(&dest_at, format!("duplicate template `dest` `{dest}`")));
            }
            let mode_at = ypath!["templates", i, "mode"];
            let mode = match &t.mode {
                None => 0o644,
                Some(RawMode(m)) => {
                    // An integer is re-read from the file so `0o600` and
                    // `600` both mean what they look like.
                    let text = match m {
                        IntOrStr::Str(s) => s.clone(),
                        IntOrStr::Int(n) => self
                            .map
                            .plain_text(&mode_at)
                            .map_or_else(|| n.to_string(), str::to_owned),
                    };
                    parse_mode(&text).ok_or_else(|| {
                        self.at(
                            &mode_at,
                            format!(
                                "invalid mode `{}` for template `{dest}`, expected octal digits up to `7777` like `\"0600\"`",
                                show(&text)
                            ),
                        )
                    })?
                }
            };
            out.push(Template {
                src: t.src.clone(),
                src_path,
                dest,
                mode,
            });
        }
        Ok(out)
    }

    fn stages(
        &self,
        raw: &RawConfig,
        ssh: &SshSettings,
        global_vars: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Vec<Stage>, ConfigError> {
        let names: Vec<&str> = raw.stages.0.iter().map(|(n, _)| n.as_str()).collect();
        let mut out = Vec::new();
        for (name, stage) in &raw.stages.0 {
            let at = ypath!["stages", name];
            if !checks::is_name(name) {
                return Err(self.at_key(
                    &at,
                    format!(
                        "invalid stage name `{}`, expected letters, digits, `_` or `-`",
                        show(name)
                    ),
                ));
            }
            let hosts_from = self.hosts_from(name, stage, raw, ssh, global_vars)?;
            let hosts = if stage.hosts.as_deref().unwrap_or_default().is_empty()
                && !hosts_from.is_empty()
            {
                Vec::new()
            } else {
                self.hosts(name, stage, raw, ssh, global_vars)?
            };
            if let Some(from) = &stage.promote_from {
                let from_at = ypath!["stages", name, "promote_from"];
                if from == name {
                    return Err(self.at(
                        &from_at,
                        format!("stage `{name}` cannot promote from itself"),
                    ));
                }
                if !names.contains(&from.as_str()) {
                    let others: Vec<&str> = names.iter().copied().filter(|n| n != name).collect();
                    return Err(self.at(
                        &from_at,
                        format!(
                            "unknown stage `{}` in `promote_from` of stage `{name}`, expected one of {}",
                            show(from),
                            list(&others)
                        ),
                    ));
                }
            }
            let gate = stage
                .gate
                .as_ref()
                .map(|g| self.gate(name, g))
                .transpose()?;
            // With `hosts_from` the count is known only when it has run;
            // batches take a canary larger than the stage as all of it.
            let count = if hosts_from.is_empty() {
                hosts.len()
            } else {
                usize::MAX
            };
            let rollout = self.rollout(name, stage.rollout.as_ref(), count)?;
            let load_balancer = stage
                .load_balancer
                .as_ref()
                .map(|lb| self.load_balancer(name, lb, &hosts, !hosts_from.is_empty()))
                .transpose()?;
            out.push(Stage {
                name: name.clone().into(),
                hosts,
                promote_from: stage.promote_from.clone(),
                gate,
                rollout,
                max_failures: stage.max_failures.unwrap_or(0),
                hosts_from,
                from_inventory: Vec::new(),
                load_balancer,
            });
        }
        Ok(out)
    }

    fn hosts(
        &self,
        stage: &str,
        raw_stage: &RawStage,
        raw: &RawConfig,
        ssh: &SshSettings,
        global_vars: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Vec<Host>, ConfigError> {
        let raw_hosts = raw_stage.hosts.as_deref().unwrap_or_default();
        if raw_hosts.is_empty() {
            let at = if raw_stage.hosts.is_some() {
                ypath!["stages", stage, "hosts"].to_vec()
            } else {
                ypath!["stages", stage].to_vec()
            };
            return Err(self.at_key(&at, format!("stage `{stage}` has no hosts")));
        }
        let mut out: Vec<Host> = Vec::new();
        let mut seen = HashSet::new();
        for (i, h) in raw_hosts.iter().enumerate() {
            let host_at = ypath!["stages", stage, "hosts", i, "host"];
            let names = host_range::expand(&h.host).map_err(|reason| {
                self.at(
                    &host_at,
                    format!(
                        "invalid host range `{}` in stage `{stage}`: {reason}",
                        show(&h.host)
                    ),
                )
            })?;
            let roles = self.roles(
                h.roles.as_deref(),
                |j| ypath!["stages", stage, "hosts", i, "roles", j].to_vec(),
                &format!("stage `{stage}`"),
            )?;
            let transport = match h.transport {
                None | Some(RawTransport::Ssh) => TransportKind::Ssh,
                Some(RawTransport::Local) => TransportKind::Local,
            };
            let user = match &h.user {
                Some(user) => {
                    let user_at = ypath!["stages", stage, "hosts", i, "user"];
                    let whose = format!(" of host `{}` in stage `{stage}`", show(&h.host));
                    self.token(user, &user_at, "`user`", &whose, checks::USER_EXTRA)?;
                    Some(user.clone())
                }
                None => ssh.user.clone(),
            };
            if h.port == Some(0) {
                return Err(self.at(
                    &ypath!["stages", stage, "hosts", i, "port"],
                    format!(
                        "port 0 for host `{}` in stage `{stage}`, expected 1 to 65535",
                        show(&h.host)
                    ),
                ));
            }
            let port = h.port.or(ssh.port);
            let mut env = Vec::new();
            self.env(raw.env.as_ref(), &ypath!["env"], &mut env)?;
            self.env(
                raw_stage.env.as_ref(),
                &ypath!["stages", stage, "env"],
                &mut env,
            )?;
            self.env(
                h.env.as_ref(),
                &ypath!["stages", stage, "hosts", i, "env"],
                &mut env,
            )?;
            let mut vars = global_vars.clone();
            vars.extend(self.vars(
                h.vars.as_ref(),
                &ypath!["stages", stage, "hosts", i, "vars"],
            )?);

            for name in names {
                if let Some(reason) = checks::unsafe_token(&name, checks::HOST_EXTRA) {
                    return Err(self.at(
                        &host_at,
                        format!(
                            "invalid host `{}` in stage `{stage}`: {reason}",
                            show(&name)
                        ),
                    ));
                }
                if !seen.insert(name.clone()) {
                    return Err(self.at(
                        &host_at,
                        format!("duplicate host `{name}` in stage `{stage}`"),
                    ));
                }
                let deploy_to = self.deploy_to(stage, i, &name, h, raw, transport)?;
                out.push(Host {
                    name: name.into(),
                    roles: roles.clone(),
                    transport,
                    deploy_to,
                    user: user.clone(),
                    port,
                    vars: vars.clone(),
                    env: env.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Role names, each checked, without repeats, in order; `at(j)` is
    /// where role `j` is written, `whose` what they belong to.
    fn roles(
        &self,
        raw: Option<&[String]>,
        at: impl Fn(usize) -> Vec<Seg>,
        whose: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let mut roles: Vec<String> = Vec::new();
        for (j, role) in raw.unwrap_or_default().iter().enumerate() {
            if !checks::is_name(role) {
                return Err(self.at(
                    &at(j),
                    format!(
                        "invalid role `{}` in {whose}, expected letters, digits, `_` or `-`",
                        show(role)
                    ),
                ));
            }
            if !roles.contains(role) {
                roles.push(role.clone());
            }
        }
        Ok(roles)
    }

    /// The stage's `hosts_from` entries; each printed host will get the
    /// global `deploy_to`, ssh settings, vars and (global, stage) env.
    fn hosts_from(
        &self,
        stage: &str,
        raw_stage: &RawStage,
        raw: &RawConfig,
        ssh: &SshSettings,
        global_vars: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Vec<Inventory>, ConfigError> {
        let mut out = Vec::new();
        for (i, inv) in raw_stage.hosts_from.iter().flatten().enumerate() {
            let at = ypath!["stages", stage, "hosts_from", i];
            if inv.run.trim().is_empty() {
                return Err(self.at(
                    &ypath!["stages", stage, "hosts_from", i, "run"],
                    format!("empty `run` in `hosts_from` of stage `{stage}`"),
                ));
            }
            let roles = self.roles(
                inv.roles.as_deref(),
                |j| ypath!["stages", stage, "hosts_from", i, "roles", j].to_vec(),
                &format!("`hosts_from` of stage `{stage}`"),
            )?;
            let timeout = match &inv.timeout {
                None => Duration::from_secs(60),
                Some(d) => {
                    let t_at = ypath!["stages", stage, "hosts_from", i, "timeout"];
                    let key = format!("stages.{stage}.hosts_from[{i}].timeout");
                    let d = self.duration(d, &t_at, &key)?;
                    if d.is_zero() {
                        return Err(self.at(
                            &t_at,
                            format!("`{key}` is 0, expected a duration like `60s`"),
                        ));
                    }
                    d
                }
            };
            let Some(d) = &raw.deploy_to else {
                return Err(self.at_key(
                    &at,
                    format!(
                        "`hosts_from` in stage `{stage}` needs the global `deploy_to`: the hosts it prints have no entry of their own to set it"
                    ),
                ));
            };
            let deploy_to = checks::ssh_deploy_to(d).map_err(|_| {
                self.at(
                    &ypath!["deploy_to"],
                    format!(
                        "invalid deploy_to `{}` for the `hosts_from` hosts of stage `{stage}`, expected an absolute path or one under the login home (`~/app`)",
                        show(d)
                    ),
                )
            })?;
            let mut env = Vec::new();
            self.env(raw.env.as_ref(), &ypath!["env"], &mut env)?;
            self.env(
                raw_stage.env.as_ref(),
                &ypath!["stages", stage, "env"],
                &mut env,
            )?;
            out.push(Inventory {
                run: inv.run.clone(),
                roles,
                timeout,
                prototype: Host {
                    name: String::new().into(),
                    roles: Vec::new(),
                    transport: TransportKind::Ssh,
                    deploy_to,
                    user: ssh.user.clone(),
                    port: ssh.port,
                    vars: global_vars.clone(),
                    env,
                },
            });
        }
        Ok(out)
    }

    fn deploy_to(
        &self,
        stage: &str,
        i: usize,
        name: &str,
        h: &RawHost,
        raw: &RawConfig,
        transport: TransportKind,
    ) -> Result<String, ConfigError> {
        let (value, at) = match (&h.deploy_to, &raw.deploy_to) {
            (Some(d), _) => (d, ypath!["stages", stage, "hosts", i, "deploy_to"].to_vec()),
            (None, Some(d)) => (d, ypath!["deploy_to"].to_vec()),
            (None, None) => {
                return Err(self.at(
                    &ypath!["stages", stage, "hosts", i],
                    format!(
                        "host `{name}` in stage `{stage}` has no `deploy_to`, set it on the host or globally"
                    ),
                ))
            }
        };
        let resolved = match transport {
            TransportKind::Ssh => checks::ssh_deploy_to(value),
            TransportKind::Local => {
                checks::local_deploy_to(value, &self.base_dir, self.ctx.home.as_deref())
            }
        };
        resolved.map_err(|e| {
            let reason = match e {
                DeployToError::Empty => "is empty",
                DeployToError::Relative => "is relative, expected an absolute path or one under the login home (`~/app`) for an ssh host",
                DeployToError::DotDot => "contains `..`",
                DeployToError::Control => "contains a control character",
                DeployToError::Root => "is `/`, expected a directory of its own",
                DeployToError::Home => "is the login home itself, expected a directory of its own (`~/app`)",
                DeployToError::NoHome => "starts with `~` but `HOME` is not set",
            };
            self.at(
                &at,
                format!(
                    "invalid deploy_to `{}` for host `{name}` in stage `{stage}`: {reason}",
                    show(value)
                ),
            )
        })
    }

    fn gate(&self, stage: &str, g: &RawGate) -> Result<Gate, ConfigError> {
        let approvers = g.approvers.clone().unwrap_or_default();
        for (k, who) in approvers.iter().enumerate() {
            let at = ypath!["stages", stage, "gate", "approvers", k];
            if who.trim().is_empty() {
                return Err(self.at(
                    &at,
                    format!("empty approver name in the gate of stage `{stage}`"),
                ));
            }
            if checks::has_control(who) {
                return Err(self.at(
                    &at,
                    format!(
                        "invalid approver `{}` in the gate of stage `{stage}`: contains a control character",
                        show(who)
                    ),
                ));
            }
        }
        let approvals = g.approvals.unwrap_or(0);
        let distinct: BTreeSet<&String> = approvers.iter().collect();
        if !approvers.is_empty() && approvals as usize > distinct.len() {
            return Err(self.at(
                &ypath!["stages", stage, "gate", "approvals"],
                format!(
                    "gate of stage `{stage}` needs {approvals} approvals but names only {} approvers",
                    distinct.len()
                ),
            ));
        }
        let soak = match &g.soak {
            None => Duration::ZERO,
            Some(d) => self.duration(
                d,
                &ypath!["stages", stage, "gate", "soak"],
                &format!("stages.{stage}.gate.soak"),
            )?,
        };
        let approval_ttl = match &g.approval_ttl {
            None => Duration::from_secs(24 * 3600),
            Some(d) => {
                let at = ypath!["stages", stage, "gate", "approval_ttl"];
                let key = format!("stages.{stage}.gate.approval_ttl");
                let ttl = self.duration(d, &at, &key)?;
                if ttl.is_zero() {
                    return Err(
                        self.at(&at, format!("`{key}` is 0, expected a duration like `24h`"))
                    );
                }
                ttl
            }
        };
        if let Some(signers) = &g.allowed_signers {
            if !signers.starts_with('/') || checks::has_control(signers) {
                return Err(self.at(
                    &ypath!["stages", stage, "gate", "allowed_signers"],
                    format!(
                        "invalid allowed_signers `{}` in stage `{stage}`, expected an absolute path on the target hosts",
                        show(signers)
                    ),
                ));
            }
        }
        Ok(Gate {
            approvals,
            soak,
            approvers,
            self_approval: g.self_approval.unwrap_or(false),
            approval_ttl,
            allowed_signers: g.allowed_signers.clone(),
        })
    }

    fn rollout(
        &self,
        stage: &str,
        raw: Option<&RawRollout>,
        hosts: usize,
    ) -> Result<Rollout, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Rollout::default());
        };
        let batch = match &raw.batch {
            None => Batch::All,
            Some(RawBatch(b)) => parse_batch(b).ok_or_else(|| {
                self.at(
                    &ypath!["stages", stage, "rollout", "batch"],
                    format!(
                        "invalid batch `{}` in stage `{stage}`, expected a host count of at least 1 or a percentage from 1% to 100% like `25%`",
                        show(&b.to_string())
                    ),
                )
            })?,
        };
        let canary = raw.canary.unwrap_or(0);
        if canary as usize > hosts {
            let s = if hosts == 1 { "" } else { "s" };
            return Err(self.at(
                &ypath!["stages", stage, "rollout", "canary"],
                format!(
                    "canary of {canary} hosts in stage `{stage}`, which has only {hosts} host{s}"
                ),
            ));
        }
        Ok(Rollout { batch, canary })
    }

    fn load_balancer(
        &self,
        stage: &str,
        raw: &RawLoadBalancer,
        hosts: &[Host],
        inventory: bool,
    ) -> Result<LoadBalancer, ConfigError> {
        let mut roles: Vec<String> = Vec::new();
        for (j, role) in raw.roles.iter().flatten().enumerate() {
            // Hosts printed by `hosts_from` may bring the role.
            if !inventory && !hosts.iter().any(|h| h.roles.contains(role)) {
                return Err(self.at(
                    &ypath!["stages", stage, "load_balancer", "roles", j],
                    format!(
                        "unknown role `{}` in `load_balancer` of stage `{stage}`, no host of the stage has it",
                        show(role)
                    ),
                ));
            }
            if !roles.contains(role) {
                roles.push(role.clone());
            }
        }
        let command = |key: &str, c: &RawLbCommand| -> Result<LbCommand, ConfigError> {
            if c.run.trim().is_empty() {
                return Err(self.at(
                    &ypath!["stages", stage, "load_balancer", key, "run"],
                    format!("empty `run` in `load_balancer.{key}` of stage `{stage}`"),
                ));
            }
            let timeout = match &c.timeout {
                None => LB_TIMEOUT,
                Some(d) => {
                    let at = ypath!["stages", stage, "load_balancer", key, "timeout"];
                    let name = format!("stages.{stage}.load_balancer.{key}.timeout");
                    let d = self.duration(d, &at, &name)?;
                    if d.is_zero() {
                        return Err(self.at(
                            &at,
                            format!("`{name}` is 0, expected a duration like `60s`"),
                        ));
                    }
                    d
                }
            };
            Ok(LbCommand {
                run: c.run.clone(),
                local: c.local.unwrap_or(false),
                timeout,
            })
        };
        let wait = match &raw.wait {
            None => Duration::ZERO,
            Some(d) => self.duration(
                d,
                &ypath!["stages", stage, "load_balancer", "wait"],
                &format!("stages.{stage}.load_balancer.wait"),
            )?,
        };
        Ok(LoadBalancer {
            drain: command("drain", &raw.drain)?,
            undrain: command("undrain", &raw.undrain)?,
            wait,
            roles,
        })
    }

    /// A task's `run` and, for `smoke_test`, `http`/`expect`: exactly one
    /// of the two.
    fn task_command(
        &self,
        name: &str,
        t: &RawTask,
    ) -> Result<(String, Option<HttpCheckSpec>), ConfigError> {
        let at = |key: &str| ypath!["tasks", name, key];
        if t.http.is_none() {
            if t.expect.is_some() {
                return Err(self.at_key(
                    &at("expect"),
                    format!("`expect` in task `{name}` needs `http:`"),
                ));
            }
            return match &t.run {
                Some(run) if run.trim().is_empty() => Err(self.at(
                    &at("run"),
                    format!("empty `run` in task `{name}`"),
                )),
                Some(run) => Ok((run.clone(), None)),
                None if name == "smoke_test" => Err(self.at_key(
                    &ypath!["tasks", name],
                    format!("task `{name}` has no `run` or `http`, expected a command or a URL to check"),
                )),
                None => Err(self.at_key(
                    &ypath!["tasks", name],
                    format!("task `{name}` has no `run`, expected the command it runs"),
                )),
            };
        }
        let url = t.http.as_deref().unwrap_or_default();
        if name != "smoke_test" {
            return Err(self.at_key(
                &at("http"),
                format!("`http` in task `{name}`: only `smoke_test` may be an HTTP check"),
            ));
        }
        if t.run.is_some() {
            return Err(self.at_key(
                &at("run"),
                format!("task `{name}` has both `run` and `http`, expected one of them"),
            ));
        }
        if t.local == Some(true) {
            return Err(self.at_key(
                &at("local"),
                format!("task `{name}` is an HTTP check, which always runs on the machine running shipit: `local` does not apply"),
            ));
        }
        if !url.trim_start().starts_with("http://") {
            let why = if url.trim_start().starts_with("https://") {
                "https is not supported (check the host's plain HTTP port, as a load balancer's health check does)"
            } else {
                "expected a URL like `http://{{ host }}:8080/up`"
            };
            return Err(self.at(
                &at("http"),
                format!("invalid `http` URL `{}` in task `{name}`: {why}", show(url)),
            ));
        }
        let expect = t.expect.unwrap_or(200);
        if !(100..=599).contains(&expect) {
            return Err(self.at(
                &at("expect"),
                format!("invalid `expect` {expect} in task `{name}`, expected an HTTP status code like 200"),
            ));
        }
        Ok((
            String::new(),
            Some(HttpCheckSpec {
                url: url.to_string(),
                expect,
            }),
        ))
    }

    fn tasks(
        &self,
        raw: Option<&OrderedMap<RawTask>>,
        stages: &[Stage],
    ) -> Result<Vec<Task>, ConfigError> {
        let raw = raw.map(|m| m.0.as_slice()).unwrap_or_default();
        let any_inventory = stages.iter().any(|s| !s.hosts_from.is_empty());
        let known_roles: HashSet<&str> = stages
            .iter()
            .flat_map(|s| &s.hosts)
            .flat_map(|h| &h.roles)
            .chain(
                stages
                    .iter()
                    .flat_map(|s| &s.hosts_from)
                    .flat_map(|i| &i.roles),
            )
            .map(String::as_str)
            .collect();
        let mut out = Vec::new();
        for (name, t) in raw {
            let at = ypath!["tasks", name];
            if !checks::is_name(name) {
                return Err(self.at_key(
                    &at,
                    format!(
                        "invalid task name `{}`, expected letters, digits, `_` or `-`",
                        show(name)
                    ),
                ));
            }
            if name == AFTER_FAILED {
                return Err(self.at_key(
                    &at,
                    format!(
                        "task `{name}` has the name `after: {AFTER_FAILED}` uses for failure hooks"
                    ),
                ));
            }
            if name == AFTER_FINISHED {
                return Err(self.at_key(
                    &at,
                    format!(
                        "task `{name}` has the name `after: {AFTER_FINISHED}` uses for notify hooks"
                    ),
                ));
            }
            let definable = DEFINABLE_STEPS.contains(&name.as_str());
            if BUILTIN_STEPS.contains(&name.as_str()) && !definable {
                return Err(self.at_key(
                    &at,
                    format!(
                        "task `{name}` has the name of a built-in step, only `restart` and `smoke_test` may be given as tasks"
                    ),
                ));
            }
            if LB_STEPS.contains(&name.as_str()) {
                return Err(self.at_key(
                    &at,
                    format!("task `{name}` has the name of the load balancer's step, expected another name"),
                ));
            }
            let (run, http) = self.task_command(name, t)?;
            let after_at = ypath!["tasks", name, "after"];
            match (&t.after, definable) {
                (Some(_), true) => {
                    return Err(self.at_key(
                        &after_at,
                        format!(
                            "task `{name}` takes no `after`, it gives the command of the built-in step `{name}`"
                        ),
                    ))
                }
                (None, false) => {
                    return Err(self.at_key(
                        &at,
                        format!(
                            "task `{name}` has no `after`, expected the step it runs after, one of {}",
                            list(&self.steps(raw, name))
                        ),
                    ))
                }
                (Some(after), false) if after == AFTER_FAILED => {}
                (Some(after), false) if after == AFTER_FINISHED => {
                    if t.local != Some(true) {
                        return Err(self.at_key(
                            &after_at,
                            format!(
                                "task `{name}` runs `after: {AFTER_FINISHED}`, which needs `local: true`: notify hooks run on the machine running shipit, with the run's outcome in a file there"
                            ),
                        ));
                    }
                }
                (Some(after), false) => {
                    if after == "unlock" {
                        return Err(self.at(
                            &after_at,
                            format!("task `{name}` cannot run after `unlock`, the last step, expected an earlier step like `cleanup`"),
                        ));
                    }
                    // A failure hook is no step of the deploy to follow.
                    let is_task = raw.iter().any(|(n, t)| {
                        n == after
                            && !DEFINABLE_STEPS.contains(&n.as_str())
                            && t.after.as_deref() != Some(AFTER_FAILED)
                            && t.after.as_deref() != Some(AFTER_FINISHED)
                    });
                    if !BUILTIN_STEPS.contains(&after.as_str()) && !is_task {
                        return Err(self.at(
                            &after_at,
                            format!(
                                "unknown step `{}` in `after` of task `{name}`, expected one of {}",
                                show(after),
                                list(&self.steps(raw, name))
                            ),
                        ));
                    }
                }
                (None, true) => {}
            }
            let mut roles = Vec::new();
            for (j, role) in t.roles.iter().flatten().enumerate() {
                let role_at = ypath!["tasks", name, "roles", j];
                if !checks::is_name(role) {
                    return Err(self.at(
                        &role_at,
                        format!(
                            "invalid role `{}` in task `{name}`, expected letters, digits, `_` or `-`",
                            show(role)
                        ),
                    ));
                }
                // Hosts printed by `hosts_from` may bring roles of their
                // own: with an inventory, any role may turn up.
                if !known_roles.contains(role.as_str()) && !any_inventory {
                    return Err(self.at(
                        &role_at,
                        format!("unknown role `{role}` in task `{name}`, no host has it"),
                    ));
                }
                if !roles.contains(role) {
                    roles.push(role.clone());
                }
            }
            let interval = match &t.interval {
                None => Duration::from_secs(1),
                Some(d) => self.duration(
                    d,
                    &ypath!["tasks", name, "interval"],
                    &format!("tasks.{name}.interval"),
                )?,
            };
            let timeout = match &t.timeout {
                None => None,
                Some(d) => {
                    let at = ypath!["tasks", name, "timeout"];
                    let key = format!("tasks.{name}.timeout");
                    let d = self.duration(d, &at, &key)?;
                    if d.is_zero() {
                        return Err(
                            self.at(&at, format!("`{key}` is 0, expected a duration like `60s`"))
                        );
                    }
                    Some(d)
                }
            };
            out.push(Task {
                name: name.clone(),
                after: t.after.clone(),
                roles,
                once: t.once.unwrap_or(false),
                local: t.local.unwrap_or(false),
                run,
                retries: t.retries.unwrap_or(0),
                interval,
                timeout,
                http,
            });
        }
        self.check_cycles(&out)?;
        Ok(out)
    }

    /// What a task may run after: built-in steps but `unlock`, `failed`,
    /// then the other tasks (but failure hooks).
    fn steps<'r>(&self, raw: &'r [(String, RawTask)], except: &str) -> Vec<&'r str> {
        BUILTIN_STEPS
            .iter()
            .copied()
            .filter(|s| *s != "unlock")
            .chain([AFTER_FAILED, AFTER_FINISHED])
            .chain(
                raw.iter()
                    .filter(|(_, t)| {
                        t.after.as_deref() != Some(AFTER_FAILED)
                            && t.after.as_deref() != Some(AFTER_FINISHED)
                    })
                    .map(|(n, _)| n.as_str())
                    .filter(|n| *n != except && !BUILTIN_STEPS.contains(n)),
            )
            .collect()
    }

    /// Each task has at most one `after`, so following `after` from each
    /// task either reaches a built-in step or goes round a circle.
    fn check_cycles(&self, tasks: &[Task]) -> Result<(), ConfigError> {
        let index = |name: &str| tasks.iter().position(|t| t.name == name);
        for start in 0..tasks.len() {
            let mut trail = vec![start];
            let mut current = start;
            while let Some(next) = tasks[current].after.as_deref().and_then(index) {
                if let Some(k) = trail.iter().position(|&t| t == next) {
                    let circle = &trail[k..];
                    // Report each circle once, from its first task in the
                    // file, when the walk starts there.
                    if circle.iter().min() != Some(&start) {
                        break;
                    }
                    let names: Vec<&str> = circle
                        .iter()
                        .chain(std::iter::once(&circle[0]))
                        .map(|&t| tasks[t].name.as_str())
                        .collect();
                    return Err(self.at(
                        &ypath!["tasks", &tasks[start].name, "after"],
                        format!("tasks form a cycle: `{}`", names.join(" -> ")),
                    ));
                }
                trail.push(next);
                current = next;
            }
        }
        Ok(())
    }
}

/// `` `a`, `b`, `c` ``.
fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `0600`, `600`, `0o600`: octal, at most `7777`.
fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

fn parse_batch(b: &IntOrStr) -> Option<Batch> {
    match b {
        IntOrStr::Int(n) => u32::try_from(*n).ok().filter(|n| *n >= 1).map(Batch::Count),
        IntOrStr::Str(s) => {
            let number = |d: &str| {
                (!d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| d.parse::<u32>().ok())
                    .flatten()
            };
            match s.strip_suffix('%') {
                Some(p) => number(p)
                    .filter(|p| (1..=100).contains(p))
                    .map(Batch::Percent),
                None => number(s).filter(|n| *n >= 1).map(Batch::Count),
            }
        }
    }
}

#[cfg(test)]
mod tests;
