//! `baton sandbox --demo`: a release walks dev → staging → prod against the stand-ins, and a
//! broken one is rolled back. Every step is observed from the outside (the GitHub stand-in's
//! pull requests and comments, the Kubernetes stand-in's objects, Git history), as a user
//! would see it, with a bounded wait; the first step that does not happen in time ends the
//! story with its name and what was seen.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;
use sim::forge::{PullView, ReviewState};

use super::{OWNER, RELEASE_MANAGERS, REPO, Sandbox};

/// How long one step may take before the story fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// The step that did not happen.
#[derive(Debug, thiserror::Error)]
#[error("step {step} ({title}) failed: {message}")]
pub struct DemoError {
    pub step: usize,
    pub title: String,
    pub message: String,
}

/// The steps, in order (numbered in the output).
pub const STEPS: [&str; 13] = [
    "baton applies every environment",
    "a blessed image is pushed: web 1.1.0",
    "dev: promotion PR opened and auto-merged",
    "dev: rollout healthy on 1.1.0",
    "staging: PR after dev soaked, merged once baton/validate passed, healthy, smoke test passed",
    "prod: PR waits for approvals and /promote prod",
    "prod: two release managers approve, alice comments /promote prod",
    "prod: every gate passed; baton copies web 1.1.0 to the prod registry by digest, then merges",
    "prod: rollout healthy on its own registry copy",
    "a broken release (web 1.2.0) reaches dev, fails, and is rolled back",
    "the audit log: baton history",
    "GitHub: a Deployment per rollout, and the promotion dashboard issue",
    "the DORA metrics: baton dora",
];

/// Workload kinds whose pod templates name images.
const WORKLOADS: [(&str, &str); 7] = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("v1", "Pod"),
];

/// The container images an object names (pod templates of any depth, pods).
pub fn container_images(value: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "containers" || k == "initContainers" || k == "ephemeralContainers" {
                        for c in v.as_array().into_iter().flatten() {
                            if let Some(image) = c.get("image").and_then(Value::as_str) {
                                out.push(image.to_string());
                            }
                        }
                    } else {
                        walk(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut out);
    out
}

/// Every container image named by an object in the cluster stand-in: `(object, image)`.
pub fn cluster_images(sb: &Sandbox) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (api_version, kind) in WORKLOADS {
        for object in sb.cluster.list(api_version, kind, None) {
            let name = format!(
                "{kind}/{}/{}",
                object["metadata"]["namespace"].as_str().unwrap_or(""),
                object["metadata"]["name"].as_str().unwrap_or("")
            );
            out.extend(
                container_images(&object)
                    .into_iter()
                    .map(|i| (name.clone(), i)),
            );
        }
    }
    out
}

/// The image references in the cluster stand-in that do not resolve (a manifest `HEAD` by
/// digest, else by tag) in their registry, with why. The invariant that keeps a pin from ever
/// naming an image that is not there (`copyTo` copies before the merge).
pub async fn unresolved_images(sb: &Sandbox) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut checked = std::collections::BTreeMap::<String, Option<String>>::new();
    let mut out = Vec::new();
    for (object, image) in cluster_images(sb) {
        if !checked.contains_key(&image) {
            let problem = head_image(&http, &image).await.err();
            checked.insert(image.clone(), problem);
        }
        if let Some(Some(problem)) = checked.get(&image) {
            out.push(format!("{object}: {image}: {problem}"));
        }
    }
    out
}

