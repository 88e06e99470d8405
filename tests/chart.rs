//! `charts/baton`, rendered without helm: a minimal Go-template renderer (the subset the
//! chart keeps to) renders every template with the default values and with overrides, and
//! the objects are checked structurally — YAML parses, the expected kinds exist, replicas,
//! probes, RBAC rules, the ServiceMonitor only when enabled, secrets referenced and never
//! inlined, and the ConfigMap's `baton.yaml` loads as baton's runtime config.
//!
//! The subset: `{{ pipeline }}` and `{{- … -}}` trimming; `if`/`else`/`end`, `range` over a
//! list (with `.` and `$`); operands `.Values.a.b`, `.`, `$.x`, string/number/bool literals;
//! functions `eq ne not and or default quote toYaml nindent indent`; `|` pipes. Anything else
//! is a test failure, which keeps the chart within it.

use std::path::Path;

use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// The renderer.

#[derive(Debug)]
enum Node {
    Text(String),
    Output(String),
    If(String, Vec<Node>, Vec<Node>),
    Range(String, Vec<Node>),
}

/// Split into text and actions, applying `{{-` / `-}}` whitespace trimming.
fn lex(src: &str) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").expect("unclosed {{");
        let mut body = &after[..end];
        if let Some(b) = body.strip_prefix('-') {
            text = text.trim_end().to_string();
            body = b;
        }
        trim_next = false;
        if let Some(b) = body.strip_suffix('-') {
            trim_next = true;
            body = b;
        }
        out.push((false, text));
        out.push((true, body.trim().to_string()));
        rest = &after[end + 2..];
    }
    let mut text = rest.to_string();
    if trim_next {
        text = text.trim_start().to_string();
    }
    out.push((false, text));
    out
}

fn parse(tokens: &mut std::vec::IntoIter<(bool, String)>, until_end: bool) -> (Vec<Node>, String) {
    let mut nodes = Vec::new();
    while let Some((action, s)) = tokens.next() {
        if !action {
            nodes.push(Node::Text(s));
            continue;
        }
        if s == "end" || s == "else" {
            assert!(until_end, "unexpected {{{{ {s} }}}}");
            return (nodes, s);
        }
        if let Some(cond) = s.strip_prefix("if ") {
            let (then, stop) = parse(tokens, true);
            let otherwise = if stop == "else" {
                let (e, stop) = parse(tokens, true);
                assert_eq!(stop, "end", "else must be followed by end");
                e
            } else {
                Vec::new()
            };
            nodes.push(Node::If(cond.trim().to_string(), then, otherwise));
        } else if let Some(list) = s.strip_prefix("range ") {
            let (body, stop) = parse(tokens, true);
            assert_eq!(stop, "end", "range … else is not in the subset");
            nodes.push(Node::Range(list.trim().to_string(), body));
        } else {
            assert!(
                !s.starts_with("/*")
                    && !["with ", "define ", "template ", "block "]
                        .iter()
                        .any(|k| s.starts_with(k))
                    && !s.contains(":="),
                "{{{{ {s} }}}} is outside the template subset the chart keeps to"
            );
            nodes.push(Node::Output(s));
        }
    }
    assert!(!until_end, "missing {{{{ end }}}}");
    (nodes, String::new())
}

/// Split on `sep` outside quotes and parentheses.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0, false);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                continue;
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && !quoted && depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn lookup(mut v: &Value, path: &str) -> Value {
    for key in path.split('.').filter(|k| !k.is_empty()) {
        match v.get(key) {
            Some(next) => v = next,
            None => return Value::Null,
        }
    }
    v.clone()
}

fn text_of(v: &Value, what: &str) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("{what} is {other}, which does not print as text"),
    }
}

fn to_yaml(v: &Value) -> String {
    yaml_serde::to_string(v).unwrap().trim_end().to_string()
}

fn indent(n: usize, s: &str) -> String {
    let pad = " ".repeat(n);
    s.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Scope<'a> {
    root: &'a Value,
    dot: &'a Value,
}

