//! Least privilege per environment on the real control plane: `charts/baton` installed with
//! `rbac.scope: impersonate` (baton's own ServiceAccount may only impersonate the listed
//! accounts, plus its release namespace), a TokenRequest token for it, and environments that
//! name a `serviceAccount:`. What an environment can change is what its account's RBAC
//! allows: a missing permission fails with one message naming the environment, the account,
//! verb, resource and namespace, and nothing is applied (the API server's audit log and the
//! objects' absence prove it); an object outside `allow:` is refused before any request; a
//! ClusterRole is out of reach when no account may create one, and baton's own token cannot
//! create it either.
//!
//! Only on the real API server: the `sim` stand-in has no authentication, authorization or
//! impersonation (docs/sim.md).

mod chart_support;
mod kube_support;

use baton::config::pipeline::{Allow, ServiceAccountRef};
use baton::reconcile::{Context, Env, ReconcileError, reconcile};
use chart_support::{chart_dir, helm_run};
use controlplane::ControlPlane;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube_support::{dynamic, options, real, unique};
use serde_json::{Value, json};

/// A team's namespace, its deployer ServiceAccount, and baton installed by the chart to
/// impersonate it: baton's own identity (a TokenRequest token of the chart's account) and its
/// audit username.
struct Setup {
    cp: &'static ControlPlane,
    team: String,
    account: ServiceAccountRef,
    baton_ns: String,
    baton: kube::Client,
    baton_user: String,
}

impl Setup {
    async fn new(prefix: &str) -> Self {
        let cp = real();
        let prefix = unique(prefix);
        let team = format!("{prefix}-team");
        let baton_ns = format!("{prefix}-baton");
        let release = "baton";
        // The team's account exists before baton: the platform team makes it and its Roles.
        cp.service_account_token(&team, "deployer").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, cp.kubeconfig()).unwrap();
        let (ok, stdout, stderr) = helm_run(
            &[
                "upgrade",
                "--install",
                release,
                chart_dir().to_str().unwrap(),
                "--namespace",
                &baton_ns,
                "--create-namespace",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
            ],
            &json!({"rbac": {"scope": "impersonate", "impersonate": [format!("{team}/deployer")]}}),
        );
        assert!(ok, "helm install:\n{stdout}\n{stderr}");
        let token_kubeconfig = cp
            .service_account_kubeconfig(&baton_ns, release)
            .await
            .unwrap();
        let baton = controlplane::client_from_kubeconfig(&token_kubeconfig)
            .await
            .unwrap();
        Setup {
            cp,
            account: ServiceAccountRef::parse(&format!("{team}/deployer")).unwrap(),
            team,
            baton_user: format!("system:serviceaccount:{baton_ns}:{release}"),
            baton_ns,
            baton,
        }
    }

    /// baton's reconcile context: its own identity, the inventory in its release namespace.
    fn context(&self) -> Context {
        Context::new(self.baton.clone(), options(&self.baton_ns))
    }

    /// The environment `name`, acting as the team's deployer.
    fn env(&self, name: &str) -> Env {
        Env::new(name).with_service_account(Some(self.account.clone()))
    }

    /// Grant the deployer `verbs` on `resources` of `group` in the team namespace (as the
    /// platform team would, with the administrator's rights).
    async fn grant(&self, role: &str, group: &str, resources: &[&str], verbs: &[&str]) {
        let admin = self.cp.client().await.unwrap();
        let apply = |kind: &str, body: Value| {
            let api = dynamic(&admin, "rbac.authorization.k8s.io/v1", kind, &self.team);
            let name = body["metadata"]["name"].as_str().unwrap().to_string();
            let object: DynamicObject = serde_json::from_value(body).unwrap();
            async move {
                api.patch(
                    &name,
                    &PatchParams::apply("tests").force(),
                    &Patch::Apply(&object),
                )
                .await
                .unwrap();
            }
        };
        apply(
            "Role",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": role, "namespace": self.team},
                "rules": [{"apiGroups": [group], "resources": resources, "verbs": verbs}]}),
        )
        .await;
        apply(
            "RoleBinding",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": role, "namespace": self.team},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": self.team}]}),
        )
        .await;
    }

    /// Every request baton's token made, as `[as <impersonated>] verb resource ns/name` (`dry
    /// run` marked), from the API server's audit log.
    fn requests(&self) -> Vec<String> {
        self.cp
            .audit_events(&self.baton_user)
            .iter()
            .map(|e| {
                let r = &e["objectRef"];
                let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                let who = e["impersonatedUser"]["username"]
                    .as_str()
                    .map(|u| format!("as {u} "))
                    .unwrap_or_default();
                let dry = if e["requestURI"]
                    .as_str()
                    .unwrap_or("")
                    .contains("dryRun=All")
                {
                    " (dry run)"
                } else {
                    ""
                };
                format!(
                    "{who}{} {} {}/{}{dry}",
                    e["verb"].as_str().unwrap_or(""),
                    s("resource"),
                    s("namespace"),
                    s("name")
                )
            })
            .collect()
    }

    /// Writes among [`Setup::requests`] after the first `from` (dry runs included).
    fn writes_since(&self, from: usize) -> Vec<String> {
        self.requests()
            .into_iter()
            .skip(from)
            .filter(|r| {
                ["create ", "update ", "patch ", "delete "]
                    .iter()
                    .any(|v| r.contains(v))
            })
            .collect()
    }

    async fn exists(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> bool {
        let admin = self.cp.client().await.unwrap();
        dynamic(&admin, api_version, kind, ns)
            .get_opt(name)
            .await
            .unwrap()
            .is_some()
    }
}

