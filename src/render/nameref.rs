//! Name references: after prefixes, suffixes, namespaces and content hashes have renamed
//! objects, rewrite the fields that refer to them (a Deployment's `configMapRef`, a
//! RoleBinding's `roleRef` and `subjects`, an Ingress backend, ...). Follows kustomize's
//! `nameref` filter: a referral target is found among objects whose *previous* names include
//! the referenced name, narrowed by type, namespace, and finally by matching prefix/suffix
//! history when several candidates remain (diamond-shaped overlays).

use serde_json::{Map, Value};

use super::error::RenderError;
use super::fieldspec::{self, BackRef, Create};
use super::kustomization::FieldSpec;
use super::resource::{CLUSTER_SCOPE, Gvk, Resource};

/// Snapshot of a possible referral target.
struct Candidate {
    index: usize,
    prev_names: Vec<String>,
    /// GVKs of previous identities.
    prev_gvks: Vec<Gvk>,
    prev_namespaces: Vec<String>,
    name: String,
    namespace: String,
    effective_ns: String,
    cluster_scoped: bool,
    kind: String,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let diff = long.len() - short.len();
    if short.is_empty() {
        return diff == 0;
    }
    short.iter().enumerate().all(|(i, s)| &long[i + diff] == s)
}

/// A referrer field spec with its rule and its path split.
type KindSpec<'a> = (&'a BackRef, &'a FieldSpec, Vec<String>);

/// Fix every name reference in `resources`, with kustomize's table plus `extra` rules (from
/// `configurations`).
pub fn fix(resources: &mut [Resource], extra: &[BackRef]) -> Result<(), RenderError> {
    let candidates: Vec<Candidate> = resources
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let id = r.cur_id();
            let prev = r.prev_res_ids();
            Candidate {
                index,
                prev_names: prev.iter().map(|p| p.name.clone()).collect(),
                prev_gvks: prev.iter().map(|p| p.gvk.clone()).collect(),
                prev_namespaces: r.prev_ids.iter().map(|p| p.namespace.clone()).collect(),
                name: id.name.clone(),
                namespace: id.namespace.clone(),
                effective_ns: id.effective_namespace().to_string(),
                cluster_scoped: id.gvk.is_cluster_scoped(),
                kind: id.gvk.kind.clone(),
                prefixes: r.prefixes.clone(),
                suffixes: r.suffixes.clone(),
            }
        })
        .collect();
    if candidates.iter().all(|c| c.prev_names.is_empty()) {
        return Ok(());
    }
    let rules: Vec<&BackRef> = fieldspec::name_references().iter().chain(extra).collect();
    // Referrer specs by kind (every spec in kustomize's table names one), paths pre-split.
    let mut by_kind: std::collections::HashMap<&str, Vec<KindSpec<'_>>> =
        std::collections::HashMap::new();
    for rule in rules.iter().copied() {
        for spec in &rule.referrers {
            by_kind.entry(spec.kind.as_str()).or_default().push((
                rule,
                spec,
                fieldspec::split_path(&spec.path),
            ));
        }
    }
    for i in 0..resources.len() {
        let org_gvk = resources[i].org_id().gvk;
        let Some(specs) = by_kind.get(org_gvk.kind.as_str()) else {
            continue;
        };
        let mut applicable: Vec<(&BackRef, &FieldSpec)> = Vec::new();
        for (rule, spec, path) in specs {
            if org_gvk.is_selected_by(&spec.group, &spec.version, &spec.kind)
                && fieldspec::has_field_split(&resources[i].value, path)
            {
                applicable.push((rule, spec));
            }
        }
        if applicable.is_empty() {
            continue;
        }
        let referrer = Referrer::of(&resources[i]);
        let visible: Vec<&Candidate> = candidates.iter().filter(|c| referrer.can_see(c)).collect();
        for (rule, spec) in applicable {
            let target = Gvk {
                group: rule.group.clone(),
                version: rule.version.clone(),
                kind: rule.kind.clone(),
            };
            let ctx = Ctx {
                referrer: &referrer,
                spec,
                target: &target,
                candidates: &visible,
                resources,
            };
            let mut updates: Vec<Update> = Vec::new();
            let mut probe = resources[i].value.clone();
            fieldspec::visit(&mut probe, spec, Create::Nothing, &mut |node| {
                ctx.set(node, &mut updates)
            })
            .map_err(|e| {
                RenderError::build(
                    resources[i].origin.clone(),
                    format!(
                        "updating name reference in `{}` of {}: {e}",
                        spec.path,
                        resources[i].cur_id()
                    ),
                )
            })?;
            if !updates.is_empty() {
                resources[i].value = probe;
            }
        }
    }
    Ok(())
}

