//! Diagnostics: an error in a config file, located at `file:line:column`, naming the field,
//! what is wrong, and what is allowed.

use std::fmt;

use serde::Serialize;

use crate::yaml::Pos;

/// One problem found in a file of the config repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Path relative to the config repo root, with `/` separators.
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the offending field (`environments[2].windows[0]`), empty for the file.
    pub field: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<String>,
        pos: Option<Pos>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            field: field.into(),
            message: message.into(),
        }
    }

    /// `file:line:column` (or as much of it as is known).
    pub fn location(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file),
            (Some(l), None) => format!("{}:{l}", self.file),
            _ => self.file.clone(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.location(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.location(), self.field, self.message)
        }
    }
}

/// Turn a `yaml_serde` error into a diagnostic: keep its position, split off the field path
/// it reports, and for unknown fields suggest the nearest valid name.
pub fn from_serde(file: &str, err: &yaml_serde::Error) -> Diagnostic {
    let pos = err.location().map(|l| Pos {
        line: l.line(),
        column: l.column(),
        offset: l.index(),
    });
    let mut text = err.to_string();
    // yaml_serde appends " at line L column C"; the position is carried separately.
    if let Some(i) = text.rfind(" at line ") {
        text.truncate(i);
    }
    let (field, message) = match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && !path.is_empty() => {
            (path.to_string(), rest.to_string())
        }
        _ => (String::new(), text.clone()),
    };
    let message = improve_unknown_field(&message).unwrap_or(message);
    let message = improve_unknown_variant(&message).unwrap_or(message);
    Diagnostic::new(file, pos, field, message)
}

/// yaml_serde places errors raised while converting a value (an invalid duration, say) at the
/// enclosing mapping. When the message quotes the offending value, find that scalar below
/// the reported field and point at it instead, naming its key.
pub fn refine(mut d: Diagnostic, tree: &crate::yaml::Node) -> Diagnostic {
    let Some(quoted) = d.message.split('"').nth(1) else {
        return d;
    };
    let (base, ok) = tree.lookup(&d.field);
    if !ok {
        return d;
    }
    if let Some((path, pos)) = find_scalar(base, quoted, String::new()) {
        if !path.is_empty() {
            d.field = if d.field.is_empty() || path.starts_with('[') {
                format!("{}{path}", d.field)
            } else {
                format!("{}.{path}", d.field)
            };
        }
        d.line = Some(pos.line);
        d.column = Some(pos.column);
    }
    d
}

fn find_scalar(node: &crate::yaml::Node, value: &str, path: String) -> Option<(String, Pos)> {
    use crate::yaml::NodeKind;
    match &node.kind {
        NodeKind::Scalar { value: v, .. } if v == value => Some((path, node.pos)),
        NodeKind::Mapping { entries, .. } => entries.iter().find_map(|(k, v)| {
            let key = k.as_str().unwrap_or("?");
            let sub = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
            find_scalar(v, value, sub)
        }),
        NodeKind::Sequence { items, .. } => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_scalar(v, value, format!("{path}[{i}]"))),
        _ => None,
    }
}

fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

fn improve_unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, expected) = rest.split_once('`')?;
    let allowed = backticked(expected);
    Some(describe_unknown("field", name, &allowed))
}

fn improve_unknown_variant(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown variant `")?;
    let (name, expected) = rest.split_once('`')?;
    let allowed = backticked(expected);
    Some(describe_unknown("value", name, &allowed))
}

fn describe_unknown(what: &str, name: &str, allowed: &[&str]) -> String {
    let mut out = format!("unknown {what} `{name}`");
    if let Some(best) = suggest(name, allowed.iter().copied()) {
        out.push_str(&format!(" (did you mean `{best}`?)"));
    }
    if allowed.is_empty() {
        out.push_str("; nothing is allowed here");
    } else {
        out.push_str("; allowed: ");
        out.push_str(&allowed.join(", "));
    }
    out
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbouring letters as one edit (optimal string
/// alignment), since `soka` for `soak` is the typo people make.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_name_for_typos_only() {
        let names = ["image", "bless", "verify", "source", "pin"];
        assert_eq!(suggest("imag", names), Some("image"));
        assert_eq!(suggest("Bles", names), Some("bless"));
        assert_eq!(suggest("completely", names), None);
    }

    #[test]
    fn unknown_fields_name_the_allowed_ones_and_a_suggestion() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            image: String,
            bless: Option<String>,
        }
        let err = yaml_serde::from_str::<T>("image: x\nbles: y\n").unwrap_err();
        let d = from_serde("policies/pipeline.yaml", &err);
        assert_eq!(d.line, Some(2), "{d}");
        assert!(d.message.contains("unknown field `bles`"), "{d}");
        assert!(d.message.contains("did you mean `bless`?"), "{d}");
        assert!(d.message.contains("allowed: image, bless"), "{d}");
        assert!(
            d.to_string().starts_with("policies/pipeline.yaml:2:"),
            "{d}"
        );
    }
}