/// `HEAD` an image reference's manifest (by digest when it has one) in its local registry:
/// `Err` says why it does not resolve.
pub async fn head_image(http: &reqwest::Client, image: &str) -> Result<(), String> {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let (host, path) = name
        .split_once('/')
        .ok_or_else(|| "no registry host".to_string())?;
    if !(host.starts_with("127.") || host.starts_with("localhost")) {
        return Err(format!("{host} is not a local registry"));
    }
    let (repo, tag) = match path.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (path, None),
    };
    let reference = digest.or(tag).unwrap_or("latest");
    let resp = http
        .head(format!("http://{host}/v2/{repo}/manifests/{reference}"))
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .send()
        .await
        .map_err(|e| format!("registry unreachable: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    Ok(())
}

/// What `baton dora --config baton.yaml` prints for the sandbox's config repo: the last 30
/// days, with image metadata from the registry stand-in and GitHub from the forge stand-in.
pub async fn dora_report(sb: &Sandbox) -> Result<crate::dora::Report, String> {
    let repo = git2::Repository::open_bare(sb.forge.repo_path(OWNER, REPO))
        .map_err(|e| format!("cannot open the config repo: {e}"))?;
    let tip = repo
        .refname_to_id("refs/heads/main")
        .map_err(|e| format!("no main branch: {e}"))?;
    let entries = crate::gitrepo::history::read(&repo, tip, &Default::default())
        .map_err(|e| format!("cannot read history: {e}"))?;
    let blob = repo
        .revparse_single("refs/heads/main:policies/pipeline.yaml")
        .and_then(|o| o.peel_to_blob())
        .map_err(|e| format!("no policies/pipeline.yaml: {e}"))?;
    let text = std::str::from_utf8(blob.content()).map_err(|e| e.to_string())?;
    let pipeline = crate::config::Pipeline::parse("policies/pipeline.yaml", text)
        .map_err(|e| e.to_string())?
        .pipeline;
    let (scanner, github) = crate::dora::gather::clients(&sb.config)
        .await
        .map_err(|e| e.to_string())?;
    let now = chrono::Utc::now();
    let window = crate::dora::Window::last_days(30, now);
    let facts = crate::dora::gather(
        &entries,
        &pipeline,
        &scanner,
        github.as_ref(),
        &crate::dora::gather::web_host(&sb.config),
        window.since,
    )
    .await;
    let envs: Vec<String> = pipeline
        .environments
        .iter()
        .map(|e| e.name.clone())
        .collect();
    Ok(crate::dora::compute(&entries, &envs, &facts, &window))
}

struct Story<W: Write> {
    out: W,
    started: Instant,
    step: usize,
}

impl<W: Write> Story<W> {
    /// The invariant after every step: every image the clusters run resolves in its registry.
    async fn images_resolve(&self, sb: &Sandbox) -> Result<(), DemoError> {
        let unresolved = unresolved_images(sb).await;
        if unresolved.is_empty() {
            return Ok(());
        }
        Err(self.fail(format!(
            "image references in the cluster do not resolve in their registry: {}",
            unresolved.join("; ")
        )))
    }

    fn begin(&mut self, step: usize) {
        self.step = step;
        let _ = writeln!(
            self.out,
            "[{:>5.1}s] {}/{} {}",
            self.started.elapsed().as_secs_f64(),
            step,
            STEPS.len(),
            STEPS[step - 1]
        );
    }

    fn say(&mut self, text: impl std::fmt::Display) {
        let _ = writeln!(
            self.out,
            "[{:>5.1}s]       {text}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn fail(&self, message: impl Into<String>) -> DemoError {
        DemoError {
            step: self.step,
            title: STEPS[self.step - 1].to_string(),
            message: message.into(),
        }
    }

    /// Poll `probe` until it yields, for at most [`STEP_TIMEOUT`]. `what` says what was
    /// awaited; `seen` what was there instead, for the error.
    async fn wait<T>(
        &self,
        what: &str,
        mut probe: impl FnMut() -> Option<T>,
        seen: impl Fn() -> String,
    ) -> Result<T, DemoError> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(v) = probe() {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(self.fail(format!(
                    "{what}: not within {}s; seen: {}",
                    STEP_TIMEOUT.as_secs(),
                    seen()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn pulls(sb: &Sandbox) -> Vec<PullView> {
    sb.forge.pulls(OWNER, REPO)
}

/// The newest PR for `env` carrying `label`, numbered above `after`.
fn pr_for(sb: &Sandbox, env: &str, label: &str, after: u64) -> Option<PullView> {
    pulls(sb)
        .into_iter()
        .filter(|p| p.number > after)
        .filter(|p| p.labels.iter().any(|l| l == &format!("env:{env}")))
        .filter(|p| p.labels.iter().any(|l| l == label))
        .max_by_key(|p| p.number)
}

fn describe_pulls(sb: &Sandbox) -> String {
    let ps = pulls(sb);
    if ps.is_empty() {
        return "no pull requests".into();
    }
    ps.iter()
        .map(|p| {
            format!(
                "#{} {:?} [{}] {}",
                p.number,
                p.title,
                p.labels.join(","),
                if p.merged {
                    "merged"
                } else if p.open {
                    "open"
                } else {
                    "closed"
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The web Deployment of `env`: its image, and whether its rollout is complete.
fn web(sb: &Sandbox, env: &str) -> Option<(String, bool)> {
    let d = sb
        .cluster
        .get("apps/v1", "Deployment", &format!("shop-{env}"), "web")?;
    let image = d
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)?
        .to_string();
    let n = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let want = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let done = n("/status/observedGeneration") == n("/metadata/generation")
        && n("/status/updatedReplicas") == want
        && n("/status/availableReplicas") == want
        // The controller says the new ReplicaSet is available: the rollout finished.
        && d.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable"
                })
            });
    Some((image, done))
}

fn describe_web(sb: &Sandbox, env: &str) -> String {
    match web(sb, env) {
        None => format!("no Deployment shop-{env}/web"),
        Some((image, done)) => format!(
            "shop-{env}/web runs {image} ({})",
            if done { "rolled out" } else { "rolling out" }
        ),
    }
}

fn healthy_on(sb: &Sandbox, env: &str, digest: &str) -> bool {
    matches!(web(sb, env), Some((image, true)) if image.ends_with(digest))
}

/// What the GitHub stand-in holds of baton's Deployments, once every environment has one that
/// succeeded and dev's failed rollout was marked inactive: `GitHub Deployments: dev 3, …`.
/// `None` until then; never two Deployments of one environment and commit.
fn deployments_summary(sb: &Sandbox) -> Option<String> {
    let all = sb.forge.deployments(OWNER, REPO);
    let mut seen = std::collections::BTreeSet::new();
    if !all
        .iter()
        .all(|d| seen.insert((d.environment.clone(), d.sha.clone())))
    {
        return None;
    }
    let of = |env: &str| -> Vec<&sim::forge::DeploymentView> {
        all.iter().filter(|d| d.environment == env).collect()
    };
    let succeeded = |env: &str| of(env).iter().any(|d| d.states().contains(&"success"));
    let failed_inactive = of("dev")
        .iter()
        .any(|d| d.states() == ["in_progress", "failure", "inactive"]);
    (["dev", "staging", "prod"].iter().all(|e| succeeded(e)) && failed_inactive).then(|| {
        format!(
            "GitHub Deployments: dev {}, staging {}, prod {} (one per rollout); dev's failed rollout is inactive since its rollback succeeded",
            of("dev").len(),
            of("staging").len(),
            of("prod").len()
        )
    })
}

fn describe_deployments(sb: &Sandbox) -> String {
    sb.forge
        .deployments(OWNER, REPO)
        .iter()
        .map(|d| format!("{} {} {:?}", d.environment, short(&d.sha), d.states()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The dashboard issue, once it shows web 1.1.0 running in dev (rolled back to) and prod:
/// `dashboard issue #7 …`.
fn dashboard_issue(sb: &Sandbox) -> Option<String> {
    let bot = sb.forge.bot_login();
    let found: Vec<_> = sb
        .forge
        .issues(OWNER, REPO)
        .into_iter()
        .filter(|i| i.author == bot && i.title == crate::service::dashboard::TITLE)
        .collect();
    match &found[..] {
        [one] if one.body.contains("| dev | `1.1.0`") && one.body.contains("| prod | `1.1.0`") => {
            Some(format!(
                "dashboard issue #{} \"{}\": {}/{OWNER}/{REPO}/issues/{} (one, edited in place)",
                one.number,
                one.title,
                sb.forge.url(),
                one.number
            ))
        }
        _ => None,
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// Play the story, writing progress to `out`.
pub async fn run<W: Write>(sb: &Sandbox, out: W) -> Result<(), DemoError> {
    let mut s = Story {
        out,
        started: Instant::now(),
        step: 0,
    };

    s.begin(1);
    let initial = sb.initial["web"].clone();
    for env in ["dev", "staging", "prod"] {
        s.wait(
            &format!("{env} running web 1.0.0"),
            || healthy_on(sb, env, &initial).then_some(()),
            || describe_web(sb, env),
        )
        .await?;
        s.say(format!("{env}: web 1.0.0 ({}) healthy", short(&initial)));
    }
    if sb.registry.digest("prod-shop/web", "1.0.0").as_deref() == Some(initial.as_str()) {
        s.say(format!(
            "prod pins {}/prod-shop/web (copyTo); baton copied 1.0.0 there before applying prod",
            sb.registry.host()
        ));
    }

    s.images_resolve(sb).await?;

    s.begin(2);
    let pushed = Instant::now();
    let good = sb.push("web", "1.1.0");
    s.say(format!(
        "pushed {}/shop/web:1.1.0 = {good}; the registry notifies baton",
        sb.registry.host()
    ));

    s.images_resolve(sb).await?;

    s.begin(3);
    let dev = s
        .wait(
            "a dev promotion PR",
            || pr_for(sb, "dev", "baton:promotion", 0),
            || describe_pulls(sb),
        )
        .await?;
    s.say(format!(
        "#{} \"{}\" opened {:.2}s after the push",
        dev.number,
        dev.title,
        pushed.elapsed().as_secs_f64()
    ));
    let n = dev.number;
    s.wait(
        "the dev PR merged",
        || pr_for(sb, "dev", "baton:promotion", n - 1).filter(|p| p.merged),
        || describe_pulls(sb),
    )
    .await?;
    s.say(format!("#{n} merged by baton (autoMerge)"));

    s.images_resolve(sb).await?;

    s.begin(4);
    s.wait(
        "dev running 1.1.0",
        || healthy_on(sb, "dev", &good).then_some(()),
        || describe_web(sb, "dev"),
    )
    .await?;
    s.say(format!("dev: web 1.1.0 ({}) rolled out", short(&good)));

    s.images_resolve(sb).await?;

    s.begin(5);
    let staging = s
        .wait(
            "a staging promotion PR",
            || pr_for(sb, "staging", "baton:promotion", 0),
            || describe_pulls(sb),
        )
        .await?;
    s.say(format!("#{} \"{}\" opened", staging.number, staging.title));
    let n = staging.number;
    s.wait(
        "the staging PR merged",
        || pr_for(sb, "staging", "baton:promotion", n - 1).filter(|p| p.merged),
        || describe_pulls(sb),
    )
    .await?;
    s.wait(
        "staging running 1.1.0",
        || healthy_on(sb, "staging", &good).then_some(()),
        || describe_web(sb, "staging"),
    )
    .await?;
    s.say(format!("#{n} merged; staging: web 1.1.0 rolled out"));
    let verified = s
        .wait(
            "staging's smoke test (a verification Job) passed",
            || {
                sb.forge
                    .comments(OWNER, REPO, n)
                    .into_iter()
                    .filter(|c| c.body.contains("baton:status"))
                    .flat_map(|c| {
                        c.body
                            .lines()
                            .filter(|l| l.starts_with("- verified"))
                            .map(String::from)
                            .collect::<Vec<_>>()
                    })
                    .next()
            },
            || {
                sb.forge
                    .comments(OWNER, REPO, n)
                    .into_iter()
                    .map(|c| c.body)
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            },
        )
        .await?;
    s.say(format!("#{n}: {}", verified.trim_start_matches("- ")));

    s.images_resolve(sb).await?;

    s.begin(6);
    let prod = s
        .wait(
            "a prod promotion PR",
            || pr_for(sb, "prod", "baton:promotion", 0),
            || describe_pulls(sb),
        )
        .await?;
    let n = prod.number;
    s.say(format!("#{n} \"{}\" opened", prod.title));
    let waiting = s
        .wait(
            "the prod PR's status comment",
            || {
                sb.forge
                    .comments(OWNER, REPO, n)
                    .into_iter()
                    .find(|c| c.body.contains("baton:status"))
                    .map(|c| c.body)
            },
            || format!("{} comment(s)", sb.forge.comments(OWNER, REPO, n).len()),
        )
        .await?;
    if pr_for(sb, "prod", "baton:promotion", n - 1).is_some_and(|p| p.merged) {
        return Err(s.fail(format!("#{n} merged without approvals")));
    }
    // The status comment: a `### baton` title, then the headline saying what it waits for.
    let headline = waiting
        .lines()
        .skip_while(|l| !l.starts_with("### baton"))
        .skip(1)
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string();
    s.say(format!("#{n} waits: {headline}"));

    s.images_resolve(sb).await?;

    s.begin(7);
    for person in RELEASE_MANAGERS {
        sb.forge
            .review_as(person, OWNER, REPO, n, ReviewState::Approved, "LGTM")
            .map_err(|e| s.fail(format!("{person} cannot approve #{n}: {e:?}")))?;
        s.say(format!("{person} approved #{n}"));
    }
    sb.forge
        .comment_as(RELEASE_MANAGERS[0], OWNER, REPO, n, "/promote prod")
        .map_err(|e| s.fail(format!("cannot comment on #{n}: {e:?}")))?;
    s.say(format!("{} commented /promote prod", RELEASE_MANAGERS[0]));
    s.images_resolve(sb).await?;

    s.begin(8);
    let status_of = |n: u64| {
        sb.forge
            .comments(OWNER, REPO, n)
            .into_iter()
            .find(|c| c.body.contains("baton:status"))
            .map(|c| c.body)
            .unwrap_or_default()
    };
    let copied = s
        .wait(
            "the prod PR's timeline says the image was copied",
            || {
                status_of(n)
                    .lines()
                    .find(|l| l.starts_with("- copied"))
                    .map(|l| l.trim_start_matches("- ").to_string())
            },
            || format!("{}; status comment: {}", describe_pulls(sb), status_of(n)),
        )
        .await?;
    s.say(format!("#{n}: {copied}"));
    let copy = format!("{}/prod-shop/web", sb.registry.host());
    if sb.registry.digest("prod-shop/web", "1.1.0").as_deref() != Some(good.as_str()) {
        return Err(s.fail(format!(
            "{copy}:1.1.0 is not {good} in the registry after the copy"
        )));
    }
    s.say(format!("{copy}:1.1.0 = {} is there", short(&good)));
    s.wait(
        "the prod PR merged",
        || pr_for(sb, "prod", "baton:promotion", n - 1).filter(|p| p.merged),
        || format!("{}; status comment: {}", describe_pulls(sb), status_of(n)),
    )
    .await?;
    s.say(format!("#{n} merged after the copy"));
    s.images_resolve(sb).await?;

    s.begin(9);
    s.wait(
        "prod running 1.1.0 from its own registry copy",
        || {
            (healthy_on(sb, "prod", &good)
                && web(sb, "prod").is_some_and(|(image, _)| image.contains("/prod-shop/")))
            .then_some(())
        },
        || describe_web(sb, "prod"),
    )
    .await?;
    s.say("prod: web 1.1.0 rolled out from prod-shop/web");
    s.images_resolve(sb).await?;

    s.begin(10);
    let before = pulls(sb).iter().map(|p| p.number).max().unwrap_or(0);
    let bad = sb.push("web", "1.2.0");
    if let Err(e) = sb.cluster.mark_broken(&bad) {
        return Err(s.fail(format!("cannot mark {bad} broken: {e}")));
    }
    s.say(format!(
        "pushed web 1.2.0 = {bad}; its pods will never become ready"
    ));
    let broken = s
        .wait(
            "the dev PR for 1.2.0 merged",
            || pr_for(sb, "dev", "baton:promotion", before).filter(|p| p.merged),
            || describe_pulls(sb),
        )
        .await?;
    s.say(format!(
        "#{} merged into dev; the rollout fails",
        broken.number
    ));
    let rollback = s
        .wait(
            "a rollback PR for dev, merged",
            || pr_for(sb, "dev", "baton:rollback", broken.number).filter(|p| p.merged),
            || describe_pulls(sb),
        )
        .await?;
    s.say(format!(
        "#{} \"{}\" merged by baton",
        rollback.number, rollback.title
    ));
    s.wait(
        "dev back on 1.1.0",
        || healthy_on(sb, "dev", &good).then_some(()),
        || describe_web(sb, "dev"),
    )
    .await?;
    s.say("dev: back on web 1.1.0 and healthy");

    s.images_resolve(sb).await?;

    s.begin(11);
    let repo = git2::Repository::open_bare(sb.forge.repo_path(OWNER, REPO))
        .map_err(|e| s.fail(format!("cannot open the config repo: {e}")))?;
    let tip = repo
        .refname_to_id("refs/heads/main")
        .map_err(|e| s.fail(format!("no main branch: {e}")))?;
    let entries = crate::gitrepo::history::read(&repo, tip, &Default::default())
        .map_err(|e| s.fail(format!("cannot read history: {e}")))?;
    let _ = write!(s.out, "{}", crate::gitrepo::history::table(&entries));
    for env in ["dev", "staging", "prod"] {
        if !entries.iter().any(|e| e.promotion.environment == env) {
            return Err(s.fail(format!("no promotion to {env} in the history")));
        }
    }
    s.begin(12);
    let summary = s
        .wait(
            "a GitHub Deployment per rollout, the failed one inactive after its rollback",
            || deployments_summary(sb),
            || describe_deployments(sb),
        )
        .await?;
    s.say(summary);
    let dashboard = s
        .wait(
            "the promotion dashboard issue, showing what runs where",
            || dashboard_issue(sb),
            || {
                format!(
                    "issues: {:?}",
                    sb.forge
                        .issues(OWNER, REPO)
                        .iter()
                        .map(|i| (i.number, i.title.clone(), i.author.clone()))
                        .collect::<Vec<_>>()
                )
            },
        )
        .await?;
    s.say(dashboard);

    s.begin(13);
    let report = dora_report(sb).await.map_err(|e| s.fail(e))?;
    let _ = write!(s.out, "{}", crate::dora::table(&report));
    let dev = report
        .environments
        .iter()
        .find(|e| e.env == "dev")
        .ok_or_else(|| s.fail("no dev row in the DORA report"))?;
    let cfr = &dev.metrics.change_failure_rate;
    let restore = &dev.metrics.time_to_restore;
    if cfr.rolled_back != 1 || cfr.failed != 1 || restore.restored != 1 {
        return Err(s.fail(format!(
            "dev should show the one rolled-back promotion, restored: {cfr:?} {restore:?}"
        )));
    }
    s.say(format!(
        "dev: {} of {} promotions failed and were rolled back; restored in {}",
        cfr.failed,
        cfr.total,
        restore
            .median_seconds
            .map_or("-".into(), crate::dora::human)
    ));

    let images = cluster_images(sb).len();
    s.images_resolve(sb).await?;
    s.say(format!(
        "after every step, every image reference in the cluster ({images} now) resolved in its registry"
    ));
    let _ = writeln!(
        s.out,
        "[{:>5.1}s] the story is complete",
        s.started.elapsed().as_secs_f64()
    );
    Ok(())
}
