//! Patches: strategic merge and JSON 6902 patches, inline or from files, targeted by selector
//! or by the patch's own id, and the index that finds their targets.

use super::*;

impl Builder {
    pub(super) fn apply_patch(
        &mut self,
        k: &Kustomization,
        dir: &Resolved,
        ra: &mut Vec<Resource>,
        p: &PatchSpec,
        field: &str,
    ) -> Result<(), RenderError> {
        let at = Location::at(&k.file, p.line);
        let (text, source, from_file) = match (&p.path, &p.patch) {
            (Some(_), Some(_)) => {
                return Err(RenderError::invalid(
                    at,
                    field,
                    "give either `path` or `patch`, not both",
                ));
            }
            (None, None) => {
                return Err(RenderError::invalid(
                    at,
                    field,
                    "give a `path` or a `patch`",
                ));
            }
            (Some(path), None) => {
                let r =
                    self.loader
                        .resolve(&dir.abs, path, &at, &format!("{field}.path"), false)?;
                let text = self.loader.read_text(&r, &at)?;
                (text.to_string(), Location::file(&r.rel), true)
            }
            (None, Some(patch)) => (patch.clone(), Location::at(&k.file, p.patch_line), false),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(RenderError::invalid(at, field, "the patch is empty"));
        }
        // kustomize compares `test` values with the patch's own JSON text only when the patch
        // is JSON as written (an inline patch is trimmed first, a file is not).
        let raw_json = if from_file {
            text.starts_with('[')
        } else {
            trimmed.starts_with('[')
        };
        let json_ops = if trimmed.starts_with('[') {
            let v: Value = serde_json::from_str(trimmed).map_err(|e| RenderError::Yaml {
                at: source.clone(),
                message: format!("invalid JSON patch: {e}"),
            })?;
            Some(v)
        } else {
            let docs = value::parse_stream(&text).map_err(|e| RenderError::Yaml {
                at: offset_line(&source, e.line),
                message: e.message,
            })?;
            let real: Vec<&Raw> = docs.iter().filter(|d| !d.is_null()).collect();
            match real.as_slice() {
                [one] if matches!(one, Raw::Seq { .. }) => Some(
                    one.to_plain_value(Dialect::Yaml11)
                        .map_err(|e| RenderError::Yaml {
                            at: offset_line(&source, e.line),
                            message: e.message,
                        })?,
                ),
                _ => None,
            }
        };
        if let Some(ops) = json_ops {
            let ops = jsonpatch::decode(&ops, raw_json).map_err(|e| {
                RenderError::build(source.clone(), format!("invalid JSON patch: {e}"))
            })?;
            if ops.ops.is_empty() {
                let why = if field == "patchesJson6902" {
                    "patch appears to be empty"
                } else {
                    "illegally qualifies as both an SM and JSON patch (an empty list)"
                };
                return Err(RenderError::invalid(at, field, why));
            }
            let Some(target) = &p.target else {
                return Err(RenderError::invalid(
                    at,
                    format!("{field}.target"),
                    "a JSON 6902 patch needs a `target`",
                ));
            };
            if field == "patchesJson6902" && target.name.is_empty() {
                return Err(RenderError::invalid(
                    at,
                    format!("{field}.target.name"),
                    "must specify the target name",
                ));
            }
            let sel =
                Selector::new(target).map_err(|e| RenderError::invalid(at.clone(), field, e))?;
            for r in ra.iter_mut().filter(|r| !r.is_empty() && sel.matches(r)) {
                // `patches` records the previous id first; `patchesJson6902` does not. Either
                // way the patch sees kustomize's build annotations, so `add` to
                // /metadata/annotations/x works exactly where kustomize's does.
                if field == "patches" {
                    r.store_previous_id();
                }
                let id = r.cur_id();
                let origin = r.origin.clone();
                r.with_build_annotations(|v| jsonpatch::apply(v, &ops))
                    .map_err(|e| {
                        RenderError::build(
                            at.clone(),
                            format!("JSON patch on {id} (from {origin}): {e}"),
                        )
                    })?;
            }
            return Ok(());
        }
        if field == "patchesJson6902" {
            return Err(RenderError::invalid(
                at,
                field,
                "expected a list of JSON 6902 operations",
            ));
        }
        let patches = parse_smp(&text, &source)?;
        match &p.target {
            None => {
                let mut index = name_index(ra);
                for patch in &patches {
                    apply_untargeted(
                        self.openapi.as_deref(),
                        ra,
                        &mut index,
                        patch,
                        &at,
                        p.allow_name_change,
                        p.allow_kind_change,
                    )?;
                }
            }
            Some(target) => {
                let sel = Selector::new(target)
                    .map_err(|e| RenderError::invalid(at.clone(), field, e))?;
                let selected: Vec<ResId> = ra
                    .iter()
                    .filter(|r| !r.is_empty() && sel.matches(r))
                    .map(Resource::cur_id)
                    .collect();
                for patch in &patches {
                    for r in ra.iter_mut() {
                        if !r.is_empty() && selected.iter().any(|id| id.equals(&r.cur_id())) {
                            apply_smp(
                                self.openapi.as_deref(),
                                r,
                                patch,
                                &at,
                                p.allow_name_change,
                                p.allow_kind_change,
                            )?;
                        }
                    }
                }
            }
        }
        ra.retain(|r| !r.is_empty());
        Ok(())
    }
}

