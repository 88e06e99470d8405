//! The object store: every write goes through here (from the HTTP API and from the simulated
//! controllers alike), so resourceVersion, generation, managedFields, finalizers, garbage
//! collection and watch events behave the same whoever writes.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::faults::{Counts, Fault};
use super::fields::{self, Ownership};
use super::resources::{self, ResourceType};

/// How many past events a watch can resume from before it gets `410 Gone`.
const HISTORY: usize = 10_000;

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept for watches to replay.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub key: String,
    pub kind: EventType,
    pub object: Value,
    pub previous: Option<Value>,
}

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(t: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "group": t.group, "kind": t.plural})),
            ..Self::new(
                404,
                "NotFound",
                format!("{} {name:?} not found", t.group_resource()),
            )
        }
    }

    pub fn already_exists(t: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "group": t.group, "kind": t.plural})),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", t.group_resource()),
            )
        }
    }

    pub fn conflict(t: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "group": t.group, "kind": t.plural})),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                    t.group_resource()
                ),
            )
        }
    }

    pub fn invalid(t: &ResourceType, name: &str, message: impl Into<String>) -> Self {
        Self {
            details: Some(json!({"name": name, "group": t.group, "kind": t.kind})),
            ..Self::new(
                422,
                "Invalid",
                format!("{} {name:?} is invalid: {}", t.kind, message.into()),
            )
        }
    }

    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// Options of a delete.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteOptions<'a> {
    /// `propagationPolicy: Orphan`: dependents are left alone.
    pub orphan: bool,
    pub dry_run: bool,
    /// `preconditions.uid`.
    pub uid: Option<&'a str>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<&'a str>,
}

/// Who is writing, and how.
#[derive(Debug, Clone)]
pub struct Writer {
    pub manager: String,
    pub subresource: Option<String>,
    pub dry_run: bool,
}

/// How a write builds the new object from the old one.
pub enum Change {
    /// Create, PUT, or a patch already applied to a copy of the live object.
    Replace(Value),
    /// Server-side apply of this configuration.
    Apply { config: Value, force: bool },
}

pub struct Inner {
    pub rv: u64,
    pub types: Vec<ResourceType>,
    /// type key (`group/plural`) → (namespace, name) → object.
    pub objects: HashMap<String, BTreeMap<(String, String), Value>>,
    pub history: VecDeque<Arc<Event>>,
    pub broken: BTreeSet<String>,
    pub logs: HashMap<(String, String), String>,
    pub faults: Vec<Fault>,
    pub counts: Counts,
    pub random: RandomState,
    pub serial: u64,
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Inner {
    pub fn new() -> Self {
        let mut inner = Self {
            rv: 1000,
            types: resources::builtins(),
            objects: HashMap::new(),
            history: VecDeque::new(),
            broken: BTreeSet::new(),
            logs: HashMap::new(),
            faults: Vec::new(),
            counts: Counts::default(),
            random: RandomState::new(),
            serial: 0,
        };
        let ns_type = inner
            .find_type("", "v1", "namespaces")
            .expect("namespaces are built in");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            let writer = Writer {
                manager: "kube-apiserver".into(),
                subresource: None,
                dry_run: false,
            };
            inner
                .write(&ns_type, "", name, Change::Replace(obj), &writer, true)
                .expect("bootstrap namespace");
        }
        inner
    }

    fn random_u64(&mut self) -> u64 {
        self.serial += 1;
        self.random.hash_one(self.serial)
    }

    pub fn new_uid(&mut self) -> String {
        let (a, b) = (self.random_u64(), self.random_u64());
        let hex = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    }

