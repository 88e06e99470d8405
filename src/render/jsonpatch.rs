//! JSON patches (RFC 6902) with the behaviour — and the error texts — of the library kustomize
//! applies them with (evanphx/json-patch, v4 series), which differs from the RFC in places:
//!
//! - the path's first segment is ignored (`a/b` acts as `/b`); `""` is refused except by
//!   `replace` and `test`, which act on the whole document;
//! - `add` needs the parent to exist; `replace` of a missing mapping key adds it; `remove`
//!   needs the key; `copy` from a missing mapping key copies `null`;
//! - array indexes are Go integers (`01`, `+1` are accepted), negative ones count from the
//!   end, `-` appends (only as the last segment of `add`, `move` and `copy`);
//! - `test` compares scalars by their JSON text: a patch written as JSON compares its own text
//!   (`1.0` is not `1`), a patch written as YAML compares Go's encoding of the value.
//!
//! Malformed operations are only reported when a patch is applied to something, as in
//! kustomize (a patch whose target selects nothing never fails).

use serde_json::Value;

/// One operation, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub op: Option<String>,
    pub path: Option<String>,
    pub from: Option<String>,
    pub value: Option<Value>,
}

/// A decoded patch.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    pub ops: Vec<Op>,
    /// Written as JSON text (`[...]`) rather than YAML: `test` then compares against the
    /// patch's own text of each scalar.
    pub raw_json: bool,
}

/// Decode operations from a JSON value (a list of `{op, path, from?, value?}`).
pub fn decode(v: &Value, raw_json: bool) -> Result<Patch, String> {
    let items = v.as_array().ok_or("a JSON patch is a list of operations")?;
    let ops = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let m = item.as_object().ok_or_else(|| {
                format!("operation {i} is not a mapping (json: cannot unmarshal into Go value of type jsonpatch.Operation)")
            })?;
            let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            Ok(Op {
                op: text("op"),
                path: text("path"),
                from: text("from"),
                value: m.get("value").filter(|v| !v.is_null()).cloned(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Patch { ops, raw_json })
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Go's `strconv.Atoi`.
fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

fn invalid_index(i: i64) -> String {
    format!("Unable to access invalid index: {i}: invalid index referenced")
}

/// `partialArray.get`: the position of an existing element.
fn array_pos(len: usize, key: &str) -> Result<usize, String> {
    let idx = atoi(key)?;
    let len = len as i64;
    let mut i = idx;
    if i < 0 {
        if i < -len {
            return Err(invalid_index(idx));
        }
        i += len;
    }
    if i >= len {
        return Err(invalid_index(i));
    }
    Ok(i as usize)
}

/// A container's child, `None` when missing or null (the library's nil node).
fn child<'a>(node: &'a mut Value, key: &str) -> Result<Option<&'a mut Value>, String> {
    Ok(match node {
        Value::Object(m) => m.get_mut(key).filter(|v| !v.is_null()),
        Value::Array(a) => {
            let i = array_pos(a.len(), key)?;
            a.get_mut(i).filter(|v| !v.is_null())
        }
        _ => None,
    })
}

/// `findObject`: the container holding the path's last segment, and that segment.
fn find<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let split: Vec<&str> = path.split('/').collect();
    if split.len() < 2 {
        return None;
    }
    let mut cur = doc;
    for part in &split[1..split.len() - 1] {
        let next = child(cur, &unescape(part)).ok()??;
        if !next.is_object() && !next.is_array() {
            return None;
        }
        cur = next;
    }
    Some((cur, unescape(split[split.len() - 1])))
}

fn con_get(con: &mut Value, key: &str) -> Result<Option<Value>, String> {
    Ok(child(con, key)?.map(|v| v.clone()))
}

