//! `baton validate` as a user runs it: the real binary on a copy of the example repo.

mod common;

use std::path::Path;

use common::{baton, edit, example_repo, stderr, stdout};

fn validate(repo: &Path) -> (i32, String) {
    let out = baton(&["validate", "--repo", repo.to_str().unwrap()]);
    (out.status.code().unwrap(), stdout(&out))
}

/// Asserts that `baton validate` said `text`, showing all it said when not.
#[track_caller]
fn assert_says(out: &str, text: &str) {
    assert!(out.contains(text), "expected {text:?} in:\n{out}");
}

/// `baton validate` on the example repo after `change`: it fails (exit 1); its output.
fn invalid_after(change: impl FnOnce(&Path)) -> String {
    let repo = example_repo();
    change(repo.path());
    let (code, out) = validate(repo.path());
    assert_eq!(code, 1, "{out}");
    out
}

/// As [`invalid_after`], the change replacing `from` by `to` in `file`.
fn invalid_after_edit(file: &str, from: &str, to: &str) -> String {
    invalid_after(|repo| edit(repo, file, from, to))
}

#[test]
fn the_example_repo_is_valid() {
    let repo = example_repo();
    let (code, out) = validate(repo.path());
    assert_eq!(code, 0, "{out}");
    assert_says(&out, "dev → staging → prod");
}

#[test]
fn an_unknown_key_names_file_line_column_and_the_nearest_valid_name() {
    let out = invalid_after_edit("policies/pipeline.yaml", "    soak: 10m", "    soka: 10m");
    assert_says(
        &out,
        "policies/pipeline.yaml:28:5: environments[1]: unknown field `soka` (did you mean `soak`?)",
    );
}

#[test]
fn a_prune_share_outside_zero_to_one_is_located() {
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "  - name: dev\n",
        "  - name: dev\n    prune: { maxFraction: 1.5 }\n",
    );
    assert_says(
        &out,
        "environments[0].prune.maxFraction: 1.5 is not a share between 0 and 1",
    );
}

#[test]
fn an_object_outside_an_environments_allow_is_refused_by_name_and_a_covering_allow_is_valid() {
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "    autoMerge: true\n",
        "    autoMerge: true\n    allow: { namespaces: [shop-dev], kinds: [apps/Deployment, Service, ConfigMap] }\n",
    );
    assert_says(
        &out,
        "environments/dev: Namespace/shop-dev: cluster-scoped kind Namespace is not named in allow.kinds: environment dev may apply only what its allow: in policies/pipeline.yaml lists",
    );
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "    autoMerge: true\n",
        "    autoMerge: true\n    allow: { namespaces: [shop], kinds: [Namespace, apps/*, Service, ConfigMap] }\n",
    );
    assert_says(
        &out,
        "Deployment/shop-dev/web: namespace shop-dev is not in allow.namespaces (shop)",
    );
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "    autoMerge: true\n",
        "    autoMerge: true\n    allow: { namespaces: [shop-dev], kinds: [\"apps/deployments\"] }\n",
    );
    assert_says(
        &out,
        "environments[0].allow.kinds[0]: \"apps/deployments\" is not a kind",
    );

    let repo = example_repo();
    edit(
        repo.path(),
        "policies/pipeline.yaml",
        "    autoMerge: true\n",
        "    autoMerge: true\n    allow: { namespaces: [shop-dev], kinds: [Namespace, apps/*, Service, ConfigMap] }\n",
    );
    let (code, out) = validate(repo.path());
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_service_account_must_be_namespace_slash_name_and_a_valid_one_passes() {
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "    autoMerge: true\n",
        "    autoMerge: true\n    serviceAccount: deployer\n",
    );
    assert_says(
        &out,
        "environments[0].serviceAccount: \"deployer\" is not <namespace>/<name> (e.g. team-a/deployer)",
    );
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "    autoMerge: true\n",
        "    autoMerge: true\n    serviceAccount: Shop_Dev/deployer\n",
    );
    assert_says(
        &out,
        "environments[0].serviceAccount: \"Shop_Dev\" in \"Shop_Dev/deployer\" is not a namespace name",
    );

    let repo = example_repo();
    edit(
        repo.path(),
        "policies/pipeline.yaml",
        "    autoMerge: true\n",
        "    autoMerge: true\n    serviceAccount: shop-dev/baton-deployer\n",
    );
    let (code, out) = validate(repo.path());
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_cycle_in_after_is_refused() {
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "  - name: dev\n",
        "  - name: dev\n    after: prod\n",
    );
    assert_says(&out, "forms a cycle");
    assert_says(&out, "the first environment must have no after");
}

#[test]
fn an_unknown_after_suggests_a_known_environment() {
    let out = invalid_after_edit("policies/pipeline.yaml", "after: staging", "after: stagign");
    assert_says(
        &out,
        "unknown environment \"stagign\" (did you mean \"staging\"?)",
    );
}

#[test]
fn a_window_that_does_not_parse_is_located() {
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "for 7h in Europe/Berlin",
        "for 7h in Europe/Berlni",
    );
    assert_says(
        &out,
        "policies/pipeline.yaml:42:15: environments[2].windows[0]: invalid window",
    );
    assert_says(&out, "unknown time zone \"Europe/Berlni\"");
}