fn operand(tok: &str, scope: &Scope<'_>) -> Value {
    if let Some(inner) = tok.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        return pipeline(inner, scope);
    }
    if tok.starts_with('"') {
        return Value::String(serde_json::from_str(tok).expect("a Go string literal"));
    }
    if tok == "." {
        return scope.dot.clone();
    }
    if let Some(path) = tok.strip_prefix('.') {
        return lookup(scope.dot, path);
    }
    if let Some(path) = tok.strip_prefix('$') {
        return lookup(scope.root, path);
    }
    if let Ok(v) = serde_json::from_str::<Value>(tok)
        && (v.is_number() || v.is_boolean())
    {
        return v;
    }
    panic!("operand {tok:?} is outside the template subset")
}

fn call(name: &str, args: Vec<Value>) -> Value {
    let n = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    match (name, args.len()) {
        ("eq", 2) => json!(n(0) == n(1)),
        ("ne", 2) => json!(n(0) != n(1)),
        ("not", 1) => json!(!truthy(&n(0))),
        ("and", _) => args
            .iter()
            .find(|a| !truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        ("or", _) => args
            .iter()
            .find(|a| truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        ("default", 2) => {
            if truthy(&n(1)) {
                n(1)
            } else {
                n(0)
            }
        }
        ("quote", 1) => {
            Value::String(serde_json::to_string(&text_of(&n(0), "quote's argument")).unwrap())
        }
        ("toYaml", 1) => Value::String(to_yaml(&n(0))),
        ("nindent", 2) => Value::String(format!(
            "\n{}",
            indent(
                n(0).as_u64().unwrap() as usize,
                &text_of(&n(1), "nindent's argument")
            )
        )),
        ("indent", 2) => Value::String(indent(
            n(0).as_u64().unwrap() as usize,
            &text_of(&n(1), "indent's argument"),
        )),
        _ => panic!(
            "function {name} with {} argument(s) is outside the template subset",
            args.len()
        ),
    }
}

fn is_function(tok: &str) -> bool {
    tok.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && tok != "true" && tok != "false"
}

fn pipeline(src: &str, scope: &Scope<'_>) -> Value {
    let mut acc: Option<Value> = None;
    for cmd in split_top(src, '|') {
        let toks = split_top(&cmd, ' ');
        let value = if is_function(&toks[0]) {
            let mut args: Vec<Value> = toks[1..].iter().map(|t| operand(t, scope)).collect();
            args.extend(acc.take());
            call(&toks[0], args)
        } else {
            assert!(acc.is_none() && toks.len() == 1, "bad command {cmd:?}");
            operand(&toks[0], scope)
        };
        acc = Some(value);
    }
    acc.expect("empty action")
}

fn exec(nodes: &[Node], scope: &Scope<'_>, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Output(p) => {
                let v = pipeline(p, scope);
                assert!(
                    !v.is_null(),
                    "{{{{ {p} }}}} has no value (a typo in the template?)"
                );
                out.push_str(&text_of(&v, p));
            }
            Node::If(cond, then, otherwise) => {
                let branch = if truthy(&pipeline(cond, scope)) {
                    then
                } else {
                    otherwise
                };
                exec(branch, scope, out);
            }
            Node::Range(list, body) => {
                let v = pipeline(list, scope);
                for item in v.as_array().map(Vec::as_slice).unwrap_or_default() {
                    exec(
                        body,
                        &Scope {
                            root: scope.root,
                            dot: item,
                        },
                        out,
                    );
                }
            }
        }
    }
}

fn render_template(src: &str, root: &Value) -> String {
    let (nodes, _) = parse(&mut lex(src).into_iter(), false);
    let mut out = String::new();
    exec(&nodes, &Scope { root, dot: root }, &mut out);
    out
}

/// Helm's value merge: maps merge key by key, anything else replaces.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn chart_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/charts/baton"))
}