fn config_map(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}})
}

fn deployment(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": "registry.example.com/shop/web:1.0.0"}]}}}})
}

fn cluster_role(name: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]})
}

#[tokio::test]
async fn an_environment_whose_account_lacks_a_permission_fails_naming_it_and_applies_nothing() {
    let s = Setup::new("lacks").await;
    // The deployer may manage ConfigMaps, and read (not write) Deployments.
    s.grant(
        "configs",
        "",
        &["configmaps"],
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    )
    .await;
    s.grant(
        "deploy-read",
        "apps",
        &["deployments"],
        &["get", "list", "watch"],
    )
    .await;
    let ctx = s.context();
    let env = s.env("team");
    let objects = vec![config_map(&s.team, "settings"), deployment(&s.team, "web")];

    let before = s.requests().len();
    let error = reconcile(&env, &objects, "c1", &ctx).await.unwrap_err();
    let text = error.to_string();
    for says in [
        "nothing was applied",
        &format!(
            "User \"system:serviceaccount:{}:deployer\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"{}\"",
            s.team, s.team
        ),
        &format!(
            "environment team acts as ServiceAccount {}/deployer",
            s.team
        ),
        "grant it to that ServiceAccount",
    ] {
        assert!(text.contains(says), "expected {says:?} in:\n{text}");
    }
    assert!(
        !text.contains("rbac.rules"),
        "points at baton's own RBAC:\n{text}"
    );
    assert!(!error.is_transient(), "{text}");
    assert!(matches!(error, ReconcileError::DryRun { .. }), "{error:?}");
    // Nothing applied: neither object exists, and every write baton's token made was a dry
    // run as the deployer.
    assert!(!s.exists("v1", "ConfigMap", &s.team, "settings").await);
    assert!(!s.exists("apps/v1", "Deployment", &s.team, "web").await);
    let writes = s.writes_since(before);
    assert!(!writes.is_empty(), "no dry run was made");
    let deployer = format!("as system:serviceaccount:{}:deployer ", s.team);
    for w in &writes {
        assert!(
            w.starts_with(&deployer) && w.ends_with("(dry run)"),
            "a write that was not the deployer's dry run: {w}\nall: {writes:#?}"
        );
    }

    // Once the platform team grants it, the same environment applies, as the deployer.
    s.grant(
        "deploy-write",
        "apps",
        &["deployments"],
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    )
    .await;
    let before = s.requests().len();
    let report = reconcile(&env, &objects, "c1", &ctx).await.unwrap();
    assert_eq!(report.objects.len(), 2, "{}", report.summary());
    assert!(s.exists("v1", "ConfigMap", &s.team, "settings").await);
    assert!(s.exists("apps/v1", "Deployment", &s.team, "web").await);
    let writes = s.writes_since(before);
    let applied: Vec<&String> = writes
        .iter()
        .filter(|w| !w.ends_with("(dry run)"))
        .collect();
    assert!(
        applied
            .iter()
            .any(|w| *w == &format!("{deployer}patch deployments {}/web", s.team)),
        "{writes:#?}"
    );
    assert!(
        applied
            .iter()
            .any(|w| *w == &format!("{deployer}patch configmaps {}/settings", s.team)),
        "{writes:#?}"
    );
    // The inventory is baton's own, in its namespace.
    assert!(
        writes.iter().any(|w| w.starts_with(&format!(
            "patch configmaps {}/baton-inventory-team",
            s.baton_ns
        )) || w.starts_with(&format!(
            "create configmaps {}/baton-inventory-team",
            s.baton_ns
        ))),
        "{writes:#?}"
    );

    // What the environment no longer renders is pruned, as the deployer too.
    let before = s.requests().len();
    let report = reconcile(&env, &objects[1..], "c2", &ctx).await.unwrap();
    assert_eq!(report.pruned.len(), 1, "{}", report.summary());
    assert!(!s.exists("v1", "ConfigMap", &s.team, "settings").await);
    let writes = s.writes_since(before);
    assert!(
        writes.contains(&format!("{deployer}delete configmaps {}/settings", s.team)),
        "{writes:#?}"
    );
}

