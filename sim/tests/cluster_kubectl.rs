//! The Kubernetes stand-in checked with the real `kubectl` (discovery, get, server-side apply,
//! conflicts, delete, CRDs, logs, rollout status).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sim::cluster::{Cluster, ClusterConfig};

/// Runs kubectl against one cluster with a private kubeconfig and cache, so nothing from the
/// machine's own configuration is read.
struct Kubectl {
    server: String,
    dir: tempfile::TempDir,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(cluster: &Cluster) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config"), "apiVersion: v1\nkind: Config\n").unwrap();
        Self {
            server: cluster.url(),
            dir,
        }
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    async fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.dir.path().join("config"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .arg("--server")
            .arg(&self.server)
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG");
        let output = tokio::task::spawn_blocking(move || cmd.output().expect("kubectl runs"))
            .await
            .unwrap();
        Out {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// `kubectl apply --server-side <flags> -f <name>`, with `manifest` written to `name`;
    /// asserts success, returns stdout.
    async fn apply(&self, name: &str, manifest: &str, flags: &[&str]) -> String {
        let path = self.file(name, manifest);
        let mut args = vec!["apply", "--server-side"];
        args.extend_from_slice(flags);
        args.extend(["-f", path.to_str().unwrap()]);
        self.ok(&args).await
    }

    /// `jsonpath` of Deployment `shop/web`.
    async fn web(&self, jsonpath: &str) -> String {
        let query = format!("jsonpath={jsonpath}");
        self.ok(&["-n", "shop", "get", "deploy", "web", "-o", &query])
            .await
    }
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example.com/shop/web:1.0.0
        ports: [{containerPort: 8080}]
";

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovers_the_built_in_api_groups_and_lists_namespaces() {
    let cluster = Cluster::start().await.unwrap();
    let kubectl = Kubectl::new(&cluster);
    let resources = kubectl.ok(&["api-resources", "-o", "name"]).await;
    for expected in [
        "deployments.apps",
        "jobs.batch",
        "leases.coordination.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
        "ingresses.networking.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
        "configmaps",
    ] {
        assert!(
            resources.lines().any(|l| l == expected),
            "{expected} missing from:\n{resources}"
        );
    }
    let namespaces = kubectl.ok(&["get", "namespaces", "-o", "name"]).await;
    assert!(namespaces.contains("namespace/default"), "{namespaces}");
    let version = kubectl.ok(&["version", "-o", "json"]).await;
    assert!(version.contains("\"minor\": \"33\""), "{version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_creates_and_a_second_manager_conflicts_until_forced() {
    let cluster = Cluster::start().await.unwrap();
    let kubectl = Kubectl::new(&cluster);
    kubectl.apply("ns.yaml", NAMESPACE, &[]).await;
    let out = kubectl
        .apply("web.yaml", DEPLOYMENT, &["--field-manager", "baton"])
        .await;
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");

    let scaled = DEPLOYMENT.replace("replicas: 2", "replicas: 5");
    let scaled_file = kubectl.file("web5.yaml", &scaled);
    let conflict = kubectl
        .run(&[
            "apply",
            "--server-side",
            "--field-manager",
            "ops",
            "-f",
            scaled_file.to_str().unwrap(),
        ])
        .await;
    assert!(!conflict.ok);
    assert!(
        conflict
            .stderr
            .contains("Apply failed with 1 conflict: conflict with \"baton\": .spec.replicas"),
        "{}",
        conflict.stderr
    );
    assert_eq!(kubectl.web("{.spec.replicas}").await, "2");

    kubectl
        .apply(
            "web5.yaml",
            &scaled,
            &["--field-manager", "ops", "--force-conflicts"],
        )
        .await;
    let managed = kubectl
        .web("{.spec.replicas} {.metadata.generation} {.metadata.managedFields[*].manager}")
        .await;
    assert!(managed.starts_with("5 2 "), "{managed}");
    assert!(
        managed.contains("baton") && managed.contains("ops"),
        "{managed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_waits_for_a_healthy_rollout_and_reports_a_broken_one() {
    let config = ClusterConfig::rollouts(Duration::from_millis(200), Duration::from_millis(800));
    let cluster = Cluster::start_with(config).await.unwrap();
    let kubectl = Kubectl::new(&cluster);
    kubectl.apply("ns.yaml", NAMESPACE, &[]).await;
    kubectl.apply("web.yaml", DEPLOYMENT, &[]).await;
    const ROLLOUT_STATUS: [&str; 6] = [
        "-n",
        "shop",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=20s",
    ];
    let status = kubectl.ok(&ROLLOUT_STATUS).await;
    assert!(status.contains("successfully rolled out"), "{status}");

    cluster.mark_broken("2.0.0");
    let broken = DEPLOYMENT.replace("web:1.0.0", "web:2.0.0");
    kubectl.apply("web2.yaml", &broken, &[]).await;
    let failed = kubectl.run(&ROLLOUT_STATUS).await;
    assert!(!failed.ok);
    assert!(
        failed.stderr.contains("exceeded its progress deadline"),
        "{}",
        failed.stderr
    );
    let ready = kubectl.web("{.status.availableReplicas}").await;
    assert_eq!(ready, "2", "the old replicas stay available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_a_crd_then_its_custom_resources_by_short_name() {
    let cluster = Cluster::start().await.unwrap();
    let kubectl = Kubectl::new(&cluster);
    let crd = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
";
    kubectl.apply("crd.yaml", crd, &[]).await;
    kubectl
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=10s",
        ])
        .await;
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 3}\n";
    kubectl.apply("w.yaml", widget, &[]).await;
    assert_eq!(
        kubectl
            .ok(&["get", "wd", "w1", "-o", "jsonpath={.spec.size}"])
            .await,
        "3"
    );

    kubectl.ok(&["delete", "crd", "widgets.example.com"]).await;
    let gone = kubectl.run(&["get", "widgets.example.com"]).await;
    assert!(
        !gone.ok,
        "custom resources disappear with their CRD: {}",
        gone.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_job_logs_and_delete_cascades_to_the_jobs_pods() {
    let cluster = Cluster::start().await.unwrap();
    let kubectl = Kubectl::new(&cluster);
    let job = "\
apiVersion: batch/v1
kind: Job
metadata: {name: smoke, namespace: default}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: test
        image: registry.example.com/shop/smoke:1
        args: [--target, web]
        env: [{name: SIM_JOB_LOG, value: all 3 checks passed}]
";
    kubectl.apply("job.yaml", job, &[]).await;
    kubectl
        .ok(&[
            "wait",
            "--for=condition=Complete",
            "job/smoke",
            "--timeout=20s",
        ])
        .await;
    let logs = kubectl.ok(&["logs", "job/smoke"]).await;
    assert!(logs.contains("all 3 checks passed"), "{logs}");
    assert!(logs.contains("--target web"), "{logs}");
    let pods = kubectl
        .ok(&["get", "pods", "-l", "job-name=smoke", "-o", "name"])
        .await;
    assert_eq!(pods.lines().count(), 1, "{pods}");

    kubectl.ok(&["delete", "job", "smoke"]).await;
    let pods = kubectl.ok(&["get", "pods", "-o", "name"]).await;
    assert_eq!(pods.trim(), "", "the job's pod is garbage-collected");
}
