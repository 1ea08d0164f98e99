//! Where each key and value of a YAML document sits in the file.
//!
//! serde forgets positions once a value is deserialized, so the semantic
//! checks of [`super::validate`] look them up here by YAML path (for example
//! `stages.production.hosts[1].roles[0]`), built from yaml-rust2's marked
//! event stream.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

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
        [$($crate::config::source_map::Seg::from($seg)),*]
    };
}
pub(crate) use ypath;

/// A 1-based (line, column) position.
pub type Pos = (usize, usize);

/// Positions of the keys and values of one document.
#[derive(Debug, Default)]
pub struct SourceMap {
    values: HashMap<Vec<Seg>, Pos>,
    keys: HashMap<Vec<Seg>, Pos>,
    /// The second occurrence of a key written twice in one mapping.
    duplicates: HashMap<Vec<Seg>, Pos>,
    /// The text of plain scalars as written, before YAML typing (`0600`
    /// stays `0600`, `0o600` stays `0o600`).
    plain: HashMap<Vec<Seg>, String>,
}

impl SourceMap {
    /// Maps `text`. A document yaml-rust2 cannot fully parse gives the part
    /// it read; lookups then fall back to the nearest known ancestor.
    pub fn build(text: &str) -> SourceMap {
        let mut builder = Builder {
            map: SourceMap::default(),
            stack: Vec::new(),
            lines: text.lines().map(|l| (l, l.is_ascii())).collect(),
            too_deep: 0,
        };
        let mut parser = Parser::new_from_str(text);
        // Event by event, not `Parser::load`: that recurses once per level
        // of nesting, so a hostile file (`- - - - ...`) would overflow the
        // stack. Errors are serde's to report; a partial map is still
        // useful. Only the first document, as serde reads only one.
        while let Ok((event, mark)) = parser.next_token() {
            let last = matches!(event, Event::DocumentEnd | Event::StreamEnd);
            builder.on_event(event, mark);
            if last {
                break;
            }
        }
        builder.map
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

    /// The position of the second occurrence of the key at `path`, when it
    /// is written twice.
    pub fn duplicate(&self, path: &[Seg]) -> Option<Pos> {
        self.duplicates.get(path).copied()
    }

    /// The plain (unquoted) scalar at `path` as written.
    pub fn plain_text(&self, path: &[Seg]) -> Option<&str> {
        self.plain.get(path).map(String::as_str)
    }
}

enum Frame {
    Map {
        path: Vec<Seg>,
        key: Option<String>,
        awaiting_key: bool,
        /// Block collections get their position from their first entry.
        pending: bool,
    },
    Seq {
        path: Vec<Seg>,
        next: usize,
        pending: bool,
    },
}

impl Frame {
    fn path_pending(&mut self) -> (&Vec<Seg>, &mut bool) {
        match self {
            Frame::Map { path, pending, .. } | Frame::Seq { path, pending, .. } => (path, pending),
        }
    }
}

/// Deeper than any real `deploy.yml`; serde refuses such files anyway.
const MAX_DEPTH: usize = 32;

struct Builder<'t> {
    map: SourceMap,
    stack: Vec<Frame>,
    /// Each line, and whether it is ASCII (then columns are byte offsets).
    lines: Vec<(&'t str, bool)>,
    /// How many collections deeper than [`MAX_DEPTH`] are open; their
    /// insides are not mapped, so hostile nesting costs nothing.
    too_deep: usize,
}

/// What a node being started is to its parent.
enum Role {
    Key,
    Value(Vec<Seg>),
}

impl Builder<'_> {
    fn role(&self) -> Role {
        match self.stack.last() {
            None => Role::Value(Vec::new()),
            Some(Frame::Map {
                awaiting_key: true, ..
            }) => Role::Key,
            Some(Frame::Map { path, key, .. }) => {
                let mut p = path.clone();
                // A complex (non-scalar) key: its value gets a path no
                // lookup will ask for.
                p.push(Seg::Key(key.clone().unwrap_or_else(|| "\0".into())));
                Role::Value(p)
            }
            Some(Frame::Seq { path, next, .. }) => {
                let mut p = path.clone();
                p.push(Seg::Index(*next));
                Role::Value(p)
            }
        }
    }

