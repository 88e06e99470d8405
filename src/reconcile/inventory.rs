//! The inventory: which objects an environment applied, kept in the cluster (a ConfigMap per
//! environment in the bot's namespace, like Flux's), so that what Git no longer renders can be
//! pruned after a restart, and so that a new bot replica knows the same.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::context::Context;
use super::error::ReconcileError;
use super::object::ObjectId;
use super::order::apply_order;

/// Key of the object list in the ConfigMap's data.
const KEY: &str = "objects";

/// Objects an environment applied, with the API version each was applied with (needed to
/// address it when pruning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub objects: BTreeMap<ObjectId, String>,
}

impl Inventory {
    /// `baton-inventory-<env>`.
    pub fn name(env: &str) -> String {
        format!("baton-inventory-{env}")
    }

    /// One object a line: `<namespace>_<name>_<group>_<kind> <apiVersion>`, sorted.
    pub fn render(&self) -> String {
        self.objects
            .iter()
            .map(|(id, v)| format!("{} {v}\n", id.to_inventory()))
            .collect()
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut objects = BTreeMap::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let parsed = line
                .split_once(' ')
                .and_then(|(id, v)| Some((ObjectId::from_inventory(id)?, v.trim())))
                .filter(|(_, v)| !v.is_empty());
            let (id, version) = parsed.ok_or_else(|| format!("line {}: {line:?}", n + 1))?;
            objects.insert(id, version.to_string());
        }
        Ok(Self { objects })
    }

    pub fn ids(&self) -> BTreeSet<ObjectId> {
        self.objects.keys().cloned().collect()
    }

    /// Objects in this inventory that `desired` no longer has, in reverse apply order
    /// (workloads before the namespaces that hold them), with their API versions.
    pub fn removed(&self, desired: &BTreeSet<ObjectId>) -> Vec<(ObjectId, String)> {
        let mut out: Vec<(ObjectId, String)> = self
            .objects
            .iter()
            .filter(|(id, _)| !desired.contains(*id))
            .map(|(id, v)| (id.clone(), v.clone()))
            .collect();
        out.sort_by(|(a, _), (b, _)| apply_order(b).cmp(&apply_order(a)));
        out
    }
}

fn inventory_error(ctx: &Context, env: &str, message: String) -> ReconcileError {
    ReconcileError::Inventory {
        namespace: ctx.options.namespace.clone(),
        name: Inventory::name(env),
        message,
    }
}

fn api_error(action: &'static str, object: String, source: kube::Error) -> ReconcileError {
    ReconcileError::Api {
        action,
        object,
        source,
    }
}

/// Read an environment's inventory; `None` when it has none yet.
pub async fn load(ctx: &Context, env: &str) -> Result<Option<Inventory>, ReconcileError> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.options.namespace);
    let name = Inventory::name(env);
    let found = super::retrying(ctx, || api.get_opt(&name))
        .await
        .map_err(|e| {
            api_error(
                "reading inventory",
                format!("ConfigMap/{}/{name}", ctx.options.namespace),
                e,
            )
        })?;
    let Some(cm) = found else { return Ok(None) };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(KEY))
        .map(String::as_str)
        .unwrap_or("");
    Inventory::parse(text)
        .map(Some)
        .map_err(|m| inventory_error(ctx, env, format!("unreadable entry at {m}")))
}

/// Write an environment's inventory (creating the bot's namespace if it is missing).
pub async fn save(ctx: &Context, env: &str, inventory: &Inventory) -> Result<(), ReconcileError> {
    let ns = &ctx.options.namespace;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let name = Inventory::name(env);
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "baton", "baton.dev/inventory-of": env},
        },
        "data": {KEY: inventory.render()},
    });
    let params = PatchParams::apply(&ctx.options.field_manager).force();
    let object = format!("ConfigMap/{ns}/{name}");
    let patch = Patch::Apply(&cm);
    let write = || api.patch(&name, &params, &patch);
    match super::retrying(ctx, write).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
            let namespace =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let patch = Patch::Apply(&namespace);
            super::retrying(ctx, || namespaces.patch(ns, &params, &patch))
                .await
                .map_err(|e| {
                    api_error(
                        "creating the inventory namespace",
                        format!("Namespace/{ns}"),
                        e,
                    )
                })?;
            super::retrying(ctx, write)
                .await
                .map(|_| ())
                .map_err(|e| api_error("writing inventory", object, e))
        }
        Err(e) => Err(api_error("writing inventory", object, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(group: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjectId {
        ObjectId {
            group: group.into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
        }
    }

    #[test]
    fn the_inventory_round_trips_through_its_text_form() {
        let mut inv = Inventory::default();
        inv.objects
            .insert(id("apps", "Deployment", Some("shop"), "web"), "v1".into());
        inv.objects
            .insert(id("", "Namespace", None, "shop"), "v1".into());
        let text = inv.render();
        assert_eq!(text, "_shop__Namespace v1\nshop_web_apps_Deployment v1\n");
        assert_eq!(Inventory::parse(&text).unwrap(), inv);
        assert_eq!(
            Inventory::parse("garbage\n").unwrap_err(),
            "line 1: \"garbage\""
        );
    }

    #[test]
    fn rbac_names_with_underscores_dots_and_colons_round_trip() {
        let mut inv = Inventory::default();
        inv.objects.insert(
            id(
                "rbac.authorization.k8s.io",
                "Role",
                Some("shop"),
                "system:reader_x.y",
            ),
            "v1".into(),
        );
        inv.objects.insert(
            id("rbac.authorization.k8s.io", "ClusterRole", None, "a_b_c"),
            "v1".into(),
        );
        let text = inv.render();
        assert_eq!(
            text,
            "_a_b_c_rbac.authorization.k8s.io_ClusterRole v1\nshop_system:reader_x.y_rbac.authorization.k8s.io_Role v1\n"
        );
        assert_eq!(Inventory::parse(&text).unwrap(), inv);
        assert!(Inventory::parse("a_b_c v1\n").is_err());
    }

    #[test]
    fn removed_objects_come_workloads_first_namespaces_last() {
        let mut inv = Inventory::default();
        for (g, k, ns, n) in [
            ("", "Namespace", None, "old"),
            ("", "ConfigMap", Some("old"), "cfg"),
            ("apps", "Deployment", Some("old"), "web"),
            ("apps", "Deployment", Some("shop"), "kept"),
        ] {
            inv.objects.insert(id(g, k, ns, n), "v1".into());
        }
        let desired = BTreeSet::from([id("apps", "Deployment", Some("shop"), "kept")]);
        let removed: Vec<String> = inv
            .removed(&desired)
            .iter()
            .map(|(i, _)| i.to_string())
            .collect();
        assert_eq!(
            removed,
            ["Deployment/old/web", "ConfigMap/old/cfg", "Namespace/old"]
        );
    }
}
