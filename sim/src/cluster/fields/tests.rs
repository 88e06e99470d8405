use super::*;

fn who(manager: &str) -> Ownership<'_> {
    Ownership {
        manager,
        api_version: "apps/v1",
        subresource: None,
        now: "2026-01-01T00:00:00Z",
        skip_status: true,
    }
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
        ]}}}
    })
}

#[test]
fn leaf_paths_key_associative_list_items_like_the_api_server() {
    let paths = leaf_paths(&deployment(1, "web:1"), true);
    let v1 = fields_v1(&paths);
    let container = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(container["."], json!({}));
    assert_eq!(container["f:image"], json!({}));
    assert!(container["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["."].is_object());
    assert!(v1["f:metadata"].get("f:name").is_none(), "{v1}");
}

#[test]
fn fields_v1_round_trips_through_managed_fields() {
    let mut obj = deployment(1, "web:1");
    let merged = apply(None, &obj, false, &who("baton")).unwrap();
    let managers = managers_of(&merged);
    assert_eq!(managers.len(), 1);
    assert_eq!(managers[0].fields, leaf_paths(&obj, true));
    obj["metadata"]["managedFields"] = merged["metadata"]["managedFields"].clone();
    assert_eq!(managers_of(&obj), managers);
}

#[test]
fn apply_conflicts_with_another_manager_changing_its_field_unless_forced() {
    let live = apply(None, &deployment(1, "web:1"), false, &who("baton")).unwrap();
    let mut edit = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let err = apply(Some(&live), &edit, false, &who("kubectl")).unwrap_err();
    assert_eq!(
        err,
        vec![Conflict {
            manager: "\"baton\"".into(),
            path: Path(vec![
                Elem::Field("spec".into()),
                Elem::Field("replicas".into())
            ])
        }]
    );
    assert_eq!(
        conflict_message(&err),
        "Apply failed with 1 conflict: conflict with \"baton\": .spec.replicas"
    );

    // Same value: shared ownership, no conflict.
    edit["spec"]["replicas"] = json!(1);
    let shared = apply(Some(&live), &edit, false, &who("kubectl")).unwrap();
    assert_eq!(managers_of(&shared).len(), 2);

    edit["spec"]["replicas"] = json!(3);
    let forced = apply(Some(&live), &edit, true, &who("kubectl")).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let baton = managers_of(&forced)
        .into_iter()
        .find(|m| m.manager == "baton")
        .unwrap();
    assert!(
        !baton
            .fields
            .iter()
            .any(|p| p.to_string() == ".spec.replicas")
    );
}

#[test]
fn apply_removes_fields_the_manager_stopped_applying_unless_others_own_them() {
    let mut first = deployment(1, "web:1");
    first["metadata"]["labels"]["tier"] = json!("front");
    let live = apply(None, &first, false, &who("baton")).unwrap();
    let second = deployment(1, "web:2");
    let next = apply(Some(&live), &second, false, &who("baton")).unwrap();
    assert_eq!(next["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        next["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );
}

#[test]
fn apply_merges_containers_by_name() {
    let live = apply(None, &deployment(1, "web:1"), false, &who("baton")).unwrap();
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}});
    let merged = apply(Some(&live), &sidecar, false, &who("mesh")).unwrap();
    let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "proxy"]);
}

#[test]
fn update_takes_changed_fields_from_appliers_without_conflict() {
    let live = apply(None, &deployment(1, "web:1"), false, &who("baton")).unwrap();
    let mut edited = live.clone();
    edited["spec"]["replicas"] = json!(5);
    record_update(Some(&live), &mut edited, &who("kubectl-edit"));
    let managers = managers_of(&edited);
    let editor = managers
        .iter()
        .find(|m| m.manager == "kubectl-edit")
        .unwrap();
    assert_eq!(editor.operation, "Update");
    assert_eq!(
        editor
            .fields
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [".spec.replicas"]
    );
    // Now baton re-applying replicas: 1 conflicts with the updater, named with its API version.
    let err = apply(Some(&edited), &deployment(1, "web:1"), false, &who("baton")).unwrap_err();
    assert_eq!(err[0].manager, "\"kubectl-edit\" using apps/v1");
}

#[test]
fn multiple_conflicts_are_listed_per_manager() {
    let conflicts = vec![
        Conflict {
            manager: "\"a\"".into(),
            path: Path(vec![Elem::Field("x".into())]),
        },
        Conflict {
            manager: "\"a\"".into(),
            path: Path(vec![Elem::Field("y".into())]),
        },
    ];
    assert_eq!(
        conflict_message(&conflicts),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .x\n- .y"
    );
}

#[test]
fn merge_patch_follows_rfc_7386() {
    let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
    assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
}

#[test]
fn strategic_merge_patch_merges_containers_by_name_and_deletes_by_directive() {
    let mut doc =
        json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
    strategic_merge_patch(
        &mut doc,
        &json!({"spec": {"containers": [
            {"name": "a", "image": "2"}, {"name": "b", "$patch": "delete"}],
            "$setElementOrder/containers": [{"name": "a"}]}}),
    );
    assert_eq!(
        doc,
        json!({"spec": {"containers": [{"name": "a", "image": "2"}]}})
    );
}

#[test]
fn json_patch_applies_operations_in_order() {
    let mut doc = json!({"a": [1, 2], "b": {"c": 1}});
    json_patch(
        &mut doc,
        &json!([
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "replace", "path": "/b/c", "value": 2},
            {"op": "remove", "path": "/a/0"},
            {"op": "test", "path": "/b/c", "value": 2}
        ]),
    )
    .unwrap();
    assert_eq!(doc, json!({"a": [2, 3], "b": {"c": 2}}));
    assert!(
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/b/c", "value": 9}])
        )
        .is_err()
    );
}
