//! Field ownership and the patch flavours: server-side apply (`managedFields` in the `FieldsV1`
//! format), JSON merge patch, JSON patch and a simplified strategic merge patch.
//!
//! Ownership is tracked per leaf field. Lists are atomic unless their field name is one of the
//! associative lists of the built-in Kubernetes types (`containers` by `name`, `ports` by port and
//! protocol, ...), which are tracked per item the way the real API server does; `finalizers` is a
//! set. CRD schemas (`x-kubernetes-list-type`) are not read: their lists are atomic unless the
//! field name matches a built-in associative list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value, json};

/// One step of a field path, ordered like the `FieldsV1` keys it serializes to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Elem {
    /// `.`: the list item itself (its existence).
    Dot,
    /// `f:name`: a field of an object.
    Field(String),
    /// `k:{...}`: an item of an associative list, by its key fields (canonical JSON).
    Key(String),
    /// `v:...`: an item of a set list, by value (JSON).
    Value(String),
}

impl Elem {
    fn fields_v1_key(&self) -> String {
        match self {
            Elem::Dot => ".".into(),
            Elem::Field(name) => format!("f:{name}"),
            Elem::Key(key) => format!("k:{key}"),
            Elem::Value(value) => format!("v:{value}"),
        }
    }

    fn parse(key: &str) -> Option<Elem> {
        if key == "." {
            return Some(Elem::Dot);
        }
        let (prefix, rest) = key.split_at_checked(2)?;
        match prefix {
            "f:" => Some(Elem::Field(rest.into())),
            "k:" => Some(Elem::Key(canonical_json(&serde_json::from_str(rest).ok()?))),
            "v:" => Some(Elem::Value(rest.into())),
            _ => None,
        }
    }
}

/// A path to a leaf field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<Elem>);

impl fmt::Display for Path {
    /// The notation the API server uses in conflict messages: `.spec.containers[name="web"].image`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for elem in &self.0 {
            match elem {
                Elem::Dot => {}
                Elem::Field(name) => write!(f, ".{name}")?,
                Elem::Key(key) => {
                    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(key) else {
                        continue;
                    };
                    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "[{}]", parts.join(","))?;
                }
                Elem::Value(value) => write!(f, "[={value}]")?,
            }
        }
        Ok(())
    }
}

pub type FieldSet = BTreeSet<Path>;

/// JSON with object keys sorted, as the API server writes `k:` keys.
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(canonical_json)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        other => other.to_string(),
    }
}

/// How a list field is merged and owned.
#[derive(Debug, Clone, PartialEq)]
enum ListType {
    Atomic,
    Set,
    Map(&'static [&'static str]),
}

fn list_type(field: &str, items: &[Value]) -> ListType {
    let keys: &'static [&'static str] = match field {
        "finalizers" => return ListType::Set,
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "hostAliases" => &["ip"],
        "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
        "ports" => {
            if items.iter().all(|i| i.get("containerPort").is_some()) {
                &["containerPort", "protocol"]
            } else if items.iter().all(|i| i.get("port").is_some()) {
                &["port", "protocol"]
            } else {
                return ListType::Atomic;
            }
        }
        _ => return ListType::Atomic,
    };
    // Every item must be an object carrying the (non-defaulted) key fields.
    let keyed = items.iter().all(|item| {
        item.as_object()
            .is_some_and(|m| keys.iter().all(|k| *k == "protocol" || m.contains_key(*k)))
    });
    if keyed {
        ListType::Map(keys)
    } else {
        ListType::Atomic
    }
}

fn item_key(keys: &[&str], item: &Value) -> String {
    let mut map = Map::new();
    for key in keys {
        match item.get(*key) {
            Some(v) => {
                map.insert((*key).into(), v.clone());
            }
            // `protocol` is defaulted by the API server; the key always carries it.
            None if *key == "protocol" => {
                map.insert((*key).into(), json!("TCP"));
            }
            None => {}
        }
    }
    canonical_json(&Value::Object(map))
}

