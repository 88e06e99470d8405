//! Renderer benchmark: generates a large config repo (200 apps × 3 environments by default,
//! with generators, labels, image pins, replicas, strategic-merge and JSON patches), then times
//! whole processes — `baton render <env>` (this build) against `kubectl kustomize
//! environments/<env>` — reports the median of several runs and the ratio, and checks that the
//! outputs are byte-identical.
//!
//!     cargo bench --bench render                 # 200 apps, 5 runs
//!     cargo bench --bench render -- --apps 50 --runs 3 --keep /tmp/tree
//!
//! Without kubectl on the machine only baton is timed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ENVS: [&str; 3] = ["dev", "staging", "prod"];

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The generated tree: `apps/app-NNN/` bases and `environments/{dev,staging,prod}` overlays.
fn generate(root: &Path, apps: usize) {
    for i in 0..apps {
        let a = format!("app-{i:03}");
        let dir = root.join("apps").join(&a);
        write(
            &dir.join("kustomization.yaml"),
            &format!(
                "resources:\n- deployment.yaml\n- service.yaml\nlabels:\n- pairs:\n    app.kubernetes.io/name: {a}\n  includeSelectors: true\nconfigMapGenerator:\n- name: {a}-config\n  literals:\n  - LOG_LEVEL=info\n  - APP={a}\n  files:\n  - settings.properties\n"
            ),
        );
        write(
            &dir.join("settings.properties"),
            &format!("name={a}\nthreads=4\n"),
        );
        write(
            &dir.join("deployment.yaml"),
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {a}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {a}\n  template:\n    metadata:\n      labels:\n        app: {a}\n    spec:\n      containers:\n      - name: {a}\n        image: registry.example.com/shop/{a}:1.0.0\n        ports:\n        - containerPort: 8080\n        envFrom:\n        - configMapRef:\n            name: {a}-config\n        resources:\n          requests: {{cpu: 100m, memory: 128Mi}}\n"
            ),
        );
        write(
            &dir.join("service.yaml"),
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {a}\nspec:\n  selector:\n    app: {a}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
            ),
        );
    }
    for env in ENVS {
        let mut k = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: shop-{env}\nresources:\n"
        );
        for i in 0..apps {
            k += &format!("- ../../apps/app-{i:03}\n");
        }
        k += &format!("commonAnnotations:\n  shop.example.com/environment: {env}\nimages:\n");
        for i in 0..apps {
            k += &format!(
                "- name: registry.example.com/shop/app-{i:03}\n  newTag: \"1.{i}.0\"\n  digest: sha256:{i:064x}\n"
            );
        }
        k += "replicas:\n";
        for i in (0..apps).step_by(4) {
            k += &format!("- name: app-{i:03}\n  count: 3\n");
        }
        k += "configMapGenerator:\n";
        for i in (0..apps).step_by(2) {
            k += &format!(
                "- name: app-{i:03}-config\n  behavior: merge\n  literals:\n  - LOG_LEVEL={env}\n"
            );
        }
        k += &format!(
            "patches:\n- path: resources.yaml\n- target:\n    kind: Deployment\n  patch: |-\n    - op: add\n      path: /spec/template/metadata/annotations\n      value: {{env: {env}}}\n"
        );
        let dir = root.join("environments").join(env);
        write(&dir.join("kustomization.yaml"), &k);
        let patches: Vec<String> = (0..apps)
            .step_by(3)
            .map(|i| {
                format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i:03}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app-{i:03}\n        resources:\n          limits: {{memory: 512Mi}}\n        env:\n        - name: ENV\n          value: {env}"
                )
            })
            .collect();
        write(
            &dir.join("resources.yaml"),
            &(patches.join("\n---\n") + "\n"),
        );
    }
}

fn run(cmd: &mut Command) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let out = cmd.output().expect("spawn");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, out.stdout)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut apps = 200;
    let mut runs = 5;
    let mut keep: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--apps" => apps = args.next().and_then(|v| v.parse().ok()).expect("--apps N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--keep" => keep = args.next().map(PathBuf::from),
            _ => {} // cargo passes --bench
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let _ = std::fs::remove_dir_all(root.join("apps"));
    let _ = std::fs::remove_dir_all(root.join("environments"));
    generate(&root, apps);
    let baton = env!("CARGO_BIN_EXE_baton");
    let kubectl = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());

    println!(
        "render benchmark: {apps} apps × {} environments, {runs} runs, tree at {}",
        ENVS.len(),
        root.display()
    );
    let mut baton_total = Vec::new();
    let mut kubectl_total = Vec::new();
    for round in 0..runs {
        let mut b = Duration::ZERO;
        let mut k = Duration::ZERO;
        for env in ENVS {
            let (t, ours) = run(Command::new(baton)
                .arg("--repo")
                .arg(&root)
                .arg("render")
                .arg(env));
            b += t;
            if kubectl {
                let (t, theirs) = run(Command::new("kubectl")
                    .arg("kustomize")
                    .arg(root.join("environments").join(env)));
                k += t;
                if round == 0 {
                    assert!(
                        ours == theirs,
                        "baton and kubectl kustomize differ on {env}"
                    );
                }
            }
        }
        baton_total.push(b);
        kubectl_total.push(k);
    }
    let b = median(baton_total);
    println!(
        "baton render (3 processes)        median {:>8.3} s",
        b.as_secs_f64()
    );
    if kubectl {
        let k = median(kubectl_total);
        println!(
            "kubectl kustomize (3 processes)   median {:>8.3} s",
            k.as_secs_f64()
        );
        println!(
            "ratio: baton is {:.1}x faster; outputs byte-identical",
            k.as_secs_f64() / b.as_secs_f64()
        );
    } else {
        println!("kubectl not found: only baton timed");
    }
}
