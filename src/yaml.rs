//! YAML with positions: a small tree of nodes that remembers where each node starts and, for
//! scalars, the exact byte span of its source text. `config` uses it to point diagnostics at
//! `file:line:column`; `gitrepo::edit` uses it to rewrite one scalar without touching the
//! rest of a file (comments, quoting, key order, blank lines survive).
//!
//! Values are *read* with `yaml_serde` (the Kubernetes-compatible YAML semantics live there);
//! this tree is only for locating things.

use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a source text: 1-based line and column, 0-based byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

/// A parsed YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar {
        value: String,
        style: Style,
        /// Byte range of the scalar's source text, quotes included. `None` for block
        /// scalars and multi-line flow scalars, which the editor does not rewrite.
        span: Option<(usize, usize)>,
    },
    Mapping {
        entries: Vec<(Node, Node)>,
        flow: bool,
    },
    Sequence {
        items: Vec<Node>,
        flow: bool,
    },
    Alias,
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// The scalar's value, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The value under `key`, if this is a mapping with that key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node under `key`.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            NodeKind::Mapping { entries, .. } => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The items of a sequence (empty for anything else).
    pub fn items(&self) -> &[Node] {
        match &self.kind {
            NodeKind::Sequence { items, .. } => items,
            _ => &[],
        }
    }

    /// The entries of a mapping (empty for anything else).
    pub fn entries(&self) -> &[(Node, Node)] {
        match &self.kind {
            NodeKind::Mapping { entries, .. } => entries,
            _ => &[],
        }
    }

    /// Follow a dotted path with `[i]` indexes, e.g. `environments[2].windows[0]`.
    /// Returns the deepest node reached and whether the whole path resolved.
    pub fn lookup(&self, path: &str) -> (&Node, bool) {
        let mut node = self;
        for segment in split_path(path) {
            let next = match segment {
                Segment::Key(k) => node.get(k),
                Segment::Index(i) => node.items().get(i),
            };
            match next {
                Some(n) => node = n,
                None => return (node, false),
            }
        }
        (node, true)
    }

    /// The position of the *key* of the last path segment when it is a mapping key (useful
    /// for "unknown field" diagnostics), else the node's own position.
    pub fn key_pos(&self, path: &str) -> Option<Pos> {
        let (parent_path, last) = match path.rfind('.') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        };
        let (parent, ok) = self.lookup(parent_path);
        if !ok {
            return None;
        }
        let key = last.split('[').next().unwrap_or(last);
        parent.entry(key).map(|(k, _)| k.pos)
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Segment::Key(&rest[..i]));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(n) = stripped[..end].parse() {
                    out.push(Segment::Index(n));
                }
                rest = stripped.get(end + 1..).unwrap_or("");
            }
        } else {
            out.push(Segment::Key(rest));
        }
    }
    out
}

/// Parse every document of `source`. An empty stream yields no documents.
pub fn parse_documents(source: &str) -> Result<Vec<Node>, SyntaxError> {
    let offsets = CharOffsets::new(source);
    let mut builder = Builder {
        source,
        offsets: &offsets,
        stack: Vec::new(),
        docs: Vec::new(),
    };
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        pos: offsets.pos(e.marker()),
        message: e.info().to_string(),
    })?;
    Ok(builder.docs)
}

/// Parse a single-document source. An empty file is an empty mapping at 1:1.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let mut docs = parse_documents(source)?;
    if docs.len() > 1 {
        return Err(SyntaxError {
            pos: docs[1].pos,
            message: "expected a single YAML document, found several".into(),
        });
    }
    Ok(docs.pop().unwrap_or(Node {
        pos: Pos {
            line: 1,
            column: 1,
            offset: 0,
        },
        kind: NodeKind::Mapping {
            entries: Vec::new(),
            flow: false,
        },
    }))
}

/// Maps yaml-rust2's char indexes to byte offsets.
struct CharOffsets {
    /// Byte offset of each char index, plus one past the end. Empty when the source is ASCII.
    table: Vec<usize>,
}

impl CharOffsets {
    fn new(source: &str) -> Self {
        if source.is_ascii() {
            return Self { table: Vec::new() };
        }
        let mut table: Vec<usize> = source.char_indices().map(|(i, _)| i).collect();
        table.push(source.len());
        Self { table }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.table.is_empty() {
            char_index
        } else {
            self.table[char_index.min(self.table.len() - 1)]
        }
    }

    fn pos(&self, m: &Marker) -> Pos {
        Pos {
            line: m.line(),
            column: m.col() + 1,
            offset: self.byte(m.index()),
        }
    }
}

enum Open {
    Mapping {
        pos: Pos,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        flow: bool,
    },
    Sequence {
        pos: Pos,
        items: Vec<Node>,
        flow: bool,
    },
}

struct Builder<'a> {
    source: &'a str,
    offsets: &'a CharOffsets,
    stack: Vec<Open>,
    docs: Vec<Node>,
}

