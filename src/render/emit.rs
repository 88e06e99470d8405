//! Writing JSON values as YAML exactly the way `kubectl kustomize` prints them.
//!
//! kustomize turns each resource into JSON and back into YAML with `sigs.k8s.io/yaml`, whose
//! encoder is go-yaml v2 (a port of libyaml's emitter). So the output has sorted keys, two-space
//! indentation, sequences not indented under their key, strings quoted only when they would
//! otherwise read back as something else (YAML 1.1 rules: `"yes"`, `"0644"`, `"y"`), single
//! quotes where a plain scalar is not allowed, literal blocks for multi-line strings, and long
//! lines folded at spaces past column 80. This module reproduces that emitter for the subset of
//! events a JSON document produces.

use serde_json::{Map, Number, Value};

use super::value::{Dialect, parse_timestamp, resolve_scalar};

const BEST_INDENT: usize = 2;
const BEST_WIDTH: usize = 80;

/// Append one YAML document (no `---` line) for `value` to `out`.
pub fn write_document(out: &mut String, value: &Value) {
    let mut e = Emitter {
        out,
        column: 0,
        whitespace: true,
        indention: true,
    };
    match value {
        Value::Object(m) if !m.is_empty() => e.block_map(m, 0),
        Value::Array(a) if !a.is_empty() => e.block_seq(a, 0),
        other => e.node(other, 0, Parent::Root),
    }
    // Document end: libyaml's write_indent at indent 0 (no blank line after a literal block).
    if !e.indention || e.column > 0 || !e.whitespace {
        e.put_break();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    Root,
    MapValue,
    SeqItem,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

struct Emitter<'a> {
    out: &'a mut String,
    column: usize,
    whitespace: bool,
    indention: bool,
}

/// Keys in the order go-yaml v2 writes a map: a "natural" order in which runs of digits
/// compare as numbers and non-letters sort before letters (`a9` < `a10`, `a_b` < `aB`).
fn sorted_entries(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| natural_cmp(a.0, b.0));
    entries
}