/// Marker that something changed.
struct Update;

struct Referrer {
    cluster_scoped: bool,
    effective_ns: String,
    kind: String,
    role_binding_namespaces: Vec<String>,
    role_ref: Option<(String, String)>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

impl Referrer {
    fn of(r: &Resource) -> Self {
        let id = r.cur_id();
        let mut role_binding_namespaces = Vec::new();
        if id.gvk.kind == "RoleBinding"
            && let Some(Value::Array(subjects)) = r.value.get("subjects")
        {
            for s in subjects {
                if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                    && let Some(ns) = s.get("namespace").and_then(Value::as_str)
                {
                    role_binding_namespaces.push(ns.to_string());
                }
            }
        }
        let role_ref = r.value.get("roleRef").and_then(|rr| {
            Some((
                rr.get("apiGroup")?.as_str()?.to_string(),
                rr.get("kind")?.as_str()?.to_string(),
            ))
        });
        Referrer {
            cluster_scoped: id.gvk.is_cluster_scoped(),
            effective_ns: id.effective_namespace().to_string(),
            kind: id.gvk.kind,
            role_binding_namespaces,
            role_ref,
            prefixes: r.prefixes.clone(),
            suffixes: r.suffixes.clone(),
        }
    }

    /// kustomize's `SubsetThatCouldBeReferencedByResource`.
    fn can_see(&self, c: &Candidate) -> bool {
        self.cluster_scoped
            || c.cluster_scoped
            || c.effective_ns == self.effective_ns
            || (self.kind == "RoleBinding" && self.role_binding_namespaces.contains(&c.namespace))
    }
}

struct Ctx<'a> {
    referrer: &'a Referrer,
    spec: &'a FieldSpec,
    target: &'a Gvk,
    candidates: &'a [&'a Candidate],
    resources: &'a [Resource],
}

