//! `charts/baton`, rendered by real helm (`helm template`, the helm `scripts/kube-assets`
//! builds) with the default values and with overrides, and the objects checked structurally —
//! the expected kinds exist, replicas, probes, RBAC rules, the ServiceMonitor only when
//! enabled, secrets referenced and never inlined, and the ConfigMap's `baton.yaml` loads as
//! baton's runtime config. `helm lint` passes in both RBAC scopes, and values helm must refuse
//! are refused. `tests/chart_real.rs` installs the rendered chart on a real API server.

mod chart_support;

use std::path::Path;

use chart_support::{chart_dir, helm_run, render_chart};
use serde_json::{Value, json};

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
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
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
    assert!(
        cfg.server.auth.is_none(),
        "the status page is open by default"
    );
    assert!(cfg.server.public_url.is_none() && cfg.github.dashboard);
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
                "github": { "apiUrl": "https://api.github.com", "botLogin": "", "dashboard": false },
                "publicUrl": "https://baton.shop.example/",
                "inClusterClusters": ["prod"],
                "clusters": { "staging": { "kubeconfig": "/etc/kube/staging", "context": "stg" } }
            },
            "statusAuth": {
                "token": { "secretName": "status", "key": "bearer" },
                "trustedProxy": { "from": ["10.0.0.0/8", "127.0.0.1/32"] }
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
    assert_eq!(
        env_var(&c, "BATON_STATUS_TOKEN").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "status", "key": "bearer"})
    );
    let auth = cfg
        .server
        .auth
        .as_ref()
        .expect("server.auth from statusAuth");
    assert_eq!(
        auth.token.as_ref().unwrap().env.as_deref(),
        Some("BATON_STATUS_TOKEN")
    );
    let proxy = auth.trusted_proxy.as_ref().unwrap();
    assert_eq!(
        (proxy.header.as_str(), proxy.from.clone()),
        (
            "X-Forwarded-User",
            vec!["10.0.0.0/8".to_string(), "127.0.0.1/32".to_string()]
        )
    );
    assert_eq!(cfg.repo.branch, "release");
    assert_eq!(
        cfg.server.public_url.as_deref(),
        Some("https://baton.shop.example/")
    );
    assert!(!cfg.github.dashboard, "the dashboard switched off");
    let prod = &cfg.clusters["prod"];
    assert!(prod.in_cluster);
    assert_eq!(
        prod.namespace, "ops",
        "the in-cluster inventory lives in the release namespace"
    );
    assert_eq!(
        prod.allowed_namespaces(),
        Some(&["shop".to_string(), "payments".to_string()][..]),
        "the in-cluster cluster gets the chart's RBAC scope"
    );
    assert_eq!(cfg.clusters["staging"].context.as_deref(), Some("stg"));
    assert_eq!(cfg.clusters["staging"].allowed_namespaces(), None);
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
fn the_prometheus_rule_alerts_on_metrics_baton_exports_and_notify_entries_reach_baton_yaml() {
    let objects = render_chart(
        "bot",
        "ops",
        json!({
            "prometheusRule": {
                "enabled": true,
                "labels": { "release": "kube-prometheus" },
                "stuckPromotion": { "for": "2h" }
            },
            "config": { "notify": [
                { "name": "releases", "slack": { "url": { "env": "SLACK_WEBHOOK_URL" } },
                  "environments": ["prod"], "events": ["rolloutFailed", "rolledBack"] }
            ] }
        }),
    );
    common_checks(&objects, "bot", "ops");
    let rule = find(&objects, "PrometheusRule", "bot");
    assert_eq!(rule["metadata"]["namespace"], "ops");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let alert = |name: &str| {
        rules
            .iter()
            .find(|r| r["alert"] == name)
            .unwrap_or_else(|| panic!("no alert {name}: {rules:?}"))
    };
    let failed = alert("BatonRolloutFailed");
    assert_eq!(
        failed["expr"],
        "max by (env) (baton_rollout_failed{namespace=\"ops\"}) > 0"
    );
    let stuck = alert("BatonPromotionStuck");
    assert_eq!(stuck["for"], "2h");
    assert!(
        stuck["expr"]
            .as_str()
            .unwrap()
            .contains("baton_gate_waiting{namespace=\"ops\", gate!~\"hold|freeze|window\"")
    );
    assert!(
        stuck["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("more than 2h")
    );
    let leader = alert("BatonNoLeader");
    assert_eq!(
        leader["expr"],
        "(sum(baton_leader{namespace=\"ops\"}) or vector(0)) < 1"
    );
    // Every metric an alert reads is one baton exports, with the labels it groups by.
    let metrics = baton::server::metrics::Metrics::new();
    // (A labelled family shows only once it has a series.)
    let env = baton::server::metrics::EnvLabels { env: "dev".into() };
    metrics.rollout_failed.get_or_create(&env).set(1);
    let gate = baton::server::metrics::GateLabels {
        env: "dev".into(),
        gate: "approvals".into(),
    };
    metrics.gate_waiting.get_or_create(&gate).set(1);
    let exported = metrics.render();
    for (r, labels) in [
        (failed, &["env"][..]),
        (stuck, &["env", "gate"]),
        (leader, &[]),
    ] {
        let expr = r["expr"].as_str().unwrap();
        let name = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|w| w.starts_with("baton_"))
            .unwrap();
        assert!(
            exported.contains(&format!("# TYPE {name} gauge")),
            "{name} is not a gauge baton exports:\n{exported}"
        );
        let series = exported
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .unwrap_or_else(|| panic!("no {name} series:\n{exported}"));
        for l in labels {
            assert!(expr.contains(&format!("by ({l}")) || expr.contains(&format!(", {l})")));
            assert!(series.contains(&format!("{l}=\"")), "{series}");
        }
        assert!(
            r["annotations"]["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("baton:"))
        );
    }
    // notify: passes through to baton.yaml, which loads with it.
    let cfg = runtime_config(&objects, "bot");
    assert_eq!(cfg.notify.len(), 1);
    assert_eq!(cfg.notify[0].name, "releases");
    assert!(cfg.notify[0].wants("prod", baton::config::notify::EventKind::RolledBack));
    assert!(!cfg.notify[0].wants("dev", baton::config::notify::EventKind::RolledBack));
    // Off by default.
    let defaults = render_chart("bot", "ops", json!({}));
    assert!(!kinds(&defaults).iter().any(|k| k == "PrometheusRule"));
}

#[test]
fn helm_lints_the_chart_in_both_rbac_scopes() {
    let chart = chart_dir().to_str().unwrap();
    for overrides in [
        json!({}),
        json!({"rbac": {"scope": "namespaces", "namespaces": ["shop", "payments"], "bindAndEscalate": true},
               "config": {"inClusterClusters": ["prod"]}}),
        json!({"rbac": {"scope": "impersonate", "impersonate": ["team-a/deployer"]},
               "config": {"inClusterClusters": ["prod"]}}),
        json!({"prometheusRule": {"enabled": true}, "serviceMonitor": {"enabled": true}}),
    ] {
        let (ok, stdout, stderr) = helm_run(&["lint", "--strict", chart], &overrides);
        assert!(ok, "helm lint {overrides}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
    }
}

#[test]
fn helm_refuses_an_unknown_scope_and_a_namespaces_scope_without_namespaces() {
    let chart = chart_dir().to_str().unwrap();
    for (overrides, says) in [
        (
            json!({"rbac": {"scope": "everywhere"}}),
            "rbac.scope must be cluster, namespaces or impersonate",
        ),
        (
            json!({"rbac": {"scope": "namespaces"}}),
            "needs rbac.namespaces",
        ),
        (
            json!({"rbac": {"scope": "impersonate"}}),
            "needs rbac.impersonate",
        ),
        (
            json!({"rbac": {"scope": "impersonate", "impersonate": ["deployer"]}}),
            "\"deployer\" is not namespace/name",
        ),
    ] {
        let (ok, _, stderr) = helm_run(&["template", "baton", chart], &overrides);
        assert!(!ok, "{overrides} rendered");
        assert!(stderr.contains(says), "{overrides}: {stderr}");
    }
}

#[test]
fn bind_and_escalate_adds_exactly_those_verbs_on_roles_in_either_scope() {
    for rbac in [
        json!({"bindAndEscalate": true}),
        json!({"bindAndEscalate": true, "scope": "namespaces", "namespaces": ["shop"]}),
    ] {
        let objects = render_chart("baton", "ops", json!({ "rbac": rbac }));
        let role = objects
            .iter()
            .find(|o| {
                o["metadata"]["name"] == "baton-apply" || o["metadata"]["name"] == "baton-ops"
            })
            .unwrap();
        let rules = role["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "{role}");
        assert_eq!(
            rules[1],
            json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "clusterroles"], "verbs": ["bind", "escalate"]})
        );
    }
    let plain = render_chart("baton", "ops", json!({}));
    let role = find(&plain, "ClusterRole", "baton-ops");
    assert_eq!(role["rules"].as_array().unwrap().len(), 1);
}