/// Fields that the API server manages itself and never records in `managedFields`.
fn is_server_field(path: &[Elem]) -> bool {
    match path {
        [Elem::Field(top)] if top == "apiVersion" || top == "kind" => true,
        [Elem::Field(m), Elem::Field(f), ..] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

/// The leaf paths set in `obj`, without server-managed fields; `skip_status` leaves out `.status`.
pub fn leaf_paths(obj: &Value, skip_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    let mut prefix = Vec::new();
    collect(obj, &mut prefix, &mut out);
    out.retain(|p| {
        let status = skip_status && p.0.first() == Some(&Elem::Field("status".into()));
        !(is_server_field(&p.0) || status)
    });
    out
}

fn collect(value: &Value, prefix: &mut Vec<Elem>, out: &mut FieldSet) {
    let Value::Object(map) = value else { return };
    for (key, child) in map {
        if child.is_null() {
            continue;
        }
        prefix.push(Elem::Field(key.clone()));
        collect_value(key, child, prefix, out);
        prefix.pop();
    }
}

fn collect_value(field: &str, value: &Value, prefix: &mut Vec<Elem>, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => collect(value, prefix, out),
        Value::Array(items) if !items.is_empty() => match list_type(field, items) {
            ListType::Atomic => {
                out.insert(Path(prefix.clone()));
            }
            ListType::Set => {
                for item in items {
                    prefix.push(Elem::Value(canonical_json(item)));
                    out.insert(Path(prefix.clone()));
                    prefix.pop();
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    prefix.push(Elem::Key(item_key(keys, item)));
                    prefix.push(Elem::Dot);
                    out.insert(Path(prefix.clone()));
                    prefix.pop();
                    collect(item, prefix, out);
                    prefix.pop();
                }
            }
        },
        _ => {
            out.insert(Path(prefix.clone()));
        }
    }
}

/// The value at `path`, if present.
pub fn value_at<'a>(obj: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut current = obj;
    let mut field = "";
    for elem in &path.0 {
        current = match elem {
            Elem::Dot => current,
            Elem::Field(name) => {
                field = name;
                current.get(name.as_str())?
            }
            Elem::Key(key) => {
                let items = current.as_array()?;
                let ListType::Map(keys) = list_type(field, items) else {
                    return None;
                };
                items.iter().find(|item| item_key(keys, item) == *key)?
            }
            Elem::Value(value) => current
                .as_array()?
                .iter()
                .find(|item| canonical_json(item) == *value)?,
        };
    }
    Some(current)
}

/// Remove the field (or list item) at `path`. Returns whether something was removed.
fn remove_at(obj: &mut Value, path: &[Elem]) -> bool {
    match path {
        [] => false,
        [Elem::Field(name)] => obj
            .as_object_mut()
            .is_some_and(|m| m.remove(name).is_some()),
        [Elem::Field(name), Elem::Key(key), Elem::Dot] => {
            let Some(Value::Array(items)) = obj.get_mut(name.as_str()) else {
                return false;
            };
            let ListType::Map(keys) = list_type(name, items) else {
                return false;
            };
            let before = items.len();
            items.retain(|item| item_key(keys, item) != *key);
            let removed = items.len() != before;
            if items.is_empty() {
                obj.as_object_mut().map(|m| m.remove(name));
            }
            removed
        }
        [Elem::Field(name), Elem::Value(value)] => {
            let Some(Value::Array(items)) = obj.get_mut(name.as_str()) else {
                return false;
            };
            let before = items.len();
            items.retain(|item| canonical_json(item) != *value);
            let removed = items.len() != before;
            if items.is_empty() {
                obj.as_object_mut().map(|m| m.remove(name));
            }
            removed
        }
        [Elem::Field(name), Elem::Key(key), rest @ ..] => {
            let Some(Value::Array(items)) = obj.get_mut(name.as_str()) else {
                return false;
            };
            let ListType::Map(keys) = list_type(name, items) else {
                return false;
            };
            items
                .iter_mut()
                .find(|item| item_key(keys, item) == *key)
                .is_some_and(|item| remove_at(item, rest))
        }
        [Elem::Field(name), rest @ ..] => {
            let Some(child) = obj.get_mut(name.as_str()) else {
                return false;
            };
            let removed = remove_at(child, rest);
            // Drop maps this removal emptied, but keep the top-level sections.
            if removed && child.as_object().is_some_and(Map::is_empty) && path.len() > 2 {
                obj.as_object_mut().map(|m| m.remove(name));
            }
            removed
        }
        _ => false,
    }
}