/// Lines of an inline patch count from the first line of the `patch:` value.
pub(super) fn offset_line(source: &Location, line: usize) -> Location {
    match source.line {
        Some(base) => Location::at(&source.file, base + line.saturating_sub(1)),
        None => Location::at(&source.file, line),
    }
}

/// Strategic-merge patch documents.
pub(super) fn parse_smp(text: &str, source: &Location) -> Result<Vec<Value>, RenderError> {
    let docs = value::parse_stream(text).map_err(|e| RenderError::Yaml {
        at: offset_line(source, e.line),
        message: e.message,
    })?;
    let mut out = Vec::new();
    for d in docs.iter().filter(|d| !d.is_null()) {
        let v = d
            .to_patch_value(Dialect::Kyaml)
            .map_err(|e| RenderError::Yaml {
                at: offset_line(source, e.line),
                message: e.message,
            })?;
        if !v.is_object() {
            return Err(RenderError::build(
                source.clone(),
                "a strategic-merge patch must be a mapping",
            ));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(RenderError::build(source.clone(), "the patch is empty"));
    }
    Ok(out)
}

/// A `patchesStrategicMerge` entry that is patch text rather than a file name.
pub(super) fn inline_patches(entry: &str) -> Option<Vec<Value>> {
    let docs = value::parse_stream(entry).ok()?;
    let mut out = Vec::new();
    for d in docs.iter().filter(|d| !d.is_null()) {
        let v = d.to_patch_value(Dialect::Kyaml).ok()?;
        if !v.is_object() {
            return None;
        }
        out.push(v);
    }
    if out.is_empty() { None } else { Some(out) }
}

pub(super) fn patch_id(patch: &Value) -> ResId {
    let s = |path: &[&str]| -> String {
        let mut v = patch;
        for p in path {
            match v.get(p) {
                Some(x) => v = x,
                None => return String::new(),
            }
        }
        scalar_text(v)
    };
    ResId {
        gvk: crate::render::resource::Gvk::from_api_version(&s(&["apiVersion"]), &s(&["kind"])),
        namespace: s(&["metadata", "namespace"]),
        name: s(&["metadata", "name"]),
    }
}

/// Positions of resources under every name they have had (current and previous), so that
/// finding a patch's or a generator's target does not scan every resource.
type NameIndex = HashMap<String, Vec<usize>>;

pub(super) fn name_index(ra: &[Resource]) -> NameIndex {
    let mut index = NameIndex::new();
    for (i, r) in ra.iter().enumerate() {
        index_add(&mut index, r, i);
    }
    index
}

pub(super) fn index_add(index: &mut NameIndex, r: &Resource, i: usize) {
    let mut names: Vec<&str> = r.prev_ids.iter().map(|p| p.name.as_str()).collect();
    names.push(r.name());
    names.sort_unstable();
    names.dedup();
    for n in names {
        index.entry(n.to_string()).or_default().push(i);
    }
}

/// Resources (by position) whose current or previous identity equals `id`.
pub(super) fn matching(ra: &[Resource], index: &NameIndex, id: &ResId) -> Vec<usize> {
    let mut out: Vec<usize> = index
        .get(&id.name)
        .map(|v| {
            v.iter()
                .copied()
                .filter(|&i| !ra[i].is_empty() && ra[i].matches_any_id(id))
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out.dedup();
    out
}

/// A patch without a target applies to the one resource whose current or previous identity
/// equals the patch's own.
pub(super) fn apply_untargeted(
    custom: Option<&schema::Custom>,
    ra: &mut [Resource],
    index: &mut NameIndex,
    patch: &Value,
    at: &Location,
    allow_name_change: bool,
    allow_kind_change: bool,
) -> Result<(), RenderError> {
    let id = patch_id(patch);
    let matches = matching(ra, index, &id);
    match matches.as_slice() {
        [i] => {
            apply_smp(
                custom,
                &mut ra[*i],
                patch,
                at,
                allow_name_change,
                allow_kind_change,
            )?;
            if allow_name_change {
                index_add(index, &ra[*i], *i);
            }
            Ok(())
        }
        [] => Err(RenderError::build(
            at.clone(),
            format!(
                "the patch targets {id}, which is not among the resources; check its apiVersion, kind, name and namespace"
            ),
        )),
        _ => Err(RenderError::build(
            at.clone(),
            format!("the patch matches several resources with id {id}; add a target"),
        )),
    }
}

pub(super) fn apply_smp(
    custom: Option<&schema::Custom>,
    r: &mut Resource,
    patch: &Value,
    at: &Location,
    allow_name_change: bool,
    allow_kind_change: bool,
) -> Result<(), RenderError> {
    let mut patch = patch.clone();
    if let Value::Object(m) = &mut patch
        && m.contains_key("apiVersion")
    {
        m.insert(
            "apiVersion".into(),
            Value::String(r.api_version().to_string()),
        );
    }
    if allow_name_change || allow_kind_change {
        r.store_previous_id();
    }
    let (name, ns, kind) = (
        r.name().to_string(),
        r.namespace().to_string(),
        r.kind().to_string(),
    );
    let root = match custom {
        None => merge::Root::Builtin(schema::for_resource(&r.gvk())),
        Some(c) => merge::Root::Custom(c.for_resource(r.api_version(), r.kind()).map(|s| (c, s))),
    };
    let merged = merge::strategic_merge(&r.value, &patch, root).map_err(|e| {
        RenderError::build(
            at.clone(),
            format!("patching {} (from {}): {e}", r.cur_id(), r.origin),
        )
    })?;
    match merged {
        None => r.value = Value::Object(Map::new()),
        Some(v) => {
            r.value = v;
            if !allow_kind_change {
                r.set_kind(&kind);
            }
            if !allow_name_change {
                r.set_name(name);
            }
            r.set_namespace(&ns);
        }
    }
    Ok(())
}

/// Add resources, refusing a second object with the same identity.
pub(super) fn append_all(
    ra: &mut Vec<Resource>,
    index: &mut NameIndex,
    more: Vec<Resource>,
    at: &Location,
) -> Result<(), RenderError> {
    for r in more {
        let id = r.cur_id();
        let existing = index.get(&id.name).and_then(|v| {
            v.iter()
                .map(|&i| &ra[i])
                .find(|x| x.name() == id.name && !x.is_empty() && x.cur_id().equals(&id))
        });
        if let Some(existing) = existing {
            return Err(RenderError::build(
                at.clone(),
                format!(
                    "{id} is defined twice (in {} and {}); kustomize refuses duplicate objects — rename one or add a namePrefix to one base",
                    existing.origin, r.origin
                ),
            ));
        }
        index_add(index, &r, ra.len());
        ra.push(r);
    }
    Ok(())
}

/// Add a generated resource: create it, or merge/replace the existing one of the same id.
pub(super) fn absorb(
    ra: &mut Vec<Resource>,
    index: &mut NameIndex,
    mut new: Resource,
) -> Result<(), RenderError> {
    let id = new.cur_id();
    let behavior = match new.behavior.unwrap_or_default() {
        Behavior::Unspecified => Behavior::Create,
        b => b,
    };
    let matches = matching(ra, index, &id);
    match (matches.as_slice(), behavior) {
        ([], Behavior::Create) => {
            let at = new.origin.clone();
            append_all(ra, index, vec![new], &at)
        }
        ([], _) => Err(RenderError::build(
            new.origin.clone(),
            format!(
                "{id} does not exist, so it cannot be merged or replaced; use behavior: create or fix the name"
            ),
        )),
        ([_], Behavior::Create) => Err(RenderError::build(
            new.origin.clone(),
            format!("{id} already exists; use behavior: merge or replace to change it"),
        )),
        ([i], _) => {
            let old = &ra[*i];
            let mut labels = old.labels();
            labels.extend(new.labels());
            let mut annotations = old.annotations();
            annotations.extend(new.annotations());
            new.set_string_map("labels", labels);
            new.set_string_map("annotations", annotations);
            new.set_name(old.name().to_string());
            new.set_namespace(old.namespace());
            new.prev_ids = old.prev_ids.clone();
            new.prefixes = old.prefixes.clone();
            new.suffixes = old.suffixes.clone();
            new.needs_hash = old.needs_hash && new.needs_hash;
            if behavior == Behavior::Merge {
                for field in ["data", "binaryData"] {
                    let mut merged: Map<String, Value> = match old.value.get(field) {
                        Some(Value::Object(m)) => m
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::String(scalar_text(v))))
                            .collect(),
                        _ => Map::new(),
                    };
                    if let Some(Value::Object(m)) = new.value.get(field) {
                        for (k, v) in m {
                            merged.insert(k.clone(), Value::String(scalar_text(v)));
                        }
                    }
                    if !merged.is_empty() {
                        crate::render::resource::object_mut(&mut new.value)
                            .insert(field.to_string(), Value::Object(merged));
                    }
                }
            }
            new.behavior = old.behavior;
            ra[*i] = new;
            Ok(())
        }
        (_, _) => Err(RenderError::build(
            new.origin.clone(),
            format!("several objects could accept the merge of {id}"),
        )),
    }
}