#[test]
fn the_impersonate_scope_grants_only_impersonation_of_the_listed_accounts_and_the_release_namespace()
 {
    let objects = render_chart(
        "baton",
        "ops",
        json!({"rbac": {"scope": "impersonate", "impersonate": ["team-a/deployer", "team-b/deploy.er"]},
               "config": {"inClusterClusters": ["prod"]}}),
    );
    common_checks(&objects, "baton", "ops");
    let rbac: Vec<&Value> = objects
        .iter()
        .filter(|o| o["apiVersion"] == "rbac.authorization.k8s.io/v1")
        .collect();
    assert!(
        rbac.iter()
            .all(|o| o["kind"] == "Role" || o["kind"] == "RoleBinding"),
        "no cluster-wide grant: {rbac:?}"
    );
    let roles: Vec<(&str, &Value)> = rbac
        .iter()
        .filter(|o| o["kind"] == "Role")
        .map(|o| (o["metadata"]["namespace"].as_str().unwrap(), &o["rules"]))
        .collect();
    assert_eq!(roles.len(), 3, "{roles:?}");
    let self_role = find(&objects, "Role", "baton-self");
    assert_eq!(self_role["metadata"]["namespace"], "ops");
    for (ns, name) in [("team-a", "deployer"), ("team-b", "deploy.er")] {
        let role_name = format!("baton-ops-impersonate-{name}");
        let role = find(&objects, "Role", &role_name);
        assert_eq!(role["metadata"]["namespace"], ns);
        assert_eq!(
            role["rules"],
            json!([{"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": [name], "verbs": ["impersonate"]}])
        );
        let binding = find(&objects, "RoleBinding", &role_name);
        assert_eq!(binding["metadata"]["namespace"], ns);
        assert_eq!(binding["roleRef"]["name"], role_name.as_str());
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "baton", "namespace": "ops"}])
        );
    }
    // baton.yaml keeps the cluster scope: the accounts decide what is allowed.
    let config = runtime_config(&objects, "baton");
    let prod = &config.clusters["prod"];
    assert_eq!(
        prod.scope,
        baton::config::runtime::ClusterScope::Cluster,
        "{prod:?}"
    );
}
