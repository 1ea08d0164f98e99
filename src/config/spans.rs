//! Reading `deploy.yml` with serde-saphyr: the options and limits every
//! read uses, and where each key and value sits in the file.
//!
//! serde forgets positions once a value is deserialized, so the document is
//! first read into a tree of [`Spanned`] nodes: serde-saphyr resolves
//! anchors, aliases and merge keys (`<<: *base`) and gives each node its
//! line and column. The semantic checks of [`super::validate`] look
//! positions up in that tree by YAML path (for example
//! `stages.production.hosts[1].roles[0]`), and serde's own errors are named
//! by the path of the node they point at.
//!
//! The same read counts what the document expands to, aliases included:
//! an alias bomb or a file of a million values is refused here, at the
//! node that crosses the limit, before anything is built from it.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Options, Spanned};

/// The most keys and values (scalars, lists and mappings, each alias
/// counted as what it stands for) a `deploy.yml` may hold. A real one
/// holds hundreds.
pub const MAX_VALUES: usize = 20_000;

/// The most bytes of text (keys and scalar values, each alias counted as
/// what it stands for) a `deploy.yml` may expand to.
pub const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;

/// The deepest nesting of lists and mappings. A real `deploy.yml` nests
/// 6 or 7 deep (`stages.production.hosts[0].vars.x`); reading each level
/// takes stack, and a debug build's test threads have only 2 MiB.
pub const MAX_DEPTH: usize = 32;

/// The most anchors, aliases and merge keys, each.
pub const MAX_ALIASES: usize = 10_000;

/// The serde-saphyr options of every read: YAML 1.2 booleans, merge keys
/// on, one document, and budgets well above any real `deploy.yml`.
pub fn options() -> Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = 2 * MAX_VALUES;
    budget.max_events = 4 * MAX_VALUES;
    budget.max_total_scalar_bytes = MAX_TEXT_BYTES;
    budget.max_documents = 2;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ALIASES;
    budget.max_merge_keys = MAX_ALIASES;
    // What aliases expand to is counted exactly (see `count`), so a file
    // with many hosts merging one `&defaults` is not refused by a guess.
    budget.enforce_alias_anchor_ratio = false;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.strict_booleans = true;
    // `mode: 0640` stays the digits written (the loader reads them as
    // octal), as does a var like `zip: 01234`.
    options.leading_zero_numbers_as_strings = true;
    options.with_snippet = false;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Merge;
    options
}

/// One step of a YAML path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(key: &str) -> Self {
        Seg::Key(key.to_owned())
    }
}

impl From<&String> for Seg {
    fn from(key: &String) -> Self {
        Seg::Key(key.clone())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

/// Builds a `[Seg; N]` from keys and indexes: `ypath!["tasks", name, "roles", 0]`.
macro_rules! ypath {
    ($($seg:expr),* $(,)?) => {
        [$($crate::config::spans::Seg::from($seg)),*]
    };
}
pub(crate) use ypath;

/// `stages.s.hosts[0]`, as serde's messages name a place.
pub fn show_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A 1-based (line, column) position.
pub type Pos = (usize, usize);

/// The 1-based position of a serde-saphyr location, when known.
pub fn pos(location: Location) -> Option<Pos> {
    let (line, column) = (location.line(), location.column());
    (line > 0 && column > 0).then_some((line as usize, column as usize))
}

/// Positions of the keys and values of one document.
#[derive(Debug, Default)]
pub struct Spans {
    values: HashMap<Vec<Seg>, Pos>,
    keys: HashMap<Vec<Seg>, Pos>,
    /// The text of plain scalars as written, before YAML typing (`0600`
    /// stays `0600`, `0o600` stays `0o600`).
    plain: HashMap<Vec<Seg>, String>,
    /// The path of the value written at a position (the first, when an
    /// alias puts one value at several paths).
    value_at: HashMap<Pos, Vec<Seg>>,
    /// The path of the key written at a position.
    key_at: HashMap<Pos, Vec<Seg>>,
    /// The document is empty (or `null`).
    empty: bool,
}

impl Spans {
    /// Reads `text` into its tree of positions. The error is serde-saphyr's,
    /// for a document that is not YAML or crosses a limit.
    pub fn read(text: &str) -> Result<Spans, serde_saphyr::Error> {
        COUNT.with(|c| c.set(Count::default()));
        let mut options = options();
        // Duplicates are the typed read's to report; here both are kept so
        // the second one's position is known.
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
        let root: Option<Spanned<Node>> = serde_saphyr::from_str_with_options(text, options)?;
        let mut spans = Spans::default();
        match root {
            Some(root) => spans.index(Vec::new(), &root, text),
            None => spans.empty = true,
        }
        Ok(spans)
    }

    /// Records `node` at `path`. A value brought in by an alias or a merge
    /// key is placed where it is written (its definition), which is what
    /// an error asks to change.
    fn index(&mut self, path: Vec<Seg>, node: &Spanned<Node>, text: &str) {
        let Some(at) = pos(node.defined).or(pos(node.referenced)) else {
            return;
        };
        self.value_at.entry(at).or_insert_with(|| path.clone());
        if let Some(referenced) = pos(node.referenced) {
            self.value_at
                .entry(referenced)
                .or_insert_with(|| path.clone());
        }
        match &node.value {
            Node::Scalar { plain: true } => {
                if let Some(written) = written(node.defined, text) {
                    self.plain.insert(path.clone(), written.to_owned());
                }
            }
            Node::Scalar { plain: false } => {}
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let mut p = path.clone();
                    p.push(Seg::Index(i));
                    self.index(p, item, text);
                }
            }
            Node::Map(entries) => {
                for (key, value) in entries {
                    // A complex key (a list or mapping) has no path.
                    let Some(name) = &key.value.0 else {
                        continue;
                    };
                    let mut p = path.clone();
                    p.push(Seg::Key(name.clone()));
                    if let Some(at) = pos(key.defined).or(pos(key.referenced)) {
                        self.key_at.entry(at).or_insert_with(|| p.clone());
                        // A key written twice is the typed read's to
                        // report; the first one stands here.
                        if self.keys.contains_key(&p) {
                            continue;
                        }
                        self.keys.insert(p.clone(), at);
                    }
                    self.index(p, value, text);
                }
            }
        }
        self.values.entry(path).or_insert(at);
    }