fn yaml_file(path: &Path) -> Value {
    yaml_serde::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every object the chart renders with `overrides` over values.yaml.
fn render_chart(release: &str, namespace: &str, overrides: Value) -> Vec<Value> {
    let chart = yaml_file(&chart_dir().join("Chart.yaml"));
    let mut values = yaml_file(&chart_dir().join("values.yaml"));
    merge(&mut values, &overrides);
    let root = json!({
        "Values": values,
        "Release": { "Name": release, "Namespace": namespace },
        "Chart": { "Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"] },
    });
    let mut files: Vec<_> = std::fs::read_dir(chart_dir().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut objects = Vec::new();
    for file in files {
        let text = render_template(&std::fs::read_to_string(&file).unwrap(), &root);
        for doc in text.split("\n---\n") {
            let doc = doc.strip_prefix("---\n").unwrap_or(doc);
            let v: Value = yaml_serde::from_str(doc)
                .unwrap_or_else(|e| panic!("{} renders invalid YAML: {e}\n{doc}", file.display()));
            if !v.is_null() {
                assert!(
                    v["apiVersion"].is_string()
                        && v["kind"].is_string()
                        && v["metadata"]["name"].is_string(),
                    "{}: an object needs apiVersion, kind and metadata.name:\n{doc}",
                    file.display()
                );
                objects.push(v);
            }
        }
    }
    objects
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} among {:?}", kinds(objects)))
}

fn container(objects: &[Value], release: &str) -> Value {
    find(objects, "Deployment", release)["spec"]["template"]["spec"]["containers"][0].clone()
}

fn env_var(container: &Value, name: &str) -> Option<Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

fn runtime_config(objects: &[Value], release: &str) -> baton::config::RuntimeConfig {
    let cm = find(objects, "ConfigMap", &format!("{release}-config"));
    let text = cm["data"]["baton.yaml"].as_str().unwrap();
    baton::config::RuntimeConfig::parse("baton.yaml", text, std::iter::empty())
        .unwrap_or_else(|e| panic!("the ConfigMap's baton.yaml does not load: {e}\n{text}"))
}

/// Checks that hold for any values.
fn common_checks(objects: &[Value], release: &str, namespace: &str) {
    let deploy = find(objects, "Deployment", release);
    let pod = &deploy["spec"]["template"]["spec"];
    let c = container(objects, release);
    // Probes on the named port the container exposes.
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );
    // Non-root, no escalation, read-only root.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        c["args"],
        json!(["run", "--config", "/etc/baton/baton.yaml"])
    );
    // Selector, pod labels and Service agree.
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    for (k, v) in deploy["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[k], v, "selector label {k}");
    }
    let svc = find(objects, "Service", release);
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "service selector label {k}");
    }
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    // The config volume is the chart's ConfigMap, mounted where args point.
    let config_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap();
    assert_eq!(
        config_volume["configMap"]["name"],
        format!("{release}-config")
    );
    // Leader election: the Lease lives in the release namespace, which the self Role covers.
    let role = find(objects, "Role", &format!("{release}-self"));
    assert_eq!(role["metadata"]["namespace"], namespace);
    let rules = role["rules"].as_array().unwrap();
    let lease = rules
        .iter()
        .find(|r| r["resources"] == json!(["leases"]))
        .expect("a rule for leases");
    assert_eq!(lease["apiGroups"], json!(["coordination.k8s.io"]));
    for verb in ["get", "create", "update"] {
        assert!(lease["verbs"].as_array().unwrap().contains(&json!(verb)));
    }
    assert!(
        rules
            .iter()
            .any(|r| r["resources"] == json!(["configmaps"])),
        "inventory"
    );
    let binding = find(objects, "RoleBinding", &format!("{release}-self"));
    assert_eq!(binding["roleRef"]["name"], format!("{release}-self"));
    assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
    assert_eq!(binding["subjects"][0]["namespace"], namespace);
    // Secrets are referenced, never inlined.
    assert!(!kinds(objects).contains(&"Secret".to_string()));
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        if ["TOKEN", "SECRET", "KEY", "PASSWORD"]
            .iter()
            .any(|w| name.contains(w))
        {
            assert!(e.get("value").is_none(), "{name} is inlined: {e}");
            assert!(
                e["valueFrom"]["secretKeyRef"]["name"].is_string(),
                "{name}: {e}"
            );
        }
    }
    for o in objects {
        assert!(
            o["metadata"]["namespace"].is_null()
                || o["kind"] == "Role"
                || o["kind"] == "RoleBinding"
                || o["metadata"]["namespace"] == namespace,
            "{} {} is outside the release namespace",
            o["kind"],
            o["metadata"]["name"]
        );
    }
}