/// Merge an applied configuration into the live object: objects field by field, associative
/// lists item by item, sets by value, everything else replaced. `null`s are dropped.
fn merge_applied(live: &mut Value, applied: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) => {
            for (key, value) in applied {
                if value.is_null() {
                    continue;
                }
                match live.get_mut(key) {
                    Some(existing) => merge_applied(existing, value, key),
                    None => {
                        live.insert(key.clone(), strip_nulls(value));
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(applied)) => match list_type(field, applied) {
            ListType::Map(keys) if matches!(list_type(field, live), ListType::Map(_)) => {
                for item in applied {
                    let key = item_key(keys, item);
                    match live.iter_mut().find(|l| item_key(keys, l) == key) {
                        Some(existing) => merge_applied(existing, item, ""),
                        None => live.push(strip_nulls(item)),
                    }
                }
            }
            ListType::Set => {
                for item in applied {
                    if !live.contains(item) {
                        live.push(item.clone());
                    }
                }
            }
            _ => *live = applied.clone(),
        },
        (live, applied) => *live = strip_nulls(applied),
    }
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manager {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Manager {
    fn same_slot(&self, other: &Manager) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
    }

    /// How the API server names this manager in conflict messages.
    fn describe(&self) -> String {
        if self.operation == "Update" {
            format!("{:?} using {}", self.manager, self.api_version)
        } else {
            format!("{:?}", self.manager)
        }
    }
}

/// Parse `metadata.managedFields` of a stored object.
pub fn managers_of(obj: &Value) -> Vec<Manager> {
    let Some(entries) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let mut fields = FieldSet::new();
            parse_fields_v1(entry.get("fieldsV1")?, &mut Vec::new(), &mut fields);
            Some(Manager {
                manager: entry.get("manager")?.as_str()?.to_string(),
                operation: entry.get("operation")?.as_str()?.to_string(),
                api_version: entry
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                time: entry
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                subresource: entry
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(String::from),
                fields,
            })
        })
        .collect()
}

fn parse_fields_v1(node: &Value, prefix: &mut Vec<Elem>, out: &mut FieldSet) {
    let Value::Object(map) = node else { return };
    for (key, child) in map {
        let Some(elem) = Elem::parse(key) else {
            continue;
        };
        prefix.push(elem);
        if matches!(prefix.last(), Some(Elem::Dot)) || child.as_object().is_some_and(Map::is_empty)
        {
            out.insert(Path(prefix.clone()));
        } else {
            parse_fields_v1(child, prefix, out);
        }
        prefix.pop();
    }
}

/// The `FieldsV1` trie of a field set.
pub fn fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for elem in &path.0 {
            node = node
                .entry(elem.fields_v1_key())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("trie nodes are objects");
        }
    }
    Value::Object(root)
}

/// Write managers back into `metadata.managedFields` (dropping empty ones).
pub fn set_managers(obj: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut entry = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(&m.fields),
            });
            if let Some(sub) = &m.subresource {
                entry["subresource"] = json!(sub);
            }
            entry
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// A field owned by another manager whose value the apply would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// As the API server prints it: `"kubectl" using apps/v1` for updaters, `"baton"` for appliers.
    pub manager: String,
    pub path: Path,
}

/// The conflict message of the API server's `Status`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager, only.path
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(&c.manager).or_default().push(&c.path);
    }
    let mut lines = Vec::new();
    for (manager, paths) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(paths.iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// What a write changes about ownership.
pub struct Ownership<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
    pub now: &'a str,
    pub skip_status: bool,
}