    /// Whether the document is blank, comments only, or `null`.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// The position of the value at `path`, or of its nearest ancestor that
    /// has one.
    pub fn value(&self, path: &[Seg]) -> Option<Pos> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.values.get(&path[..n]).copied())
    }

    /// The position of the key whose value is at `path`, or else of the
    /// value.
    pub fn key(&self, path: &[Seg]) -> Option<Pos> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }

    /// The plain (unquoted) scalar at `path` as written.
    pub fn plain_text(&self, path: &[Seg]) -> Option<&str> {
        self.plain.get(path).map(String::as_str)
    }

    /// The path of the value written at `at`.
    pub fn path_of_value(&self, at: Pos) -> Option<&[Seg]> {
        self.value_at.get(&at).map(Vec::as_slice)
    }

    /// The path of the key written at `at` (its mapping's, and its own
    /// name).
    pub fn key_path(&self, at: Pos) -> Option<&[Seg]> {
        self.key_at.get(&at).map(Vec::as_slice)
    }
}

/// The text of `text` under `location`'s span, when it has byte offsets.
pub fn written(location: Location, text: &str) -> Option<&str> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?)
}

/// What the read has expanded to so far. serde-saphyr's budgets count the
/// events of the file; an alias is one event however big the value it
/// repeats, so the repeated values are counted here, as they arrive.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    values: usize,
    text_bytes: usize,
}

thread_local! {
    static COUNT: Cell<Count> = Cell::new(Count::default());
}

/// Counts one value of `bytes` of text; an error past a limit.
fn count<E: de::Error>(bytes: usize) -> Result<(), E> {
    COUNT.with(|c| {
        let mut n = c.get();
        n.values += 1;
        n.text_bytes = n.text_bytes.saturating_add(bytes);
        c.set(n);
        if n.values > MAX_VALUES {
            Err(E::custom(format_args!(
                "{LIMIT_PREFIX}more than {MAX_VALUES} keys and values, counting what aliases repeat"
            )))
        } else if n.text_bytes > MAX_TEXT_BYTES {
            Err(E::custom(format_args!(
                "{LIMIT_PREFIX}more than {} MiB of text, counting what aliases repeat",
                MAX_TEXT_BYTES >> 20
            )))
        } else {
            Ok(())
        }
    })
}

/// Starts the messages of [`count`], so the loader can tell them apart.
pub const LIMIT_PREFIX: &str = "config too large: ";

/// A node of the document, without its text (positions are all that is
/// kept, so reading it copies nothing an alias repeats).
#[derive(Debug)]
enum Node {
    Scalar { plain: bool },
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
}