impl Ctx<'_> {
    fn set(&self, node: &mut Value, updates: &mut Vec<Update>) -> Result<(), String> {
        match node {
            Value::Null => Ok(()),
            Value::Object(m) => self.set_mapping(m, updates),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Object(m) => self.set_mapping(m, updates)?,
                        Value::Array(_) | Value::Null => {}
                        scalar => self.set_scalar(scalar, updates)?,
                    }
                }
                Ok(())
            }
            scalar => self.set_scalar(scalar, updates),
        }
    }

    fn set_scalar(&self, node: &mut Value, updates: &mut Vec<Update>) -> Result<(), String> {
        let old = super::resource::scalar_text(node);
        let all: Vec<&Candidate> = self.candidates.to_vec();
        let Some(c) = self.select(&old, all, false)? else {
            return Ok(());
        };
        if c.name != old {
            *node = Value::String(c.name.clone());
            updates.push(Update);
        }
        Ok(())
    }

    fn set_mapping(
        &self,
        m: &mut Map<String, Value>,
        updates: &mut Vec<Update>,
    ) -> Result<(), String> {
        let Some(name) = m.get("name") else {
            return Err("path config error; no 'name' field in node".into());
        };
        let old = super::resource::scalar_text(name);
        let candidates: Vec<&Candidate> = match m.get("namespace") {
            None => self.candidates.to_vec(),
            Some(ns) => {
                let ns = super::resource::scalar_text(ns);
                let by_original: Vec<&Candidate> = self
                    .candidates
                    .iter()
                    .copied()
                    .filter(|c| {
                        c.prev_namespaces
                            .first()
                            .map(String::as_str)
                            .unwrap_or(&c.effective_ns)
                            == ns
                            && ns != CLUSTER_SCOPE
                    })
                    .collect();
                if !by_original.is_empty() {
                    by_original
                } else {
                    self.candidates
                        .iter()
                        .copied()
                        .filter(|c| c.effective_ns == ns && !c.cluster_scoped)
                        .collect()
                }
            }
        };
        let Some(c) = self.select(&old, candidates, true)? else {
            return Ok(());
        };
        if c.name == old && c.namespace.is_empty() {
            return Ok(());
        }
        m.insert("name".into(), Value::String(c.name.clone()));
        if !c.namespace.is_empty() {
            m.insert("namespace".into(), Value::String(c.namespace.clone()));
        }
        updates.push(Update);
        Ok(())
    }

    fn select<'c>(
        &self,
        old: &str,
        candidates: Vec<&'c Candidate>,
        with_ns: bool,
    ) -> Result<Option<&'c Candidate>, String> {
        let t = self.target;
        let mut c: Vec<&Candidate> = candidates
            .into_iter()
            .filter(|c| c.prev_names.iter().any(|n| n == old))
            .filter(|c| {
                c.prev_gvks
                    .iter()
                    .any(|g| g.is_selected_by(&t.group, &t.version, &t.kind))
            })
            .collect();
        if self.spec.path.ends_with("roleRef/name")
            && let Some((group, kind)) = &self.referrer.role_ref
        {
            c.retain(|c| {
                c.prev_gvks
                    .iter()
                    .any(|g| g.is_selected_by(group, "", kind))
            });
        }
        if !self.referrer.cluster_scoped {
            c.retain(|c| {
                c.cluster_scoped
                    || c.kind == "ServiceAccount"
                    || c.effective_ns == self.referrer.effective_ns
            });
        }
        if c.len() == 1 {
            return Ok(Some(c[0]));
        }
        c.retain(|c| {
            same_ending(&c.prefixes, &self.referrer.prefixes)
                && same_ending(&c.suffixes, &self.referrer.suffixes)
        });
        match c.len() {
            0 => Ok(None),
            1 => Ok(Some(c[0])),
            _ => {
                let first = c[0];
                let identical = c
                    .iter()
                    .all(|x| x.name == first.name && (!with_ns || x.namespace == first.namespace));
                if identical {
                    Ok(Some(first))
                } else {
                    let ids: Vec<String> = c
                        .iter()
                        .map(|x| self.resources[x.index].cur_id().to_string())
                        .collect();
                    Err(format!(
                        "found several objects {old:?} could refer to: {}; give them distinct names or namespaces",
                        ids.join(", ")
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::error::Location;
    use serde_json::json;

    fn res(v: Value) -> Resource {
        Resource::new(v, Location::file("x.yaml"))
    }

    #[test]
    fn renamed_config_maps_are_followed_by_their_users() {
        let mut cm =
            res(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}));
        cm.store_previous_id();
        cm.set_name("cfg-abc".into());
        let deploy = res(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}],
                "volumes": [{"name": "v", "configMap": {"name": "cfg"}}, {"name": "w", "configMap": {"name": "other"}}]
            }}}}),
        );
        let mut all = vec![cm, deploy];
        fix(&mut all, &[]).unwrap();
        let spec = &all[1].value["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"][0]["envFrom"][0]["configMapRef"]["name"],
            "cfg-abc"
        );
        assert_eq!(spec["volumes"][0]["configMap"]["name"], "cfg-abc");
        assert_eq!(spec["volumes"][1]["configMap"]["name"], "other");
    }

    #[test]
    fn service_account_subjects_get_name_and_namespace() {
        let mut sa =
            res(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}));
        sa.store_previous_id();
        sa.set_name("p-sa".into());
        sa.set_namespace("team");
        let crb = res(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]}),
        );
        let mut all = vec![sa, crb];
        fix(&mut all, &[]).unwrap();
        assert_eq!(
            all[1].value["subjects"][0],
            json!({"kind": "ServiceAccount", "name": "p-sa", "namespace": "team"})
        );
    }

    #[test]
    fn endings_compare_from_the_back() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(same_ending(&s(&["a", "b", "c"]), &s(&["b", "c"])));
        assert!(!same_ending(&s(&["a", "b", "c"]), &s(&["a", "b"])));
        assert!(!same_ending(&s(&[]), &s(&["a"])));
        assert!(same_ending(&s(&[]), &s(&[])));
    }
}