/// go-yaml v2's `keyList.Less` for two strings.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let less = |x: bool| if x { Ordering::Less } else { Ordering::Greater };
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return less(bl);
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return less(an < bn);
        }
        if ai != bi {
            return less(ai < bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

impl Emitter<'_> {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write_indent(&mut self, indent: usize) {
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(
        &mut self,
        indicator: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in indicator.chars() {
            self.put(c);
        }
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn block_map(&mut self, m: &Map<String, Value>, indent: usize) {
        for (k, v) in sorted_entries(m) {
            self.write_indent(indent);
            // libyaml writes a key longer than 128 bytes, or spanning lines, as `? key`.
            let simple = k.len() <= 128 && !k.chars().any(is_break);
            if simple {
                self.scalar(k, true, indent + BEST_INDENT, true);
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, true);
                self.scalar(k, true, indent + BEST_INDENT, false);
                self.write_indent(indent);
                self.write_indicator(":", true, false, true);
            }
            self.node(v, indent, Parent::MapValue);
        }
    }

    fn block_seq(&mut self, items: &[Value], indent: usize) {
        for item in items {
            self.write_indent(indent);
            self.write_indicator("-", true, false, true);
            self.node(item, indent, Parent::SeqItem);
        }
    }

    /// Emit a node whose parent structure sits at `indent`.
    fn node(&mut self, v: &Value, indent: usize, parent: Parent) {
        let child = if parent == Parent::Root {
            0
        } else {
            indent + BEST_INDENT
        };
        match v {
            Value::Object(m) if m.is_empty() => {
                self.write_indicator("{", true, true, false);
                self.write_indicator("}", false, false, false);
            }
            Value::Array(a) if a.is_empty() => {
                self.write_indicator("[", true, true, false);
                self.write_indicator("]", false, false, false);
            }
            Value::Object(m) => self.block_map(m, child),
            Value::Array(a) => {
                // A sequence that is a mapping value is not indented (go-yaml v2 style).
                let seq_indent = if parent == Parent::MapValue {
                    indent
                } else {
                    child
                };
                self.block_seq(a, seq_indent)
            }
            Value::String(s) => self.scalar(s, true, child, false),
            Value::Null => self.scalar("null", false, child, false),
            Value::Bool(b) => self.scalar(if *b { "true" } else { "false" }, false, child, false),
            Value::Number(n) => {
                let text = format_number(n);
                self.scalar(&text, false, child, false)
            }
        }
    }

    /// Write a scalar. `is_string` decides quoting the way go-yaml v2 encodes a Go string;
    /// numbers, booleans and null are always plain. `indent` is where continuation lines go.
    fn scalar(&mut self, s: &str, is_string: bool, indent: usize, simple_key: bool) {
        let requested = if !is_string {
            Style::Plain
        } else if s.contains('\n') {
            Style::Literal
        } else if reads_back_as_string(s) {
            Style::Plain
        } else {
            Style::Double
        };
        let a = analyze(s);
        let mut style = requested;
        if simple_key && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && simple_key)) {
            style = Style::Single;
        }
        if style == Style::Single && !a.single_quoted_allowed {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block_allowed || simple_key) {
            style = Style::Double;
        }
        let allow_breaks = !simple_key;
        match style {
            Style::Plain => self.write_plain(s, allow_breaks, indent),
            Style::Single => self.write_single(s, allow_breaks, indent),
            Style::Double => self.write_double(s, allow_breaks, indent),
            Style::Literal => self.write_literal(s, indent),
        }
    }

    fn write_plain(&mut self, s: &str, allow_breaks: bool, indent: usize) {
        if !self.whitespace {
            self.put(' ');
        }
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && chars.get(i + 1) != Some(&' ')
                {
                    self.write_indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                self.indention = false;
                spaces = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single(&mut self, s: &str, allow_breaks: bool, indent: usize) {
        self.write_indicator("'", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut breaks = false;
        let n = chars.len();
        for (i, &c) in chars.iter().enumerate() {
            if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                if c == '\n' {
                    self.put_break();
                } else {
                    self.out.push(c);
                    self.column = 0;
                }
                self.indention = true;
                breaks = true;
            } else if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < n
                    && chars[i + 1] != ' '
                {
                    self.write_indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                if breaks {
                    self.write_indent(indent);
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double(&mut self, s: &str, allow_breaks: bool, indent: usize) {
        self.write_indicator("\"", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        let mut spaces = false;
        // go-yaml v2 tests for a byte-order mark at the start of the value, not at each
        // character, so a value that starts with one has every character escaped.
        let bom = s.starts_with('\u{FEFF}');
        for (i, &c) in chars.iter().enumerate() {
            if bom || !is_printable(c) || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\u{7}' => self.put('a'),
                    '\u{8}' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\u{b}' => self.put('v'),
                    '\u{c}' => self.put('f'),
                    '\r' => self.put('r'),
                    '\u{1b}' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{a0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    _ => {
                        let v = c as u32;
                        let (letter, width) = if v <= 0xFF {
                            ('x', 2)
                        } else if v <= 0xFFFF {
                            ('u', 4)
                        } else {
                            ('U', 8)
                        };
                        self.put(letter);
                        for k in (0..width).rev() {
                            let digit = (v >> (k * 4)) & 0xF;
                            self.put(
                                char::from_digit(digit, 16)
                                    .unwrap_or('0')
                                    .to_ascii_uppercase(),
                            );
                        }
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i > 0 && i + 1 < n {
                    self.write_indent(indent);
                    if chars[i + 1] == ' ' {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_literal(&mut self, s: &str, indent: usize) {
        self.write_indicator("|", true, false, false);
        let first = s.chars().next();
        if matches!(first, Some(c) if c == ' ' || is_break(c)) {
            let hint = char::from_digit(BEST_INDENT as u32, 10).unwrap_or('2');
            self.write_indicator(&hint.to_string(), false, false, false);
        }
        let mut rev = s.chars().rev();
        let chomp = match (rev.next(), rev.next()) {
            (None, _) => Some("-"),
            (Some(last), _) if !is_break(last) => Some("-"),
            (Some(_), None) => Some("+"),
            (Some(_), Some(prev)) if is_break(prev) => Some("+"),
            _ => None,
        };
        if let Some(chomp) = chomp {
            self.write_indicator(chomp, false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in s.chars() {
            if is_break(c) {
                if c == '\n' {
                    self.put_break();
                } else {
                    self.out.push(c);
                    self.column = 0;
                }
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent(indent);
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank_or_end(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => c == ' ' || c == '\t' || is_break(c),
    }
}

/// libyaml's printable set, as go-yaml checks it byte-wise.
fn is_printable(c: char) -> bool {
    let v = c as u32;
    v == 0x0A
        || (0x20..=0x7E).contains(&v)
        || (0xA0..=0xD7FF).contains(&v)
        || ((0xE000..=0xFFFD).contains(&v) && v != 0xFEFF)
}

/// libyaml's `yaml_emitter_analyze_scalar` for the block context.
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let mut line_breaks = false;
    let mut special = false;
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let n = chars.len();
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = is_blank_or_end(chars.get(i + 1).copied());
        if i == 0 {
            if matches!(
                c,
                '#' | ','
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '&'
                    | '*'
                    | '!'
                    | '|'
                    | '>'
                    | '\''
                    | '"'
                    | '%'
                    | '@'
                    | '`'
            ) {
                block_indicators = true;
            }
            if (c == '?' || c == ':') && followed_by_whitespace {
                block_indicators = true;
            }
            if c == '-' && followed_by_whitespace {
                block_indicators = true;
            }
        } else {
            if c == ':' && followed_by_whitespace {
                block_indicators = true;
            }
            if c == '#' && preceded_by_whitespace {
                block_indicators = true;
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == n {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            if i == 0 {
                leading_break = true;
            }
            if i + 1 == n {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = c == ' ' || c == '\t' || is_break(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// Would go-yaml v2 read this text, written plain, back as the same string?
fn reads_back_as_string(s: &str) -> bool {
    if is_base60_float(s) {
        return false;
    }
    if s.starts_with(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '+', '-'])
        && parse_timestamp(s).is_some()
    {
        return false;
    }
    matches!(
        resolve_scalar(s, true, None, Dialect::Yaml11),
        Ok(Value::String(_))
    )
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        let start = i;
        if i < b.len()
            && (b'0'..=b'5').contains(&b[i])
            && i + 1 < b.len()
            && b[i + 1].is_ascii_digit()
        {
            i += 2;
        } else if i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// A number as go-yaml v2 prints it: integers in decimal, floats with Go's `%g` (shortest
/// representation, exponent form below 1e-4 and from 1e6 on).
pub fn format_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    go_format_g(n.as_f64().unwrap_or(0.0))
}

fn go_format_g(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:e}", f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> String {
        let mut s = String::new();
        write_document(&mut s, &v);
        s
    }

    #[test]
    fn keys_are_sorted_and_sequences_sit_under_their_key() {
        let out = doc(
            json!({"kind": "X", "apiVersion": "v1", "spec": {"list": [{"b": 1, "a": 2}, "s"], "e": {}, "f": []}}),
        );
        assert_eq!(
            out,
            "apiVersion: v1\nkind: X\nspec:\n  e: {}\n  f: []\n  list:\n  - a: 2\n    b: 1\n  - s\n"
        );
    }

    #[test]
    fn strings_that_read_back_as_other_types_are_quoted() {
        let out = doc(
            json!({"a": "yes", "b": "0644", "c": "1.10", "d": "", "n": "x", "e": "~", "f": "2001-12-14", "g": "1:20"}),
        );
        assert_eq!(
            out,
            "a: \"yes\"\nb: \"0644\"\nc: \"1.10\"\nd: \"\"\ne: \"~\"\nf: \"2001-12-14\"\ng: \"1:20\"\n\"n\": x\n"
        );
    }

    #[test]
    fn indicators_force_single_quotes_and_controls_force_double_quotes() {
        let out = doc(
            json!({"a": "- x", "b": "x: y", "c": " lead", "d": "#c", "e": "a #b", "f": "a'b", "g": "a\tb", "h": "@at", "i": "a#b"}),
        );
        assert_eq!(
            out,
            "a: '- x'\nb: 'x: y'\nc: ' lead'\nd: '#c'\ne: 'a #b'\nf: a'b\ng: \"a\\tb\"\nh: '@at'\ni: a#b\n"
        );
    }

    #[test]
    fn multi_line_strings_become_literal_blocks_with_chomping() {
        let out =
            doc(json!({"a": "x\ny\n", "b": "x\ny", "c": "x\n\n", "d": "\nx\n", "e": "x \ny\n"}));
        assert_eq!(
            out,
            "a: |\n  x\n  y\nb: |-\n  x\n  y\nc: |+\n  x\n\nd: |2\n\n  x\ne: \"x \\ny\\n\"\n"
        );
    }

    #[test]
    fn long_plain_strings_fold_after_column_80() {
        let long = "aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll mmmm nnnn oooo pppp qqqq rrrr ssss tttt";
        let out = doc(json!({"m": {"long": long}, "l": [long]}));
        assert_eq!(
            out,
            "l:\n- aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll mmmm nnnn oooo pppp\n  qqqq rrrr ssss tttt\nm:\n  long: aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll mmmm nnnn oooo\n    pppp qqqq rrrr ssss tttt\n"
        );
    }

    #[test]
    fn floats_print_like_go_percent_g() {
        assert_eq!(go_format_g(1234567.5), "1.2345675e+06");
        assert_eq!(go_format_g(123456.5), "123456.5");
        assert_eq!(go_format_g(0.00001), "1e-05");
        assert_eq!(go_format_g(0.0001), "0.0001");
        assert_eq!(go_format_g(1e20), "1e+20");
        assert_eq!(go_format_g(1.5e300), "1.5e+300");
        assert_eq!(go_format_g(1.1), "1.1");
        assert_eq!(go_format_g(-2.5), "-2.5");
    }

    #[test]
    fn keys_sort_in_go_yaml_v2_natural_order() {
        let mut keys = vec![
            "file10", "file2", "a_b", "aB", "~t", "10", "9", "x01", "x1", "é", "Z",
        ];
        keys.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            keys,
            [
                "~t", "9", "10", "Z", "a_b", "aB", "file2", "file10", "x1", "x01", "é"
            ]
        );
    }

    #[test]
    fn a_leading_byte_order_mark_escapes_the_whole_string() {
        assert_eq!(
            doc(json!({"b": "\u{feff}ab"})),
            "b: \"\\uFEFF\\x61\\x62\"\n"
        );
    }

    #[test]
    fn long_and_multi_line_keys_use_the_complex_form() {
        let long = "k".repeat(130);
        assert_eq!(doc(json!({long.clone(): 1})), format!("? {long}\n: 1\n"));
        assert_eq!(doc(json!({"a\rb": "v"})), "? \"a\\rb\"\n: v\n");
    }

    #[test]
    fn non_bmp_characters_are_escaped() {
        assert_eq!(
            doc(json!({"e": "😀", "s": "é"})),
            "e: \"\\U0001F600\"\ns: é\n"
        );
    }
}