/// Server-side apply `applied` onto `live` (`None` when the object does not exist yet).
/// Returns the merged object with updated `managedFields`, or the conflicts.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    force: bool,
    who: &Ownership<'_>,
) -> Result<Value, Vec<Conflict>> {
    let mut managers = live.map(managers_of).unwrap_or_default();
    let new_fields = leaf_paths(applied, who.skip_status);
    let base = live.cloned().unwrap_or_else(|| json!({}));

    let me = Manager {
        manager: who.manager.into(),
        operation: "Apply".into(),
        api_version: who.api_version.into(),
        time: who.now.into(),
        subresource: who.subresource.map(String::from),
        fields: FieldSet::new(),
    };
    let mut conflicts = Vec::new();
    for other in managers.iter().filter(|m| !m.same_slot(&me)) {
        for path in other.fields.intersection(&new_fields) {
            if matches!(path.0.last(), Some(Elem::Dot | Elem::Value(_))) {
                continue;
            }
            if value_at(&base, path) != value_at(applied, path) {
                conflicts.push(Conflict {
                    manager: other.describe(),
                    path: path.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forced: the applier takes the conflicting fields away from their owners.
    for conflict in &conflicts {
        for other in managers.iter_mut().filter(|m| !m.same_slot(&me)) {
            other.fields.remove(&conflict.path);
        }
    }

    let previous = managers
        .iter()
        .find(|m| m.same_slot(&me))
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    let mut merged = base.clone();
    for dropped in previous.difference(&new_fields) {
        let still_owned = managers
            .iter()
            .filter(|m| !m.same_slot(&me))
            .any(|m| m.fields.contains(dropped));
        if !still_owned {
            remove_at(&mut merged, &dropped.0);
        }
    }
    let mut applied_body = applied.clone();
    if who.skip_status {
        applied_body.as_object_mut().map(|m| m.remove("status"));
    }
    if let Some(meta) = applied_body
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        for server_field in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(server_field);
        }
    }
    merge_applied(&mut merged, &applied_body, "");

    let changed_content = strip_managed(&merged) != strip_managed(&base);
    match managers.iter_mut().find(|m| m.same_slot(&me)) {
        Some(existing) => {
            if existing.fields != new_fields || changed_content {
                existing.time = who.now.into();
            }
            existing.fields = new_fields;
            existing.api_version = who.api_version.into();
        }
        None => managers.push(Manager {
            fields: new_fields,
            ..me
        }),
    }
    prune_missing(&mut managers, &merged);
    set_managers(&mut merged, &managers);
    Ok(merged)
}

/// Record an update (create, PUT, merge/JSON/strategic patch) by `who`: the fields it changed
/// become its own (taken from other managers without conflict).
pub fn record_update(old: Option<&Value>, new: &mut Value, who: &Ownership<'_>) {
    let mut managers = old.map(managers_of).unwrap_or_default();
    let empty = json!({});
    let old_value = old.unwrap_or(&empty);
    let changed: FieldSet = leaf_paths(new, who.skip_status)
        .into_iter()
        .filter(|p| value_at(old_value, p) != value_at(new, p) || old.is_none())
        .collect();
    if !changed.is_empty() {
        for m in managers.iter_mut() {
            for path in &changed {
                m.fields.remove(path);
            }
        }
        let slot = Manager {
            manager: who.manager.into(),
            operation: "Update".into(),
            api_version: who.api_version.into(),
            time: who.now.into(),
            subresource: who.subresource.map(String::from),
            fields: FieldSet::new(),
        };
        match managers.iter_mut().find(|m| m.same_slot(&slot)) {
            Some(existing) => {
                existing.fields.extend(changed);
                existing.time = who.now.into();
                existing.api_version = who.api_version.into();
            }
            None => managers.push(Manager {
                fields: changed,
                ..slot
            }),
        }
    }
    prune_missing(&mut managers, new);
    set_managers(new, &managers);
}

/// Ownership of fields that no longer exist is dropped.
fn prune_missing(managers: &mut [Manager], obj: &Value) {
    for m in managers.iter_mut() {
        m.fields.retain(|p| value_at(obj, p).is_some());
    }
}

fn strip_managed(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    copy
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("just made an object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// A simplified strategic merge patch: a merge patch in which the associative lists of the
/// built-in types merge by key, `$patch: delete|replace` is honoured on list items and maps,
/// `$retainKeys`, `$setElementOrder/...` and `$deleteFromPrimitiveList/...` directives are
/// honoured loosely (ordering directives are ignored).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch.clone();
        clean.remove("$patch");
        *target = Value::Object(clean);
        return;
    }
    if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
        *target = Value::Object(Map::new());
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("just made an object");
    if let Some(Value::Array(retain)) = patch.get("$retainKeys") {
        let keep: BTreeSet<&str> = retain.iter().filter_map(Value::as_str).collect();
        map.retain(|k, _| keep.contains(k.as_str()));
    }
    for (key, value) in patch {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(remove)) = (map.get_mut(field), value) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        match value {
            Value::Null => {
                map.remove(key);
            }
            Value::Array(items) => {
                let live = map.get_mut(key);
                match (live, list_type(key, items)) {
                    (Some(Value::Array(live)), ListType::Map(keys)) => {
                        for item in items {
                            let k = item_key(keys, item);
                            let directive = item.get("$patch").and_then(Value::as_str);
                            let pos = live.iter().position(|l| item_key(keys, l) == k);
                            match (directive, pos) {
                                (Some("delete"), Some(i)) => {
                                    live.remove(i);
                                }
                                (Some("delete"), None) => {}
                                (_, Some(i)) => strategic_merge_patch(&mut live[i], item),
                                (_, None) => {
                                    let mut fresh = Value::Object(Map::new());
                                    strategic_merge_patch(&mut fresh, item);
                                    live.push(fresh);
                                }
                            }
                        }
                    }
                    (Some(Value::Array(live)), ListType::Set) => {
                        for item in items {
                            if !live.contains(item) {
                                live.push(item.clone());
                            }
                        }
                    }
                    _ => {
                        let cleaned: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").is_none())
                            .cloned()
                            .collect();
                        map.insert(key.clone(), Value::Array(cleaned));
                    }
                }
            }
            Value::Object(_) => {
                strategic_merge_patch(map.entry(key.clone()).or_insert(Value::Null), value)
            }
            other => {
                map.insert(key.clone(), other.clone());
            }
        }
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("operation without \"op\"")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("operation without \"path\"")?;
        match kind {
            "add" => pointer_add(
                target,
                path,
                op.get("value").cloned().ok_or("add without value")?,
            )?,
            "remove" => {
                pointer_remove(target, path)?;
            }
            "replace" => {
                pointer_remove(target, path)?;
                pointer_add(
                    target,
                    path,
                    op.get("value").cloned().ok_or("replace without value")?,
                )?;
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("move/copy without from")?;
                let value = if kind == "move" {
                    pointer_remove(target, from)?
                } else {
                    target
                        .pointer(from)
                        .cloned()
                        .ok_or_else(|| format!("no value at {from}"))?
                };
                pointer_add(target, path, value)?;
            }
            "test" => {
                let expected = op.get("value").ok_or("test without value")?;
                if target.pointer(path) != Some(expected) {
                    return Err(format!("test failed at {path}"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let idx = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    let last = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..idx].to_string(), last))
}

fn pointer_add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            if last == "-" {
                items.push(value);
                return Ok(());
            }
            let index: usize = last
                .parse()
                .map_err(|_| format!("bad array index in {path}"))?;
            if index > items.len() {
                return Err(format!("index out of range in {path}"));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!("no parent for {path}")),
    }
}

fn pointer_remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => map
            .remove(&last)
            .ok_or_else(|| format!("no value at {path}")),
        Some(Value::Array(items)) => {
            let index: usize = last
                .parse()
                .map_err(|_| format!("bad array index in {path}"))?;
            if index >= items.len() {
                return Err(format!("index out of range in {path}"));
            }
            Ok(items.remove(index))
        }
        _ => Err(format!("no value at {path}")),
    }
}

#[cfg(test)]
mod tests;