fn con_add(con: &mut Value, key: &str, val: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(a) => {
            if key == "-" {
                a.push(val);
                return Ok(());
            }
            let idx = atoi(key)
                .map_err(|e| format!("value was not a proper array index: '{key}': {e}"))?;
            // Positions run over the array with the new element: -1 appends.
            let size = a.len() as i64 + 1;
            if idx >= size {
                return Err(invalid_index(idx));
            }
            let mut i = idx;
            if i < 0 {
                if i < -size {
                    return Err(invalid_index(idx));
                }
                i += size;
            }
            a.insert(i as usize, val);
            Ok(())
        }
        _ => Err("not a container".into()),
    }
}

fn con_remove(con: &mut Value, key: &str) -> Result<Value, String> {
    match con {
        Value::Object(m) => m
            .shift_remove(key)
            .ok_or_else(|| format!("Unable to remove nonexistent key: {key}: missing value")),
        Value::Array(a) => {
            let idx = atoi(key)?;
            let len = a.len() as i64;
            if idx >= len {
                return Err(invalid_index(idx));
            }
            let mut i = idx;
            if i < 0 {
                if i < -len {
                    return Err(invalid_index(idx));
                }
                i += len;
            }
            Ok(a.remove(i as usize))
        }
        _ => Err("not a container".into()),
    }
}

/// Go's `encoding/json` text of a scalar (kyaml marshals documents without HTML escaping).
fn go_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => {
                let a = f.abs();
                if a != 0.0 && !(1e-6..1e21).contains(&a) {
                    let s = format!("{f:e}");
                    match s.split_once('e') {
                        Some((m, e)) => {
                            let (sign, digits) = match e.strip_prefix('-') {
                                Some(d) => ('-', d),
                                None => ('+', e),
                            };
                            format!("{m}e{sign}{digits:0>2}")
                                .replace("e-0", "e-")
                                .to_string()
                        }
                        None => s,
                    }
                } else {
                    format!("{f}")
                }
            }
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The library's `lazyNode.equal`: structure compared recursively, scalars by JSON text.
fn equal(doc: &Value, patch: &Value, raw_json: bool) -> bool {
    match (doc, patch) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(k, v)| match b.get(k) {
                    None => false,
                    Some(ov) => match (v.is_null(), ov.is_null()) {
                        (true, true) => true,
                        (false, false) => equal(v, ov, raw_json),
                        _ => false,
                    },
                })
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equal(x, y, raw_json))
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        (d, p) => {
            let theirs = if raw_json {
                serde_json::to_string(p).unwrap_or_default()
            } else {
                go_scalar(p)
            };
            go_scalar(d) == theirs
        }
    }
}

fn need<'a>(field: &'a Option<String>, op: &str, what: &str) -> Result<&'a str, String> {
    field
        .as_deref()
        .ok_or_else(|| format!("{op} operation failed to decode {what}: missing value"))
}