#[tokio::test]
async fn an_object_outside_allow_is_refused_before_any_request_as_the_account() {
    let s = Setup::new("allow").await;
    s.grant(
        "configs",
        "",
        &["configmaps"],
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    )
    .await;
    let ctx = s.context();
    let env = s.env("team").with_allow(Some(Allow {
        namespaces: vec![s.team.clone()],
        kinds: vec!["ConfigMap".into()],
    }));
    let elsewhere = format!("{}-other", s.team);
    let objects = vec![
        config_map(&s.team, "settings"),
        config_map(&elsewhere, "stray"),
        cluster_role(&format!("{}-reader", s.team)),
    ];
    let before = s.requests().len();
    let error = reconcile(&env, &objects, "c1", &ctx).await.unwrap_err();
    let ReconcileError::NotAllowed {
        objects: refused, ..
    } = &error
    else {
        panic!("expected NotAllowed: {error}");
    };
    let mut refused = refused.clone();
    refused.sort();
    assert_eq!(
        refused,
        [
            format!(
                "ClusterRole/{}-reader: cluster-scoped kind rbac.authorization.k8s.io/ClusterRole is not named in allow.kinds",
                s.team
            ),
            format!(
                "ConfigMap/{elsewhere}/stray: namespace {elsewhere} is not in allow.namespaces ({})",
                s.team
            ),
        ]
    );
    assert_eq!(
        s.writes_since(before),
        Vec::<String>::new(),
        "no write, not even a dry run"
    );
    assert!(!s.exists("v1", "ConfigMap", &s.team, "settings").await);
}

#[tokio::test]
async fn a_cluster_role_is_out_of_reach_of_the_account_and_of_batons_own_token() {
    let s = Setup::new("clusterrole").await;
    s.grant(
        "configs",
        "",
        &["configmaps"],
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    )
    .await;
    let ctx = s.context();
    let name = format!("{}-escalate", s.team);
    // allow: names the ClusterRole, so only RBAC stands in the way.
    let env = s.env("team").with_allow(Some(Allow {
        namespaces: vec![s.team.clone()],
        kinds: vec![
            "ConfigMap".into(),
            "rbac.authorization.k8s.io/ClusterRole".into(),
        ],
    }));
    let objects = vec![config_map(&s.team, "settings"), cluster_role(&name)];
    let before = s.requests().len();
    let error = reconcile(&env, &objects, "c1", &ctx).await.unwrap_err();
    let text = error.to_string();
    for says in [
        format!("User \"system:serviceaccount:{}:deployer\" cannot", s.team),
        "resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
            .to_string(),
        format!(
            "environment team acts as ServiceAccount {}/deployer",
            s.team
        ),
    ] {
        assert!(text.contains(&says), "expected {says:?} in:\n{text}");
    }
    assert!(
        !s.exists("rbac.authorization.k8s.io/v1", "ClusterRole", "", &name)
            .await
    );
    assert!(!s.exists("v1", "ConfigMap", &s.team, "settings").await);
    for w in s.writes_since(before) {
        assert!(w.ends_with("(dry run)"), "a real write: {w}");
    }

    // An environment without an account acts as baton itself, which holds no such right.
    let own = Env::new("own");
    let error = reconcile(&own, &[cluster_role(&name)], "c1", &ctx)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("User \"{}\" cannot", s.baton_user)),
        "{error}"
    );
    // Nor can baton's token create it directly.
    let roles = dynamic(&s.baton, "rbac.authorization.k8s.io/v1", "ClusterRole", "");
    let object: DynamicObject = serde_json::from_value(cluster_role(&name)).unwrap();
    match roles.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("baton's own token created a ClusterRole: {other:?}"),
    }
    assert!(
        !s.exists("rbac.authorization.k8s.io/v1", "ClusterRole", "", &name)
            .await
    );
}

#[tokio::test]
async fn an_account_baton_may_not_impersonate_is_one_error_saying_what_to_grant() {
    let s = Setup::new("notlisted").await;
    s.cp.service_account_token(&s.team, "other").await.unwrap();
    let ctx = s.context();
    let account = ServiceAccountRef::parse(&format!("{}/other", s.team)).unwrap();
    let env = Env::new("team").with_service_account(Some(account));
    let before = s.requests().len();
    let error = reconcile(&env, &[config_map(&s.team, "settings")], "c1", &ctx)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "grant baton `impersonate` on serviceaccounts/other in namespace {}",
            s.team
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("User \"{}\" cannot impersonate", s.baton_user)),
        "{text}"
    );
    assert_eq!(s.writes_since(before), Vec::<String>::new());
}

#[tokio::test]
async fn the_impersonated_identity_has_the_service_account_groups() {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let s = Setup::new("groups").await;
    let client = baton::reconcile::identity::impersonating(&s.baton, &s.account);
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(client);
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let user = review.status.unwrap().user_info.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{}:deployer", s.team).as_str())
    );
    let mut groups = user.groups.unwrap_or_default();
    groups.sort();
    assert_eq!(
        groups,
        [
            "system:authenticated".to_string(),
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{}", s.team),
        ]
    );
}