#[test]
fn a_verify_job_that_does_not_exist_is_located_in_the_pipeline() {
    let out = invalid_after(|repo| {
        std::fs::remove_file(repo.join("environments/staging/verify/smoke.yaml")).unwrap();
    });
    assert_says(
        &out,
        "policies/pipeline.yaml:34:16: environments[1].verify[0].job: environments/staging/verify/smoke.yaml does not exist",
    );
}

#[test]
fn a_verify_job_outside_the_repo_is_refused() {
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "job: environments/staging/verify/smoke.yaml",
        "job: ../smoke.yaml",
    );
    assert_says(
        &out,
        "environments[1].verify[0].job: \"../smoke.yaml\" leaves the config repo",
    );
}

#[test]
fn a_verify_manifest_that_is_not_a_job_names_its_file_and_line() {
    let out = invalid_after_edit(
        "environments/staging/verify/smoke.yaml",
        "kind: Job",
        "kind: Deployment",
    );
    assert_says(
        &out,
        "environments/staging/verify/smoke.yaml:7:7: kind: is batch/v1 Deployment; a verify step must be a batch/v1 Job",
    );
}

#[test]
fn an_environment_without_its_overlay_is_reported() {
    let out = invalid_after(|repo| {
        std::fs::remove_dir_all(repo.join("environments/staging")).unwrap();
    });
    assert_says(&out, "directory environments/staging does not exist");
}

#[test]
fn an_app_missing_from_an_overlay_names_the_kustomization() {
    let out = invalid_after_edit(
        "environments/dev/kustomization.yaml",
        "  - name: registry.example.com/shop/worker\n",
        "  - name: registry.example.com/shop/other\n",
    );
    assert_says(
        &out,
        "environments/dev/kustomization.yaml:16:3: images: app worker",
    );
}

#[test]
fn a_malformed_digest_is_located_at_its_value() {
    let repo = example_repo();
    let text =
        std::fs::read_to_string(repo.path().join("environments/prod/kustomization.yaml")).unwrap();
    let digest = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("digest: "))
        .unwrap()
        .to_string();
    edit(
        repo.path(),
        "environments/prod/kustomization.yaml",
        &digest,
        "sha256:1234",
    );
    let (code, out) = validate(repo.path());
    assert_eq!(code, 1, "{out}");
    assert_says(
        &out,
        "environments/prod/kustomization.yaml:20:13: images.digest: invalid digest \"sha256:1234\"",
    );
}

#[test]
fn a_path_leaving_the_repo_is_refused() {
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "path: environments/dev",
        "path: ../../etc",
    );
    assert_says(&out, "leaves the config repo");
}