/// Apply `patch` to `doc` in order.
pub fn apply(doc: &mut Value, patch: &Patch) -> Result<(), String> {
    for op in &patch.ops {
        let value = || op.value.clone().unwrap_or(Value::Null);
        match op.op.as_deref().unwrap_or("unknown") {
            "add" => {
                let path = need(&op.path, "add", "path")?;
                let (con, key) = find(doc, path).ok_or_else(|| {
                    format!("add operation does not apply: doc is missing path: \"{path}\": missing value")
                })?;
                con_add(con, &key, value())
                    .map_err(|e| format!("error in add for path: '{path}': {e}"))?;
            }
            "remove" => {
                let path = need(&op.path, "remove", "path")?;
                let (con, key) = find(doc, path).ok_or_else(|| {
                    format!("remove operation does not apply: doc is missing path: \"{path}\": missing value")
                })?;
                con_remove(con, &key)
                    .map_err(|e| format!("error in remove for path: '{path}': {e}"))?;
            }
            "replace" => {
                let path = need(&op.path, "replace", "path")?;
                if path.is_empty() {
                    let v = value();
                    if !v.is_object() && !v.is_array() {
                        return Err(
                            "replace operation value must be object or array: invalid operation"
                                .into(),
                        );
                    }
                    *doc = v;
                    continue;
                }
                let missing = || {
                    format!(
                        "replace operation does not apply: doc is missing path: {path}: missing value"
                    )
                };
                let (con, key) = find(doc, path).ok_or_else(missing)?;
                con_get(con, &key).map_err(|_| {
                    format!(
                        "replace operation does not apply: doc is missing key: {path}: missing value"
                    )
                })?;
                match con {
                    Value::Object(m) => {
                        m.insert(key, value());
                    }
                    Value::Array(a) => {
                        let i = array_pos(a.len(), &key)?;
                        a[i] = value();
                    }
                    _ => return Err(missing()),
                }
            }
            "move" => {
                let from = need(&op.from, "move", "from")?;
                let (con, key) = find(doc, from).ok_or_else(|| {
                    format!("move operation does not apply: doc is missing from path: {from}: missing value")
                })?;
                con_get(con, &key).map_err(|e| format!("error in move for path: '{key}': {e}"))?;
                let val = con_remove(con, &key)
                    .map_err(|e| format!("error in move for path: '{key}': {e}"))?;
                let path = need(&op.path, "move", "path")?;
                let (con, key) = find(doc, path).ok_or_else(|| {
                    format!("move operation does not apply: doc is missing destination path: {path}: missing value")
                })?;
                con_add(con, &key, val)
                    .map_err(|e| format!("error in move for path: '{path}': {e}"))?;
            }
            "copy" => {
                let from = need(&op.from, "copy", "from")?;
                let (con, key) = find(doc, from).ok_or_else(|| {
                    format!("copy operation does not apply: doc is missing from path: {from}: missing value")
                })?;
                let val = con_get(con, &key)
                    .map_err(|e| format!("error in copy for from: '{from}': {e}"))?
                    .unwrap_or(Value::Null);
                let path = need(&op.path, "copy", "path")?;
                let (con, key) = find(doc, path).ok_or_else(|| {
                    format!("copy operation does not apply: doc is missing destination path: {path}: missing value")
                })?;
                con_add(con, &key, val)
                    .map_err(|e| format!("error while adding value during copy: {e}"))?;
            }
            "test" => {
                let path = need(&op.path, "test", "path")?;
                let failed = || format!("testing value {path} failed: test failed");
                if path.is_empty() {
                    match &op.value {
                        Some(v) if equal(doc, v, patch.raw_json) => continue,
                        _ => return Err(failed()),
                    }
                }
                let (con, key) = find(doc, path).ok_or_else(|| {
                    format!("test operation does not apply: is missing path: {path}: missing value")
                })?;
                let actual = con_get(con, &key)
                    .map_err(|e| format!("error in test for path: '{path}': {e}"))?;
                let ok = match (&actual, &op.value) {
                    (None, None) => true,
                    (Some(a), Some(v)) => equal(a, v, patch.raw_json),
                    _ => false,
                };
                if !ok {
                    return Err(failed());
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value, ops: Value) -> Result<Value, String> {
        let mut doc = doc;
        apply(&mut doc, &decode(&ops, true)?)?;
        Ok(doc)
    }

    #[test]
    fn add_replace_remove_move_copy_test() {
        let doc = json!({"spec": {"replicas": 1, "list": ["a", "b"], "m": {"x~y/z": 1}}});
        let out = run(
            doc,
            json!([
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/spec/list/-", "value": "c"},
                {"op": "add", "path": "/spec/list/0", "value": "z"},
                {"op": "remove", "path": "/spec/m/x~0y~1z"},
                {"op": "copy", "from": "/spec/replicas", "path": "/spec/copied"},
                {"op": "move", "from": "/spec/copied", "path": "/spec/moved"},
                {"op": "test", "path": "/spec/moved", "value": 3}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"spec": {"replicas": 3, "list": ["z", "a", "b", "c"], "m": {}, "moved": 3}})
        );
    }

    #[test]
    fn errors_carry_the_librarys_text() {
        let doc = || json!({"a": [1, 2, 3], "n": null, "s": "x"});
        let err = |ops: Value| run(doc(), ops).unwrap_err();
        assert_eq!(
            err(json!([{"op": "add", "path": "/n/x", "value": 1}])),
            "add operation does not apply: doc is missing path: \"/n/x\": missing value"
        );
        assert_eq!(
            err(json!([{"op": "add", "path": "/a/4", "value": 1}])),
            "error in add for path: '/a/4': Unable to access invalid index: 4: invalid index referenced"
        );
        assert_eq!(
            err(json!([{"op": "remove", "path": "/zz"}])),
            "error in remove for path: '/zz': Unable to remove nonexistent key: zz: missing value"
        );
        assert_eq!(
            err(json!([{"op": "remove", "path": "/a/-"}])),
            "error in remove for path: '/a/-': strconv.Atoi: parsing \"-\": invalid syntax"
        );
        assert_eq!(
            err(json!([{"op": "replace", "path": "/a/3", "value": 1}])),
            "replace operation does not apply: doc is missing key: /a/3: missing value"
        );
        assert_eq!(
            err(json!([{"op": "frob", "path": "/a"}])),
            "Unexpected kind: frob"
        );
        assert_eq!(err(json!([{"path": "/a"}])), "Unexpected kind: unknown");
        assert_eq!(
            err(json!([{"op": "add", "value": 1}])),
            "add operation failed to decode path: missing value"
        );
    }

    #[test]
    fn go_integer_indexes_and_negative_positions() {
        let doc = || json!({"a": ["x", "y", "z"]});
        let ok = |ops: Value| run(doc(), ops).unwrap()["a"].clone();
        assert_eq!(
            ok(json!([{"op": "add", "path": "/a/-1", "value": "n"}])),
            json!(["x", "y", "z", "n"])
        );
        assert_eq!(
            ok(json!([{"op": "add", "path": "/a/-4", "value": "n"}])),
            json!(["n", "x", "y", "z"])
        );
        assert_eq!(
            ok(json!([{"op": "add", "path": "/a/+1", "value": "n"}])),
            json!(["x", "n", "y", "z"])
        );
        assert_eq!(
            ok(json!([{"op": "add", "path": "/a/01", "value": "n"}])),
            json!(["x", "n", "y", "z"])
        );
        assert_eq!(
            ok(json!([{"op": "remove", "path": "/a/-1"}])),
            json!(["x", "y"])
        );
        assert_eq!(
            ok(json!([{"op": "replace", "path": "/a/-1", "value": "n"}])),
            json!(["x", "y", "n"])
        );
        assert_eq!(
            ok(json!([{"op": "move", "from": "/a/0", "path": "/a/-"}])),
            json!(["y", "z", "x"])
        );
    }

    #[test]
    fn replace_adds_missing_keys_and_copy_of_a_missing_key_is_null() {
        let out = run(
            json!({"a": {}}),
            json!([
                {"op": "replace", "path": "/a/b", "value": 1},
                {"op": "copy", "from": "/a/nothing", "path": "/c"},
                {"op": "add", "path": "x/d", "value": 2}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": 1}, "c": null, "d": 2}));
    }

    #[test]
    fn test_compares_scalars_by_their_json_text() {
        let doc = json!({"n": 1, "s": "a<b", "m": {"x": [1, "y"]}});
        let t = |v: Value, raw_json: bool| {
            let p = decode(&json!([{"op": "test", "path": "/n", "value": v}]), raw_json).unwrap();
            apply(&mut doc.clone(), &p).is_ok()
        };
        assert!(t(json!(1), true));
        assert!(!t(json!(1.0), true));
        assert!(t(json!(1.0), false));
        let whole = decode(
            &json!([{"op": "test", "path": "/m", "value": {"x": [1, "y"]}},
                    {"op": "test", "path": "/s", "value": "a<b"},
                    {"op": "test", "path": "/missing"}]),
            true,
        )
        .unwrap();
        assert!(apply(&mut doc.clone(), &whole).is_ok());
        let missing = decode(
            &json!([{"op": "test", "path": "/missing", "value": 1}]),
            true,
        )
        .unwrap();
        assert_eq!(
            apply(&mut doc.clone(), &missing).unwrap_err(),
            "testing value /missing failed: test failed"
        );
    }
}
