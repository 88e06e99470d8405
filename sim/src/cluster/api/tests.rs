use super::*;

#[test]
fn paths_parse_into_namespaced_and_cluster_scoped_requests() {
    let Target::Resource(r) = parse_path("/apis/apps/v1/namespaces/shop/deployments/web/status")
    else {
        panic!()
    };
    assert_eq!(
        (
            r.group.as_str(),
            r.namespace.as_deref(),
            r.plural.as_str(),
            r.name.as_deref(),
            r.sub.as_deref()
        ),
        (
            "apps",
            Some("shop"),
            "deployments",
            Some("web"),
            Some("status")
        )
    );
    let Target::Resource(r) = parse_path("/api/v1/namespaces/shop") else {
        panic!()
    };
    assert_eq!(
        (r.plural.as_str(), r.name.as_deref()),
        ("namespaces", Some("shop"))
    );
    let Target::Resource(r) = parse_path("/api/v1/namespaces/shop/status") else {
        panic!()
    };
    assert_eq!(
        (r.plural.as_str(), r.name.as_deref(), r.sub.as_deref()),
        ("namespaces", Some("shop"), Some("status"))
    );
    assert!(
        matches!(parse_path("/apis/apps/v1"), Target::GroupVersion(g, v) if g == "apps" && v == "v1")
    );
    assert!(matches!(parse_path("/healthz"), Target::NotFound));
}

#[test]
fn pagination_continues_after_the_last_key() {
    let items: Vec<Value> = (0..5)
        .map(|i| json!({"metadata": {"namespace": "a", "name": format!("n{i}")}}))
        .collect();
    let mut params = Params::new();
    params.insert("limit".into(), "2".into());
    let (page, cont, remaining) = paginate(items.clone(), &params).unwrap();
    assert_eq!((page.len(), remaining), (2, 3));
    params.insert("continue".into(), cont.unwrap());
    let (page, _, _) = paginate(items, &params).unwrap();
    assert_eq!(page[0]["metadata"]["name"], "n2");
}