    /// The node just started (scalar) or ended (collection) is complete.
    fn finish_node(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { awaiting_key, .. }) => *awaiting_key = !*awaiting_key,
            Some(Frame::Seq { next, .. }) => *next += 1,
            None => {}
        }
    }

    fn start_collection(&mut self, mark: Marker, seq: bool) {
        // yaml-rust2 marks a flow collection at its bracket but a block one
        // somewhere inside; the latter takes its first entry's position.
        let flow = self
            .lines
            .get(mark.line().wrapping_sub(1))
            .and_then(|&(line, ascii)| {
                if ascii {
                    line.as_bytes().get(mark.col()).map(|&b| b as char)
                } else if mark.col() < 1024 {
                    line.chars().nth(mark.col())
                } else {
                    None
                }
            })
            .is_some_and(|c| c == '{' || c == '[');
        let path = match self.role() {
            Role::Key => {
                // Complex key: map its insides under a path nothing asks for.
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    *key = None;
                }
                vec![Seg::Key("\0".into())]
            }
            Role::Value(path) => {
                if flow {
                    self.record_value(path.clone(), pos(mark));
                }
                path
            }
        };
        let pending = !flow;
        self.stack.push(if seq {
            Frame::Seq {
                path,
                next: 0,
                pending,
            }
        } else {
            Frame::Map {
                path,
                key: None,
                awaiting_key: true,
                pending,
            }
        });
    }

    /// Records where the node at `path` starts, and gives that position to
    /// the enclosing block collections still waiting for their first entry.
    fn record_value(&mut self, path: Vec<Seg>, at: Pos) {
        self.map.values.insert(path, at);
        self.resolve_pending(at);
    }

    fn resolve_pending(&mut self, at: Pos) {
        for frame in self.stack.iter_mut().rev() {
            let (path, pending) = frame.path_pending();
            if !*pending {
                break;
            }
            *pending = false;
            self.map.values.insert(path.clone(), at);
        }
    }
}

fn pos(mark: Marker) -> Pos {
    (mark.line(), mark.col() + 1)
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let opens = matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..));
        if self.too_deep > 0 || (opens && self.stack.len() >= MAX_DEPTH) {
            match ev {
                Event::SequenceStart(..) | Event::MappingStart(..) => self.too_deep += 1,
                Event::SequenceEnd | Event::MappingEnd => {
                    self.too_deep -= 1;
                    if self.too_deep == 0 {
                        self.finish_node();
                    }
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(text, style, _, _) => {
                match self.role() {
                    Role::Key => {
                        if let Some(Frame::Map { path, key, .. }) = self.stack.last_mut() {
                            let mut p = path.clone();
                            p.push(Seg::Key(text.clone()));
                            match self.map.keys.entry(p) {
                                Entry::Occupied(seen) => {
                                    let p = seen.key().clone();
                                    self.map.duplicates.entry(p).or_insert(pos(mark));
                                }
                                Entry::Vacant(slot) => {
                                    slot.insert(pos(mark));
                                }
                            }
                            *key = Some(text);
                        }
                        self.resolve_pending(pos(mark));
                    }
                    Role::Value(path) => {
                        self.record_value(path.clone(), pos(mark));
                        if style == yaml_rust2::scanner::TScalarStyle::Plain {
                            self.map.plain.insert(path, text);
                        }
                    }
                }
                self.finish_node();
            }
            Event::Alias(_) => {
                match self.role() {
                    Role::Value(path) => self.record_value(path, pos(mark)),
                    Role::Key => self.resolve_pending(pos(mark)),
                }
                self.finish_node();
            }
            Event::SequenceStart(..) => self.start_collection(mark, true),
            Event::MappingStart(..) => self.start_collection(mark, false),
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
                self.finish_node();
            }
            _ => {}
        }
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
        let m = SourceMap::build(text);
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
        assert_eq!(m.duplicate(&ypath!["stages", "b", "x"]), None);
        assert_eq!(m.plain_text(&ypath!["stages", "b", "y", 1]), None);
    }

    #[test]
    fn duplicate_keys() {
        let m = SourceMap::build("a: 1\nb: { c: 1, c: 2 }\na: 2\na: 3\n");
        assert_eq!(m.duplicate(&ypath!["a"]), Some((3, 1)));
        assert_eq!(m.key(&ypath!["a"]), Some((1, 1)));
        assert_eq!(m.duplicate(&ypath!["b", "c"]), Some((2, 12)));
    }

    #[test]
    fn deep_nesting_is_cut_off() {
        // yaml-rust2 itself stops at 255 open flow collections.
        let depth = 200;
        let text = format!("a: {}{}\nb: 1\n", "[".repeat(depth), "]".repeat(depth));
        let m = SourceMap::build(&text);
        assert_eq!(m.value(&ypath!["a"]), Some((1, 4)));
        assert_eq!(m.value(&ypath!["b"]), Some((2, 4)));
        let deep: Vec<Seg> = std::iter::once(Seg::from("a"))
            .chain((0..100).map(|_| Seg::Index(0)))
            .collect();
        assert_eq!(m.value(&deep), m.value(&deep[..MAX_DEPTH]));
    }

    #[test]
    fn broken_yaml_gives_a_partial_map() {
        let m = SourceMap::build("a: 1\nb: [\n");
        assert_eq!(m.value(&ypath!["a"]), Some((1, 4)));
    }
}