#[test]
fn default_values_render_an_ha_deployment_with_cluster_wide_rbac_and_no_service_monitor() {
    let objects = render_chart("baton", "baton-system", json!({}));
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    common_checks(&objects, "baton", "baton-system");
    let deploy = find(&objects, "Deployment", "baton");
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate");
    let c = container(&objects, "baton");
    assert_eq!(
        c["image"], "ghcr.io/baton-dev/baton:0.1.0",
        "tag defaults to appVersion"
    );
    assert_eq!(
        env_var(&c, "BATON_LEADER_ELECTION").unwrap()["value"],
        "true"
    );
    assert_eq!(
        env_var(&c, "BATON_LEASE_NAME").unwrap()["value"],
        "baton-leader"
    );
    assert_eq!(
        env_var(&c, "POD_NAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert!(env_var(&c, "GITHUB_TOKEN").is_none());
    // Cluster-wide apply and prune, bound to the chart's service account.
    let sa = find(&objects, "ServiceAccount", "baton");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["serviceAccountName"],
        sa["metadata"]["name"]
    );
    let cr = find(&objects, "ClusterRole", "baton-baton-system");
    let verbs = cr["rules"][0]["verbs"].as_array().unwrap();
    for verb in ["get", "list", "create", "patch", "delete"] {
        assert!(verbs.contains(&json!(verb)), "{verb}");
    }
    let crb = find(&objects, "ClusterRoleBinding", "baton-baton-system");
    assert_eq!(
        crb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "baton-baton-system"})
    );
    assert_eq!(
        crb["subjects"][0],
        json!({"kind": "ServiceAccount", "name": "baton", "namespace": "baton-system"})
    );
    // The config loads, with no credentials configured.
    let cfg = runtime_config(&objects, "baton");
    assert_eq!(cfg.repo.branch, "main");
    assert_eq!(cfg.listen.port(), 8080);
    assert!(cfg.github.token.is_none() && cfg.github.webhook_secret.is_none());
    assert!(cfg.clusters.is_empty());
}

