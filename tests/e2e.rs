//! End to end: the real `baton run` binary, configured by a `baton.yaml` against the `sim`
//! stand-ins (GitHub with Git hosting, a Kubernetes API server, an OCI registry), plays the
//! release story, and every step is checked from the outside: pull requests, merges and
//! trailers in Git, statuses and comments on GitHub, objects in the cluster, the history.
//! Then the sandbox command itself (`baton sandbox --demo`, the README's first command).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton::sandbox::{OWNER, REPO, Sandbox, SandboxOptions, demo};

/// A `baton run` child process, killed when dropped.
struct Baton {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Baton {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Baton {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status within `timeout`.
    fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// GET `path` from baton on `port`: the body on 200.
fn get(port: u16, path: &str) -> Option<String> {
    common::http_get(port, path).and_then(|(code, body)| (code == 200).then_some(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_walks_dev_staging_prod_through_baton_run_and_a_broken_one_is_rolled_back() {
    release_story(SandboxOptions::default()).await;
}

/// The same story with a real control plane (etcd, kube-apiserver, controller-manager,
/// scheduler, kwok) in place of the Kubernetes stand-in: real Deployment and ReplicaSet
/// controllers roll out, and the broken release fails by the real progress deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_story_holds_on_a_real_control_plane() {
    let assets =
        controlplane::assets_dir(&common::project_root()).unwrap_or_else(|e| panic!("{e}"));
    release_story(SandboxOptions {
        kube_assets: Some(assets),
        ..SandboxOptions::default()
    })
    .await;
}

async fn release_story(options: SandboxOptions) {
    baton::tls::install_crypto_provider();
    let sb = Sandbox::start(&options).await.unwrap();
    let port = common::free_port();
    let log = sb.dir.join("baton-run.log");
    let child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["run", "--config", sb.config_file.to_str().unwrap()])
        .env("BATON_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn,baton=info")
        .env_remove("BATON_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut baton = Baton { child, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(port, "/healthz").is_none() {
        assert!(
            Instant::now() < deadline,
            "baton run did not serve /healthz within 60s:\n{}",
            baton.log()
        );
        assert!(
            baton.child.try_wait().unwrap().is_none(),
            "baton run exited:\n{}",
            baton.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sb.connect(format!("127.0.0.1:{port}").parse().unwrap());

    let mut story = Vec::new();
    let result = demo::run(&sb, &mut story).await;
    let story = String::from_utf8_lossy(&story).into_owned();
    assert!(
        result.is_ok(),
        "{}\n--- story ---\n{story}\n--- baton run log ---\n{}",
        result.unwrap_err(),
        baton.log()
    );

    // Git: merge commits carry the audit trailers, with the approvers and the promoter.
    let repo = git2::Repository::open_bare(sb.forge.repo_path(OWNER, REPO)).unwrap();
    let tip = repo.refname_to_id("refs/heads/main").unwrap();
    let history = baton::gitrepo::history::read(&repo, tip, &Default::default()).unwrap();
    let prod = history
        .iter()
        .find(|e| e.promotion.environment == "prod")
        .expect("a prod promotion in the history");
    let text = serde_json::to_string(prod).unwrap();
    assert!(
        text.contains("alice") && text.contains("bob"),
        "prod's trailers name both approvers and the promoter: {text}"
    );
    assert_eq!(prod.promotion.tag.as_deref(), Some("1.1.0"), "{text}");

    // PR bodies: where the release came from (OCI labels), with the commits since the
    // pinned release.
    let first = sb.forge.pull(OWNER, REPO, 1).unwrap();
    let body = first.body.unwrap_or_default();
    assert!(
        body.contains("/commit/") && body.contains("/compare/"),
        "the first PR links the revision and the commits since the pinned one:\n{body}"
    );

    // The merged PR's status comment is the rollout's timeline: applying, then healthy.
    let status = sb
        .forge
        .comments(OWNER, REPO, 1)
        .into_iter()
        .find(|c| c.body.contains("<!-- baton:status -->"))
        .map(|c| c.body)
        .unwrap_or_default();
    let applying = status.find("- applying");
    let healthy = status.find("- healthy in");
    assert!(
        applying.is_some() && healthy.is_some() && applying < healthy,
        "dev PR timeline: {status}"
    );

    // GitHub: one status comment per promotion PR, never two.
    for pr in sb.forge.pulls(OWNER, REPO) {
        let status_comments = sb
            .forge
            .comments(OWNER, REPO, pr.number)
            .into_iter()
            .filter(|c| c.body.contains("<!-- baton:status -->"))
            .count();
        assert!(
            status_comments <= 1,
            "#{} has {status_comments} status comments",
            pr.number
        );
    }
    // One promotion PR per (env, app) at a time: no duplicates were opened.
    let mut opened = std::collections::BTreeMap::<(String, String), usize>::new();
    for pr in sb.forge.pulls(OWNER, REPO) {
        *opened
            .entry((pr.head_ref.clone(), pr.head_sha.clone()))
            .or_default() += 1;
    }
    assert!(
        opened.values().all(|n| *n == 1),
        "a PR was duplicated: {opened:?}"
    );

    // One rollback, not a cascade: the rolled-back-to release is judged on its own rollout.
    let rollbacks = sb
        .forge
        .pulls(OWNER, REPO)
        .into_iter()
        .filter(|p| p.labels.iter().any(|l| l == "baton:rollback"))
        .count();
    assert_eq!(rollbacks, 1, "{:#?}", sb.forge.pulls(OWNER, REPO));

    // The cluster: prod runs the promoted digest from its own registry copy.
    let web = sb
        .cluster
        .get("apps/v1", "Deployment", "shop-prod", "web")
        .unwrap();
    let image = web
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(|v| v.as_str())
        .unwrap();
    assert!(
        image.contains("/prod-shop/web:1.1.0@sha256:"),
        "prod pins its own copy by digest: {image}"
    );

    // The status page's state: prod's cell shows the promoted tag and its last deploy.
    let state: serde_json::Value =
        serde_json::from_str(&get(port, "/api/v1/state").unwrap()).unwrap();
    let prod_web = state["apps"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["name"] == "web"))
        .and_then(|a| a["cells"].as_array())
        .and_then(|cells| cells.iter().find(|c| c["env"] == "prod"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(prod_web["pinned"]["tag"], "1.1.0", "{state:#}");
    assert!(prod_web["lastDeploy"].is_object(), "{state:#}");

    // DORA: dev's broken release counts as one failed change, restored by the rollback; the
    // service shows it in /api/v1/dora and as gauges once a pass after the rollback ran.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dev = loop {
        let dora: serde_json::Value = get(port, "/api/v1/dora?env=dev")
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or_default();
        let dev = dora["environments"][0].clone();
        if dev["changeFailureRate"]["rolledBack"] == 1 {
            break dev;
        }
        assert!(
            Instant::now() < deadline,
            "/api/v1/dora never showed dev's rollback: {dora:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dev["env"], "dev", "{dev:#}");
    assert_eq!(dev["changeFailureRate"]["failed"], 1, "{dev:#}");
    assert_eq!(dev["changeFailureRate"]["total"], 2, "{dev:#}");
    assert_eq!(dev["timeToRestore"]["restored"], 1, "{dev:#}");
    assert_eq!(dev["deploymentFrequency"]["deployments"], 2, "{dev:#}");
    assert_eq!(
        dev["leadTime"]["fromImageCreated"], 2,
        "the sandbox's images carry a plausible created time: {dev:#}"
    );

    // The status page after the story: the pipelines, dev's history with its rollback, and
    // the DORA tiles of every environment.
    let page = get(port, "/").unwrap();
    assert_eq!(page.matches("<ol class=\"pipeline\"").count(), 2, "{page}");
    assert_eq!(page.matches("<li class=\"arrow\"").count(), 4, "{page}");
    assert_eq!(page.matches("<div class=\"tile\"").count(), 12, "{page}");
    assert!(
        page.contains("<span class=\"rollback\">rollback</span>"),
        "{page}"
    );
    assert!(
        page.contains("50% (1/2)"),
        "dev's change failure rate: {page}"
    );

    // The service: metrics count the promotions; SIGTERM stops it cleanly.
    let metrics = get(port, "/metrics").unwrap();
    assert!(metrics.contains("result=\"merged\""), "{metrics}");
    assert!(
        metrics.contains("baton_dora_change_failure_rate{env=\"dev\",app=\"web\"} 0.5"),
        "{metrics}"
    );
    let status = baton.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "baton run did not exit 0 on SIGTERM: {status:?}\n{}",
        baton.log()
    );
}

/// `baton sandbox --demo` with `extra` arguments: asserts it exits 0 having told every step of
/// the story, and returns its output.
fn sandbox_demo(extra: &[&std::ffi::OsStr]) -> String {
    // Each step has its own deadline; the whole story gets them all, plus two for starting
    // and stopping (a hang anywhere fails the test instead of the suite).
    let out = common::output_within(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["sandbox", "--demo"])
            .args(extra)
            .env_remove("RUST_LOG"),
        demo::STEP_TIMEOUT * (demo::STEPS.len() as u32 + 2),
    );
    let stdout = common::stdout(&out);
    assert!(
        out.status.success(),
        "exit {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        common::stderr(&out)
    );
    for step in demo::STEPS {
        assert!(
            stdout.contains(step),
            "the story skipped {step:?}:\n{stdout}"
        );
    }
    assert!(stdout.contains("the story is complete"), "{stdout}");
    stdout
}

#[test]
fn the_sandbox_demo_tells_the_whole_story_and_exits_zero() {
    let stdout = sandbox_demo(&[]);
    // It ends with `baton dora`: dev's one rollback is its failed change.
    let dora = stdout
        .find("DORA metrics from")
        .map(|i| &stdout[i..])
        .unwrap_or_else(|| panic!("no DORA table:\n{stdout}"));
    let dev_web = dora
        .lines()
        .find(|l| l.starts_with("dev ") && l.contains(" web "))
        .unwrap_or_else(|| panic!("no dev/web row:\n{dora}"));
    assert!(dev_web.contains("50% (1/2)"), "{dev_web}");
    assert!(
        stdout.contains("dev: 1 of 2 promotions failed and were rolled back; restored in"),
        "{stdout}"
    );
    assert!(
        stdout.contains("status page       http://127.0.0.1:"),
        "{stdout}"
    );
}

#[test]
fn the_sandbox_demo_on_a_real_control_plane_exits_zero() {
    let assets =
        controlplane::assets_dir(&common::project_root()).unwrap_or_else(|e| panic!("{e}"));
    let stdout = sandbox_demo(&["--kube-assets".as_ref(), assets.as_os_str()]);
    assert!(stdout.contains("(real control plane)"), "{stdout}");
}