impl Builder<'_> {
    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Open::Sequence { items, .. }) => items.push(node),
            Some(Open::Mapping {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }

    fn is_flow(&self, pos: Pos) -> bool {
        matches!(
            self.source.as_bytes().get(pos.offset),
            Some(b'{') | Some(b'[')
        )
    }

    fn scalar_span(&self, pos: Pos, value: &str, style: Style) -> Option<(usize, usize)> {
        let bytes = self.source.as_bytes();
        let start = pos.offset;
        let end = match style {
            Style::Plain => {
                let end = start + value.len();
                if self.source.get(start..end) != Some(value) {
                    return None; // multi-line plain scalar: folded, not editable in place
                }
                end
            }
            Style::SingleQuoted => {
                let mut i = start + 1;
                loop {
                    match bytes.get(i)? {
                        b'\n' => return None,
                        b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => break i + 1,
                        _ => i += 1,
                    }
                }
            }
            Style::DoubleQuoted => {
                let mut i = start + 1;
                loop {
                    match bytes.get(i)? {
                        b'\n' => return None,
                        b'\\' => i += 2,
                        b'"' => break i + 1,
                        _ => i += 1,
                    }
                }
            }
            Style::Literal | Style::Folded => return None,
        };
        Some((start, end))
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = self.offsets.pos(&mark);
        match ev {
            Event::Scalar(value, style, _, _) => {
                let style = match style {
                    TScalarStyle::SingleQuoted => Style::SingleQuoted,
                    TScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    TScalarStyle::Literal => Style::Literal,
                    TScalarStyle::Folded => Style::Folded,
                    _ => Style::Plain,
                };
                let span = self.scalar_span(pos, &value, style);
                self.push_node(Node {
                    pos,
                    kind: NodeKind::Scalar { value, style, span },
                });
            }
            Event::Alias(_) => self.push_node(Node {
                pos,
                kind: NodeKind::Alias,
            }),
            Event::MappingStart(..) => {
                let flow = self.is_flow(pos);
                self.stack.push(Open::Mapping {
                    pos,
                    entries: Vec::new(),
                    pending_key: None,
                    flow,
                })
            }
            Event::SequenceStart(..) => {
                let flow = self.is_flow(pos);
                self.stack.push(Open::Sequence {
                    pos,
                    items: Vec::new(),
                    flow,
                })
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Mapping {
                        pos, entries, flow, ..
                    }) => Node {
                        pos,
                        kind: NodeKind::Mapping { entries, flow },
                    },
                    Some(Open::Sequence { pos, items, flow }) => Node {
                        pos,
                        kind: NodeKind::Sequence { items, flow },
                    },
                    None => return,
                };
                self.push_node(node);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# comment\napps:\n  web:\n    image: \"reg/web\"\n    bless: { semver: '>=1.0.0' }\nenvs:\n  - name: dev\n  - name: prod\n";

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let root = parse(DOC).unwrap();
        let (image, ok) = root.lookup("apps.web.image");
        assert!(ok);
        assert_eq!(image.as_str(), Some("reg/web"));
        assert_eq!((image.pos.line, image.pos.column), (4, 12));
        let (prod, ok) = root.lookup("envs[1].name");
        assert!(ok);
        assert_eq!((prod.pos.line, prod.pos.column), (8, 11));
        assert_eq!(
            root.key_pos("apps.web.bless").map(|p| (p.line, p.column)),
            Some((5, 5))
        );
    }

    #[test]
    fn scalar_spans_cover_quotes_exactly() {
        let root = parse(DOC).unwrap();
        for (path, text) in [
            ("apps.web.image", "\"reg/web\""),
            ("apps.web.bless.semver", "'>=1.0.0'"),
            ("envs[0].name", "dev"),
        ] {
            let (node, ok) = root.lookup(path);
            assert!(ok, "{path}");
            let NodeKind::Scalar {
                span: Some((s, e)), ..
            } = node.kind
            else {
                panic!("{path} has no span")
            };
            assert_eq!(&DOC[s..e], text);
        }
    }

    #[test]
    fn flow_collections_are_marked_as_flow() {
        let root = parse(DOC).unwrap();
        assert!(matches!(
            root.lookup("apps.web.bless").0.kind,
            NodeKind::Mapping { flow: true, .. }
        ));
        assert!(matches!(
            root.lookup("apps.web").0.kind,
            NodeKind::Mapping { flow: false, .. }
        ));
    }

    #[test]
    fn byte_offsets_are_right_after_multibyte_characters() {
        let src = "a: \"héllo wörld\"\nb: x\n";
        let root = parse(src).unwrap();
        let b = root.get("b").unwrap();
        let NodeKind::Scalar {
            span: Some((s, e)), ..
        } = b.kind
        else {
            panic!()
        };
        assert_eq!(&src[s..e], "x");
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err}");
    }

    #[test]
    fn multi_line_plain_scalars_have_no_span() {
        let root = parse("a: one\n  two\nb: x\n").unwrap();
        assert!(matches!(
            root.get("a").unwrap().kind,
            NodeKind::Scalar { span: None, .. }
        ));
    }
}
