//! JSON patches (RFC 6902) with the behaviour of the library kustomize uses
//! (evanphx/json-patch): `add` needs the parent to exist, `replace` and `remove` need the
//! target to exist, `-` appends to an array, negative indexes count from the end.

use serde_json::Value;

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub op: String,
    pub path: String,
    pub from: Option<String>,
    pub value: Option<Value>,
}

/// Decode operations from a JSON value (a list of `{op, path, from?, value?}`).
pub fn decode(v: &Value) -> Result<Vec<Op>, String> {
    let items = v.as_array().ok_or("a JSON patch is a list of operations")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let m = item
                .as_object()
                .ok_or_else(|| format!("operation {i} is not a mapping"))?;
            let text = |k: &str| -> Result<Option<String>, String> {
                match m.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(format!("operation {i}: `{k}` must be a string")),
                }
            };
            let op = text("op")?.ok_or_else(|| format!("operation {i} has no `op`"))?;
            if !matches!(
                op.as_str(),
                "add" | "remove" | "replace" | "move" | "copy" | "test"
            ) {
                return Err(format!("operation {i}: unknown op {op:?}"));
            }
            let path =
                text("path")?.ok_or_else(|| format!("operation {i} ({op}) has no `path`"))?;
            Ok(Op {
                op,
                path,
                from: text("from")?,
                value: m.get("value").cloned(),
            })
        })
        .collect()
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("path {path:?} must start with /"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if token == "-" && allow_end {
        return Ok(len);
    }
    let i: i64 = token
        .parse()
        .map_err(|_| format!("{token:?} is not an array index"))?;
    let i = if i < 0 { i + len as i64 } else { i };
    let max = if allow_end {
        len as i64
    } else {
        len as i64 - 1
    };
    if i < 0 || i > max {
        return Err(format!("index {token} is out of bounds (length {len})"));
    }
    Ok(i as usize)
}

/// The parent container of `tokens` and the last token.
fn parent<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<(&'a mut Value, String), String> {
    let (last, init) = tokens
        .split_last()
        .ok_or_else(|| format!("path {path:?} has no parent"))?;
    let mut cur = doc;
    for t in init {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => {
                let len = a.len();
                let i = index(t, len, false)?;
                a.get_mut(i)
            }
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path {path:?}"))?;
    }
    Ok((cur, last.clone()))
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = doc;
    for t in split(path)? {
        cur = match cur {
            Value::Object(m) => m.get(&t),
            Value::Array(a) => a.get(index(&t, a.len(), false)?),
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path {path:?}"))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let tokens = split(path)?;
    if tokens.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (p, last) = parent(doc, &tokens, path)?;
    match p {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = index(&last, a.len(), true)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path {path:?}"
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let tokens = split(path)?;
    let (p, last) = parent(doc, &tokens, path)?;
    match p {
        Value::Object(m) => m
            .shift_remove(&last)
            .ok_or_else(|| format!("remove operation does not apply: doc is missing key {path:?}")),
        Value::Array(a) => {
            let i = index(&last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!(
            "remove operation does not apply: doc is missing path {path:?}"
        )),
    }
}

fn replace(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let tokens = split(path)?;
    if tokens.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (p, last) = parent(doc, &tokens, path)?;
    match p {
        Value::Object(m) => match m.get_mut(&last) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => Err(format!(
                "replace operation does not apply: doc is missing key {path:?}"
            )),
        },
        Value::Array(a) => {
            let i = index(&last, a.len(), false)?;
            a[i] = value;
            Ok(())
        }
        _ => Err(format!(
            "replace operation does not apply: doc is missing path {path:?}"
        )),
    }
}

/// Apply `ops` to `doc` in order.
pub fn apply(doc: &mut Value, ops: &[Op]) -> Result<(), String> {
    for op in ops {
        let value = || op.value.clone().unwrap_or(Value::Null);
        match op.op.as_str() {
            "add" => add(doc, &op.path, value())?,
            "remove" => {
                remove(doc, &op.path)?;
            }
            "replace" => replace(doc, &op.path, value())?,
            "move" => {
                let from = op.from.as_deref().ok_or("move operation needs `from`")?;
                let v = remove(doc, from)?;
                add(doc, &op.path, v)?;
            }
            "copy" => {
                let from = op.from.as_deref().ok_or("copy operation needs `from`")?;
                let v = get(doc, from)?.clone();
                add(doc, &op.path, v)?;
            }
            "test" => {
                let actual = get(doc, &op.path)?;
                if *actual != value() {
                    return Err(format!(
                        "test operation failed: {:?} is not {}",
                        op.path,
                        value()
                    ));
                }
            }
            other => return Err(format!("unknown op {other:?}")),
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
        apply(&mut doc, &decode(&ops)?)?;
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
    fn missing_targets_are_errors() {
        assert!(
            run(
                json!({}),
                json!([{"op": "replace", "path": "/a", "value": 1}])
            )
            .is_err()
        );
        assert!(
            run(
                json!({}),
                json!([{"op": "add", "path": "/a/b", "value": 1}])
            )
            .is_err()
        );
        assert!(
            run(
                json!({"a": [1]}),
                json!([{"op": "add", "path": "/a/5", "value": 1}])
            )
            .is_err()
        );
        assert!(
            run(
                json!({"a": 1}),
                json!([{"op": "test", "path": "/a", "value": 2}])
            )
            .is_err()
        );
        assert!(decode(&json!([{"op": "frob", "path": "/a"}])).is_err());
    }

    #[test]
    fn negative_indexes_count_from_the_end() {
        let out = run(
            json!({"a": [1, 2, 3]}),
            json!([{"op": "remove", "path": "/a/-1"}]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": [1, 2]}));
    }
}
