//! Maps a field path (`worker.nodePools[0].minSize`) to where it stands in the YAML
//! text, so that every error can name its line and column.
//!
//! serde_yaml_ng gives typed values without positions, so the same text is also read
//! as a stream of parser events (yaml-rust2) and each key and value is recorded.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// A position in the text, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Option<Pos>,
    value: Pos,
}

/// Positions of every key and value of one YAML document.
#[derive(Debug, Default)]
pub struct LocationIndex {
    entries: HashMap<String, Entry>,
}

enum Frame {
    Map {
        path: String,
        /// The key just read, waiting for its value.
        pending: Option<(String, Pos)>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// Joins a parent path and a map key the way error messages print paths.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

impl LocationIndex {
    /// Builds the index. A text the event parser cannot read gives an empty index:
    /// the caller still reports the parse error from serde, with its own position.
    pub fn build(text: &str) -> LocationIndex {
        let mut index = LocationIndex::default();
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0usize;
        while let Ok((event, mark)) = parser.next_token() {
            let pos = Pos::from(mark);
            match event {
                Event::StreamEnd => break,
                Event::DocumentStart => {
                    documents += 1;
                    if documents > 1 {
                        break;
                    }
                }
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map { pending, .. }) = stack.last_mut()
                        && pending.is_none()
                    {
                        *pending = Some((value, pos));
                        continue;
                    }
                    index.node_at(&mut stack, pos);
                }
                Event::Alias(_) => {
                    index.node_at(&mut stack, pos);
                }
                Event::MappingStart(..) => {
                    let path = index.node_at(&mut stack, pos);
                    stack.push(Frame::Map {
                        path,
                        pending: None,
                    });
                }
                Event::SequenceStart(..) => {
                    let path = index.node_at(&mut stack, pos);
                    stack.push(Frame::Seq { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        index
    }

    /// Records a value node starting at `pos` under the current frame; returns its path.
    fn node_at(&mut self, stack: &mut [Frame], pos: Pos) -> String {
        let (path, key) = match stack.last_mut() {
            None => (String::new(), None),
            Some(Frame::Map { path, pending }) => match pending.take() {
                Some((k, kpos)) => (join_key(path, &k), Some(kpos)),
                // A complex (non-scalar) key: not addressable by a field path.
                None => (join_key(path, "?"), None),
            },
            Some(Frame::Seq { path, next }) => {
                let p = join_index(path, *next);
                *next += 1;
                (p, None)
            }
        };
        self.entries
            .entry(path.clone())
            .or_insert(Entry { key, value: pos });
        path
    }

    /// Where the value at `path` starts; for a path absent from the text, the nearest
    /// ancestor that is present.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.nearest(path).map(|e| e.value)
    }

    /// Where the key of `path` stands (falls back to its value, then its ancestors).
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.nearest(path).map(|e| e.key.unwrap_or(e.value))
    }

    fn nearest(&self, path: &str) -> Option<&Entry> {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.get(p) {
                return Some(e);
            }
            if p.is_empty() {
                return None;
            }
            p = parent_path(p);
        }
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → ``.
pub fn parent_path(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "a: 1\nb:\n  c: x\n  d:\n    - name: p\n      size: 3\n    - name: q\n";

    #[test]
    fn positions_are_one_based() {
        let idx = LocationIndex::build(DOC);
        assert_eq!(idx.value("a"), Some(Pos { line: 1, column: 4 }));
        assert_eq!(idx.key("b.c"), Some(Pos { line: 3, column: 3 }));
        assert_eq!(
            idx.value("b.d[0].size"),
            Some(Pos {
                line: 6,
                column: 13
            })
        );
        assert_eq!(idx.key("b.d[1].name"), Some(Pos { line: 7, column: 7 }));
    }

    #[test]
    fn missing_paths_fall_back_to_ancestors() {
        let idx = LocationIndex::build(DOC);
        assert_eq!(idx.key("b.d[1].size"), idx.value("b.d[1]"));
        assert_eq!(parent_path("a.b[2].c"), "a.b[2]");
        assert_eq!(parent_path("a.b[2]"), "a.b");
        assert_eq!(parent_path("a"), "");
    }
}