/// A mapping key: its text when it is a scalar.
#[derive(Debug)]
struct Key(Option<String>);

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        count(0)?;
        Ok(Node::Scalar { plain: true })
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        count(0)?;
        Ok(Node::Scalar { plain: true })
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
        count(0)?;
        Ok(Node::Scalar { plain: true })
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        count(0)?;
        Ok(Node::Scalar { plain: true })
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
        count(0)?;
        Ok(Node::Scalar { plain: true })
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        count(0)?;
        Ok(Node::Scalar { plain: true })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        count(v.len())?;
        // Typed scalars (numbers above) are plain; a string may have been
        // quoted, which the text under its span tells.
        Ok(Node::Scalar { plain: false })
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        count(v.len())?;
        Ok(Node::Scalar { plain: false })
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        count(0)?;
        Ok(Node::Scalar { plain: false })
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        count(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        count(0)?;
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                count(v.len())?;
                Ok(Key(Some(v.to_owned())))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                count(0)?;
                Ok(Key(Some(String::new())))
            }

            fn visit_none<E: de::Error>(self) -> Result<Key, E> {
                self.visit_unit()
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Key, A::Error> {
                NodeVisitor.visit_seq(seq).map(|_| Key(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Key, A::Error> {
                NodeVisitor.visit_map(map).map(|_| Key(None))
            }
        }

        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_values() {
        let text = "\
stages:
  a:
    rollout: {}
  b:
    x: 1
    y: [p, \"q\"]
z:
- 1
- k: v
";
        let m = Spans::read(text).unwrap();
        let cases: &[(Vec<Seg>, Pos)] = &[
            (ypath![].to_vec(), (1, 1)),
            (ypath!["stages"].to_vec(), (2, 3)),
            (ypath!["stages", "a"].to_vec(), (3, 5)),
            (ypath!["stages", "a", "rollout"].to_vec(), (3, 14)),
            (ypath!["stages", "b", "x"].to_vec(), (5, 8)),
            (ypath!["stages", "b", "y"].to_vec(), (6, 8)),
            (ypath!["stages", "b", "y", 1].to_vec(), (6, 12)),
            (ypath!["z"].to_vec(), (8, 3)),
            (ypath!["z", 1].to_vec(), (9, 3)),
            (ypath!["z", 1, "k"].to_vec(), (9, 6)),
            // Unknown paths fall back to the nearest ancestor.
            (ypath!["stages", "b", "nope", 3].to_vec(), (5, 5)),
        ];
        for (path, want) in cases {
            assert_eq!(m.value(path), Some(*want), "{path:?}");
        }
        assert_eq!(m.key(&ypath!["stages", "b"]), Some((4, 3)));
        assert_eq!(m.key(&ypath!["z", 1, "k"]), Some((9, 3)));
        assert_eq!(m.plain_text(&ypath!["stages", "b", "x"]), Some("1"));
        assert_eq!(m.plain_text(&ypath!["stages", "b", "y", 1]), None);
        assert_eq!(
            m.path_of_value((6, 12)),
            Some(&ypath!["stages", "b", "y", 1][..])
        );
        assert_eq!(m.key_path((5, 5)), Some(&ypath!["stages", "b", "x"][..]));
        assert_eq!(show_path(&ypath!["stages", "b", "y", 1]), "stages.b.y[1]");
    }

    #[test]
    fn duplicate_keys() {
        let m = Spans::read("a: 1\nb: { c: 1, c: 2 }\na: 2\na: 3\n").unwrap();
        assert_eq!(m.key(&ypath!["a"]), Some((1, 1)));
        assert_eq!(m.value(&ypath!["a"]), Some((1, 4)));
        assert_eq!(m.value(&ypath!["b", "c"]), Some((2, 9)));
        assert_eq!(m.key_path((3, 1)), Some(&ypath!["a"][..]));
    }

    /// Values brought in by a merge key or an alias are found where they
    /// are written.
    #[test]
    fn merged_and_aliased_values_point_at_their_definition() {
        let text = "\
base: &base
  user: deploy
  port: 22
hosts:
  - <<: *base
    host: a
  - *base
";
        let m = Spans::read(text).unwrap();
        assert_eq!(m.value(&ypath!["hosts", 0, "host"]), Some((6, 11)));
        assert_eq!(m.value(&ypath!["hosts", 0, "user"]), Some((2, 9)));
        assert_eq!(m.plain_text(&ypath!["hosts", 0, "port"]), Some("22"));
    }

    /// Nesting is refused at the limit, well before the stack of a test
    /// thread (2 MiB, in a debug build) runs out.
    #[test]
    fn nesting_is_bounded() {
        for deep in [MAX_DEPTH - 2, MAX_DEPTH + 1, 1000] {
            let text = format!("a: {}{}\n", "[".repeat(deep), "]".repeat(deep));
            let read = Spans::read(&text);
            assert_eq!(read.is_ok(), deep < MAX_DEPTH, "{deep}");
        }
    }
}