    /// Five lowercase alphanumerics, as `generateName` and pod names use.
    pub fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.random_u64();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn type_for_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }

    pub fn get(&self, t: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        let obj = self
            .objects
            .get(&t.key())?
            .get(&(namespace.to_string(), name.to_string()))?;
        Some(as_version(obj, t))
    }

    /// Objects of a type, in one namespace or (with `None`) all, sorted by namespace and name.
    pub fn list(&self, t: &ResourceType, namespace: Option<&str>) -> Vec<Value> {
        let Some(objects) = self.objects.get(&t.key()) else {
            return Vec::new();
        };
        objects
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, obj)| as_version(obj, t))
            .collect()
    }

    fn namespace_exists(&self, namespace: &str) -> bool {
        self.objects
            .get("/namespaces")
            .is_some_and(|m| m.contains_key(&(String::new(), namespace.to_string())))
    }

    /// Create, update, patch or apply one object. Returns the object as stored (or as it would
    /// be, for a dry run). `create_only` refuses to replace an existing object.
    pub fn write(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        change: Change,
        writer: &Writer,
        create_only: bool,
    ) -> Result<Value, ApiError> {
        let namespace = if t.namespaced { namespace } else { "" };
        if t.namespaced && !self.namespace_exists(namespace) {
            let ns_type = self.find_type("", "v1", "namespaces").expect("built in");
            return Err(ApiError::not_found(&ns_type, namespace));
        }
        let key = (namespace.to_string(), name.to_string());
        let old = self
            .objects
            .get(&t.key())
            .and_then(|m| m.get(&key))
            .cloned();
        if create_only && old.is_some() {
            return Err(ApiError::already_exists(t, name));
        }
        let now = now();
        let who = Ownership {
            manager: &writer.manager,
            api_version: &t.api_version(),
            subresource: writer.subresource.as_deref(),
            now: &now,
            skip_status: t.status && writer.subresource.is_none(),
        };
        let mut new = match change {
            Change::Apply { config, force } => {
                check_identity(t, name, &config)?;
                check_resource_version(t, name, &config, old.as_ref())?;
                let merged = fields::apply(old.as_ref(), &config, force, &who).map_err(|conflicts| {
                    let causes: Vec<Value> = conflicts
                        .iter()
                        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.path.to_string()}))
                        .collect();
                    ApiError {
                        details: Some(json!({"causes": causes})),
                        ..ApiError::new(409, "Conflict", fields::conflict_message(&conflicts))
                    }
                })?;
                self.prepare(t, namespace, name, old.as_ref(), merged, writer, &now)?
            }
            Change::Replace(body) => {
                check_identity(t, name, &body)?;
                check_resource_version(t, name, &body, old.as_ref())?;
                let mut new = self.prepare(t, namespace, name, old.as_ref(), body, writer, &now)?;
                fields::record_update(old.as_ref(), &mut new, &who);
                new
            }
        };
        if let Some(old) = &old
            && without_rv(old) == without_rv(&new)
        {
            return Ok(as_version(old, t));
        }
        if t.crd.is_none()
            && t.plural == "customresourcedefinitions"
            && t.group == "apiextensions.k8s.io"
        {
            let types = resources::from_crd(&new).map_err(|m| ApiError::invalid(t, name, m))?;
            if writer.subresource.is_none() {
                new["status"] = resources::crd_status(&new, &now);
            }
            if !writer.dry_run {
                self.types
                    .retain(|existing| existing.crd.as_deref() != Some(name));
                self.types.extend(types);
            }
        }
        if writer.dry_run {
            new["metadata"]["resourceVersion"] = old
                .as_ref()
                .map(|o| o["metadata"]["resourceVersion"].clone())
                .unwrap_or(json!(""));
            return Ok(as_version(&new, t));
        }
        let finalized = new.pointer("/metadata/deletionTimestamp").is_some()
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        let stored = self.commit(t, namespace, name, old, new);
        if finalized {
            self.remove(t, namespace, name, true);
        }
        Ok(as_version(&stored, t))
    }

    /// Fill in what the server owns: identity, timestamps, generation, status rules, defaults.
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        old: Option<&Value>,
        mut new: Value,
        writer: &Writer,
        now: &str,
    ) -> Result<Value, ApiError> {
        if !new.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let body_status = new.get("status").cloned();
        if writer.subresource.as_deref() == Some("status") {
            // A status write changes only status.
            let Some(old) = old else {
                return Err(ApiError::not_found(t, name));
            };
            new = old.clone();
            match body_status {
                Some(status) => new["status"] = status,
                None => {
                    new.as_object_mut().map(|m| m.remove("status"));
                }
            }
        } else if t.status {
            match old.and_then(|o| o.get("status")) {
                Some(status) => new["status"] = status.clone(),
                None => {
                    new.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        new["apiVersion"] = json!(t.api_version());
        new["kind"] = json!(t.kind);
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
        let meta = new["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        meta.insert("name".into(), json!(name));
        if t.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        match old {
            Some(old) => {
                for field in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match old["metadata"].get(field) {
                        Some(v) => meta.insert(field.into(), v.clone()),
                        None => meta.remove(field),
                    };
                }
            }
            None => {
                meta.insert("creationTimestamp".into(), json!(now));
                meta.insert("generation".into(), json!(1));
                for field in [
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "resourceVersion",
                ] {
                    meta.remove(field);
                }
            }
        }
        if old.is_none() {
            let uid = self.new_uid();
            new["metadata"]["uid"] = json!(uid);
        }
        if old.is_some_and(|o| o.pointer("/metadata/deletionTimestamp").is_some()) {
            // Terminating objects may only lose finalizers.
            let old_fin = old
                .and_then(|o| o.pointer("/metadata/finalizers"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let new_fin = new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if new_fin.iter().any(|f| !old_fin.contains(f)) {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} {name:?} is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                        t.kind
                    ),
                ));
            }
        }
        super::defaults::apply(t, &mut new);
        if t.plural == "namespaces" && t.group.is_empty() {
            new["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        if let Some(old) = old
            && spec_of(old) != spec_of(&new)
        {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        Ok(new)
    }

    fn commit(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        old: Option<Value>,
        mut new: Value,
    ) -> Value {
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.objects
            .entry(t.key())
            .or_default()
            .insert((namespace.to_string(), name.to_string()), new.clone());
        self.push_event(t, kind, new.clone(), old);
        new
    }

    fn push_event(
        &mut self,
        t: &ResourceType,
        kind: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        self.history.push_back(Arc::new(Event {
            rv: self.rv,
            key: t.key(),
            kind,
            object,
            previous,
        }));
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    /// The oldest resourceVersion a watch can resume from.
    pub fn oldest_resumable(&self) -> u64 {
        self.history.front().map(|e| e.rv - 1).unwrap_or(self.rv)
    }

    /// Delete one object: mark it terminating while it has finalizers, otherwise remove it
    /// (and, unless orphaning, its dependents).
    pub fn delete(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions<'_>,
    ) -> Result<Value, ApiError> {
        let DeleteOptions {
            orphan,
            dry_run,
            uid: precondition_uid,
            resource_version: precondition_rv,
        } = *opts;
        let namespace = if t.namespaced { namespace } else { "" };
        let key = (namespace.to_string(), name.to_string());
        let Some(old) = self
            .objects
            .get(&t.key())
            .and_then(|m| m.get(&key))
            .cloned()
        else {
            return Err(ApiError::not_found(t, name));
        };
        if let Some(uid) = precondition_uid
            && old.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    old["metadata"]["uid"].as_str().unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = precondition_rv
            && old
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                != Some(rv)
        {
            return Err(ApiError::conflict(t, name));
        }
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if dry_run {
            return Ok(as_version(&old, t));
        }
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(as_version(&old, t));
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let stored = self.commit(t, namespace, name, Some(old), new);
            return Ok(as_version(&stored, t));
        }
        Ok(as_version(
            &self.remove(t, namespace, name, !orphan).unwrap_or(old),
            t,
        ))
    }

    /// Remove an object now, emitting `DELETED`; cascade to dependents and namespace contents.
    pub fn remove(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        cascade: bool,
    ) -> Option<Value> {
        let mut obj = self
            .objects
            .get_mut(&t.key())?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.push_event(t, EventType::Deleted, obj.clone(), None);
        if t.group == "apiextensions.k8s.io" && t.plural == "customresourcedefinitions" {
            let defined: Vec<ResourceType> = self
                .types
                .iter()
                .filter(|d| d.crd.as_deref() == Some(name))
                .cloned()
                .collect();
            self.types.retain(|d| d.crd.as_deref() != Some(name));
            if let Some(d) = defined.first() {
                let victims: Vec<(String, String)> = self
                    .objects
                    .get(&d.key())
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                for (ns, n) in victims {
                    self.remove(d, &ns, &n, false);
                }
                self.objects.remove(&d.key());
            }
        }
        if t.group.is_empty() && t.plural == "namespaces" {
            let namespaced: Vec<ResourceType> = self
                .types
                .iter()
                .filter(|t| t.namespaced)
                .cloned()
                .collect();
            for nt in namespaced {
                let victims: Vec<String> = self
                    .objects
                    .get(&nt.key())
                    .map(|m| {
                        m.keys()
                            .filter(|(ns, _)| ns == name)
                            .map(|(_, n)| n.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for victim in victims {
                    self.remove(&nt, name, &victim, false);
                }
            }
        }
        if cascade {
            let uid = obj
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            for (dt, ns, n) in self.dependents_of(&uid) {
                let _ = self.delete(&dt, &ns, &n, &DeleteOptions::default());
            }
        }
        Some(obj)
    }

    fn dependents_of(&self, uid: &str) -> Vec<(ResourceType, String, String)> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for t in &self.types {
            if !seen.insert(t.key()) {
                continue;
            }
            let Some(objects) = self.objects.get(&t.key()) else {
                continue;
            };
            for ((ns, n), obj) in objects {
                let owned = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                    });
                if owned {
                    out.push((t.clone(), ns.clone(), n.clone()));
                }
            }
        }
        out
    }
}

fn check_identity(t: &ResourceType, name: &str, body: &Value) -> Result<(), ApiError> {
    if let Some(body_name) = body.pointer("/metadata/name").and_then(Value::as_str)
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != t.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the URL ({})",
            t.kind
        )));
    }
    Ok(())
}

fn check_resource_version(
    t: &ResourceType,
    name: &str,
    body: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(wanted) = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Ok(());
    };
    match old {
        None => Err(ApiError::not_found(t, name)),
        Some(old)
            if old
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                != Some(wanted) =>
        {
            Err(ApiError::conflict(t, name))
        }
        Some(_) => Ok(()),
    }
}

/// Everything but metadata and status: what `metadata.generation` tracks.
fn spec_of(obj: &Value) -> Value {
    let mut map: Map<String, Value> = obj.as_object().cloned().unwrap_or_default();
    for key in ["metadata", "status", "apiVersion", "kind"] {
        map.remove(key);
    }
    Value::Object(map)
}

fn without_rv(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    copy
}

/// The stored object as seen through `t`'s version (no conversion: CRD versions share a schema,
/// like the `None` conversion strategy).
pub fn as_version(obj: &Value, t: &ResourceType) -> Value {
    let mut copy = obj.clone();
    copy["apiVersion"] = json!(t.api_version());
    copy
}