#[test]
fn overrides_give_per_namespace_rbac_secret_references_and_a_service_monitor() {
    let objects = render_chart(
        "bot",
        "ops",
        json!({
            "replicas": 3,
            "image": { "tag": "1.2.3" },
            "serviceAccount": { "create": false, "name": "existing-sa" },
            "rbac": { "scope": "namespaces", "namespaces": ["shop", "payments"] },
            "serviceMonitor": { "enabled": true, "labels": { "release": "kube-prometheus" } },
            "leaderElection": { "leaseName": "baton-lease" },
            "github": {
                "token": { "secretName": "gh-token" },
                "app": { "appId": 12, "installationId": 34, "privateKey": { "secretName": "gh-app", "key": "key.pem" } },
                "webhookSecret": { "secretName": "gh-hook", "key": "secret" }
            },
            "config": {
                "repo": { "url": "https://github.com/shop/config.git", "branch": "release" },
                "inClusterClusters": ["prod"],
                "clusters": { "staging": { "kubeconfig": "/etc/kube/staging", "context": "stg" } }
            },
            "extraEnv": [ { "name": "RUST_LOG", "value": "info" } ],
            "nodeSelector": { "kubernetes.io/os": "linux" }
        }),
    );
    assert_eq!(
        kinds(&objects),
        [
            "ConfigMap",
            "Deployment",
            "Role",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceMonitor"
        ],
        "no ServiceAccount (an existing one is named) and no ClusterRole"
    );
    common_checks(&objects, "bot", "ops");
    let deploy = find(&objects, "Deployment", "bot");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "existing-sa");
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    let c = container(&objects, "bot");
    assert_eq!(c["image"], "ghcr.io/baton-dev/baton:1.2.3");
    assert_eq!(
        env_var(&c, "BATON_LEASE_NAME").unwrap()["value"],
        "baton-lease"
    );
    assert_eq!(env_var(&c, "RUST_LOG").unwrap()["value"], "info");
    assert_eq!(
        env_var(&c, "GITHUB_TOKEN").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "gh-token", "key": "token"})
    );
    assert_eq!(
        env_var(&c, "BATON_WEBHOOK_SECRET").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "gh-hook", "key": "secret"})
    );
    // The App key is a file from its Secret, at the path the config names.
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "github-app")
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], "gh-app");
    assert_eq!(
        volume["secret"]["items"][0],
        json!({"key": "key.pem", "path": "private-key.pem"})
    );
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "github-app")
        .unwrap()
        .clone();
    let cfg = runtime_config(&objects, "bot");
    let app = cfg.github.app.as_ref().unwrap();
    assert_eq!((app.app_id, app.installation_id), (12, 34));
    assert_eq!(
        app.private_key.file.as_deref().unwrap(),
        Path::new(mount["mountPath"].as_str().unwrap()).join("private-key.pem")
    );
    assert_eq!(
        cfg.github.token.as_ref().unwrap().env.as_deref(),
        Some("GITHUB_TOKEN")
    );
    assert_eq!(
        cfg.github.webhook_secret.as_ref().unwrap().env.as_deref(),
        Some("BATON_WEBHOOK_SECRET")
    );
    assert_eq!(cfg.repo.branch, "release");
    let prod = &cfg.clusters["prod"];
    assert!(prod.in_cluster);
    assert_eq!(
        prod.namespace, "ops",
        "the in-cluster inventory lives in the release namespace"
    );
    assert_eq!(cfg.clusters["staging"].context.as_deref(), Some("stg"));
    // Apply/prune only in the listed namespaces, bound to the named service account.
    for ns in ["shop", "payments"] {
        let role = objects
            .iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("a Role in {ns}"));
        assert_eq!(role["rules"][0]["resources"], json!(["*"]));
        let binding = objects
            .iter()
            .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["namespace"] == ns)
            .unwrap();
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(
            binding["subjects"][0],
            json!({"kind": "ServiceAccount", "name": "existing-sa", "namespace": "ops"})
        );
    }
    // Every replica is scraped, followers included.
    let monitor = find(&objects, "ServiceMonitor", "bot");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let metrics = find(&objects, "Service", "bot-metrics");
    assert_eq!(metrics["spec"]["publishNotReadyAddresses"], true);
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &metrics["metadata"]["labels"][k], v,
            "ServiceMonitor selects the metrics Service by {k}"
        );
    }
}

#[test]
fn the_renderer_refuses_what_is_outside_its_subset_and_missing_values() {
    let root = json!({"Values": {"a": 1}});
    for bad in [
        "{{ include \"x\" . }}",
        "{{ .Values.missing }}",
        "{{ with .Values.a }}x{{ end }}",
    ] {
        let result = std::panic::catch_unwind(|| render_template(bad, &root));
        assert!(result.is_err(), "{bad} should be refused");
    }
    assert_eq!(
        render_template(
            "a:\n  {{- if .Values.a }}\n  b: {{ .Values.a | quote }}\n  {{- end }}\n",
            &root
        ),
        "a:\n  b: \"1\"\n"
    );
}