#[test]
fn json_output_lists_diagnostics_for_scripts() {
    let repo = example_repo();
    edit(
        repo.path(),
        "policies/pipeline.yaml",
        "count: 2",
        "count: 0",
    );
    let out = baton(&[
        "validate",
        "--repo",
        repo.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["diagnostics"][0]["field"],
        "environments[2].approvals.count"
    );
    assert_eq!(v["diagnostics"][0]["line"], 40);
}

#[test]
fn usage_errors_exit_with_two() {
    let out = baton(&["validate", "--output", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_rego_policy_that_does_not_compile_is_reported_with_its_file() {
    let out = invalid_after(|repo| {
        std::fs::write(
            repo.join("policies/broken.rego"),
            "package baton\ndeny contains msg if {\n",
        )
        .unwrap();
    });
    assert_says(&out, "error: policies/broken.rego: Rego does not compile");
}

/// A baton.yaml with the example's three clusters, each limited to its environment's namespace
/// (as the chart's `rbac.scope: namespaces` grants), or cluster-wide.
fn runtime_config(dir: &std::path::Path, namespaces_scope: bool) -> std::path::PathBuf {
    let mut yaml = String::from("repo:\n  url: https://github.com/shop/config.git\nclusters:\n");
    for env in ["dev", "staging", "prod"] {
        yaml.push_str(&format!("  {env}:\n    kubeconfig: /etc/kube/{env}\n"));
        if namespaces_scope {
            yaml.push_str(&format!(
                "    scope: namespaces\n    namespaces: [shop-{env}]\n"
            ));
        }
    }
    let file = dir.join("baton.yaml");
    std::fs::write(&file, yaml).unwrap();
    file
}

fn validate_with(repo: &std::path::Path, config: &std::path::Path) -> (i32, String) {
    let out = baton(&[
        "validate",
        "--repo",
        repo.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    (out.status.code().unwrap(), stdout(&out))
}

#[test]
fn under_a_namespaces_scope_an_environment_rendering_cluster_scoped_objects_fails_with_the_reason()
{
    let repo = example_repo();
    let dir = tempfile::tempdir().unwrap();
    // Cluster-wide: the example's Namespace objects are fine.
    let (code, out) = validate_with(repo.path(), &runtime_config(dir.path(), false));
    assert_eq!(code, 0, "{out}");
    // Namespaces: each environment's Namespace object is refused, naming it and why.
    let config = runtime_config(dir.path(), true);
    let (code, out) = validate_with(repo.path(), &config);
    assert_eq!(code, 1, "{out}");
    for env in ["dev", "staging", "prod"] {
        assert!(
            out.contains(&format!(
                "error: environments/{env}: Namespace/shop-{env}: cluster-scoped, and baton's RBAC scope is the namespaces shop-{env} (cluster `{env}` has scope: namespaces in"
            )),
            "{out}"
        );
    }
    assert!(
        out.contains("deploy baton with rbac.scope: cluster"),
        "{out}"
    );
    assert!(out.contains("3 problem(s) found"), "{out}");
    // Without the Namespace objects (the platform team creates the namespaces), it is valid;
    // a ClusterRole is not (the overlay's `namespace:` puts every namespaced object in
    // shop-dev, so that is all it can break).
    for env in ["dev", "staging", "prod"] {
        edit(
            repo.path(),
            &format!("environments/{env}/kustomization.yaml"),
            "  - namespace.yaml\n",
            "",
        );
    }
    let (code, out) = validate_with(repo.path(), &config);
    assert_eq!(code, 0, "{out}");
    std::fs::write(
        repo.path().join("environments/dev/extra.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: reader\nrules: []\n",
    )
    .unwrap();
    edit(
        repo.path(),
        "environments/dev/kustomization.yaml",
        "resources:\n",
        "resources:\n  - extra.yaml\n",
    );
    let (code, out) = validate_with(repo.path(), &config);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ClusterRole/reader: cluster-scoped"), "{out}");
    assert!(out.contains("1 problem(s) found"), "{out}");
}

#[test]
fn a_keyless_verify_needs_a_trusted_root_and_an_identity() {
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "verify: { cosignKey: keys/ci.pub }",
        "verify: { keyless: { trustedRoot: keys/ci.pub, issuer: https://token.actions.githubusercontent.com } }",
    );
    assert_says(&out, "keys/ci.pub is not a sigstore trusted root");
    assert_says(&out, "set subject (exact) or subjectRegex");

    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "verify: { cosignKey: keys/ci.pub }",
        "verify: { cosignKey: keys/ci.pub, keyless: { trustedRoot: keys/ci.pub, issuer: x, subject: y } }",
    );
    assert_says(&out, "set one of cosignKey or keyless, not both");
}

#[test]
fn bad_notify_entries_fail_validate_at_their_line() {
    let repo = example_repo();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("baton.yaml");
    let head = "repo:\n  url: https://github.com/shop/config.git\nnotify:\n  - name: releases\n";
    // An environment the pipeline does not have: a diagnostic at its line.
    std::fs::write(
        &file,
        format!(
            "{head}    slack: {{ url: {{ env: SLACK_URL }} }}\n    environments: [dev, prdo]\n"
        ),
    )
    .unwrap();
    let (code, out) = validate_with(repo.path(), &file);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{}:6:", file.display()))
            && out.contains("notify[0].environments[1]")
            && out.contains("no environment \"prdo\""),
        "{out}"
    );
    // A malformed entry: the file does not load, and the error names the line and field,
    // never the URL (which may carry a token).
    for (entry, field) in [
        (
            "    webhook: { url: \"ftp://hooks.example.com/?token=hunter2\", secret: { env: H } }\n",
            "notify[0].webhook.url",
        ),
        (
            "    events: [merged]\n",
            "notify[0]: set exactly one of webhook",
        ),
        (
            "    slack: { url: { env: S } }\n    events: [deployed]\n",
            "notify[0].events[0]: unknown value `deployed`; allowed: waitingForApproval",
        ),
    ] {
        std::fs::write(&file, format!("{head}{entry}")).unwrap();
        let out = baton(&[
            "validate",
            "--repo",
            repo.path().to_str().unwrap(),
            "--config",
            file.to_str().unwrap(),
        ]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{entry}");
        assert!(
            err.contains(&format!("{}:", file.display())) && err.contains(field),
            "{entry}: {err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn groups_with_unknown_or_shared_members_are_located_with_the_field() {
    let out = invalid_after_edit(
        "policies/pipeline.yaml",
        "\nenvironments:\n",
        "\ngroups:\n  shop:\n    apps: [web, wroker]\n  backend:\n    apps: [worker, web]\n\nenvironments:\n",
    );
    assert_says(
        &out,
        "policies/pipeline.yaml:22:17: groups.shop.apps[1]: \"wroker\" is not an app of this pipeline (apps: web, worker); did you mean `worker`?",
    );
    assert_says(
        &out,
        "policies/pipeline.yaml:24:20: groups.backend.apps[1]: app \"web\" is already in group \"shop\"",
    );
}

#[test]
fn a_group_of_the_example_apps_is_valid() {
    let repo = example_repo();
    edit(
        repo.path(),
        "policies/pipeline.yaml",
        "\nenvironments:\n",
        "\ngroups:\n  shop: { apps: [web, worker] }\n\nenvironments:\n",
    );
    let (code, out) = validate(repo.path());
    assert_eq!(code, 0, "{out}");
}
