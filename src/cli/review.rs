//! `baton check` and `baton plan`: what the bot would say of a PR and of the whole pipeline,
//! read from GitHub, Git and the persisted state without writing anything.

use std::process::ExitCode;

use super::{CheckArgs, EXIT_PROBLEM, Output, PlanArgs};

/// The config repo clone under the workdir (`clone` names its directory) and the GitHub forge
/// the runtime config describes (its login asked of GitHub; Git over https with the forge's
/// credentials unless baton.yaml names its own).
async fn connect(
    cfg: &crate::config::RuntimeConfig,
    clone: &str,
) -> anyhow::Result<(
    crate::gitrepo::repo::ConfigRepo,
    crate::forge::github::GitHubForge,
)> {
    use crate::gitrepo::repo::Auth;
    let repo_slug = cfg.github_repository().ok_or_else(|| {
        anyhow::anyhow!(
            "cannot tell the GitHub repository from repo.url {:?}; set github.repository",
            cfg.repo.url
        )
    })?;
    let forge = crate::forge::github::GitHubForge::connect(&cfg.github, &repo_slug).await?;
    let auth = match Auth::from_config(cfg)? {
        Auth::None if cfg.repo.url.starts_with("http") => forge.git_auth(),
        auth => auth,
    };
    let repo = crate::gitrepo::repo::ConfigRepo::open(
        &cfg.workdir.join(clone),
        crate::gitrepo::repo::Remote {
            url: cfg.repo.url.clone(),
            branch: cfg.repo.branch.clone(),
            auth,
        },
        crate::gitrepo::repo::Identity::default(),
    )?;
    Ok((repo, forge))
}

pub(super) fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    use crate::prcheck::CheckOutcome;
    let cfg = crate::config::RuntimeConfig::load(&args.config, std::env::vars())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcomes = runtime.block_on(async {
        let (repo, forge) = connect(&cfg, "prcheck.git").await?;
        let checker =
            crate::prcheck::Checker::new(repo).with_render_options(crate::render::Options {
                helm: cfg.render.helm_binary(),
                ..Default::default()
            });
        let guard = checker.guard(&forge).await?;
        match args.output {
            // stdout stays the outcomes' JSON.
            Output::Json => eprint!("{}", guard_text(&guard)),
            Output::Table => print!("{}", guard_text(&guard)),
        }
        let outcomes = match args.pr {
            Some(n) => match checker.check_pull_request(&forge, n).await? {
                Some(o) => vec![o],
                None => anyhow::bail!(
                    "PR #{n} is not an open pull request to {}; nothing to check",
                    cfg.repo.branch
                ),
            },
            None => checker.run_once(&forge).await?,
        };
        anyhow::Ok(outcomes)
    })?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&outcomes)?),
        Output::Table if outcomes.is_empty() => {
            println!("no open pull request to {}", cfg.repo.branch)
        }
        Output::Table => {
            for o in &outcomes {
                match o {
                    CheckOutcome::Checked { pr, sha, passed } => println!(
                        "#{pr} {}: {}",
                        &sha[..sha.len().min(7)],
                        if *passed { "passed" } else { "failed" }
                    ),
                    CheckOutcome::AlreadyChecked { pr, sha } => {
                        println!("#{pr} {}: already checked", &sha[..sha.len().min(7)])
                    }
                    CheckOutcome::Failed { pr, error } => {
                        println!("#{pr}: could not be checked: {error}")
                    }
                }
            }
        }
    }
    let bad = outcomes.iter().any(|o| {
        matches!(
            o,
            CheckOutcome::Checked { passed: false, .. } | CheckOutcome::Failed { .. }
        )
    });
    Ok(if bad {
        ExitCode::from(EXIT_PROBLEM)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `baton check` says about the config branch's guard (one line, or one per setting to
/// make).
fn guard_text(guard: &crate::prcheck::guard::Guard) -> String {
    if guard.is_guarded() {
        return format!("{}\n", guard.summary());
    }
    let mut out = format!(
        "warning: people's PRs to {} can skip the promotion gates; set:\n",
        guard.branch
    );
    for what in &guard.missing {
        out.push_str(&format!("  - {what}\n"));
    }
    out
}

pub(super) fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    use crate::promote::plan::Action;
    let cfg = crate::config::RuntimeConfig::load(&args.config, std::env::vars())?;
    let now = match &args.at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| anyhow::anyhow!("--at {t:?}: {e} (write e.g. 2026-11-24T10:00:00+01:00)"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let actions = runtime.block_on(async {
        let (repo, forge) = connect(&cfg, "repo.git").await?;
        let engine = crate::engine::Engine::new(forge, repo);
        let mut store = crate::registry::auth::CredentialStore::from_config(&cfg.registries)?;
        if let Some(path) = &cfg.docker_config {
            store.merge_docker_config(path)?;
        }
        let client = crate::registry::client::RegistryClient::new(store, Default::default());
        let scanner = crate::registry::scan::Scanner::new(client, Default::default());
        let (releases, problems) = engine.releases(&scanner).await?;
        for p in &problems {
            eprintln!("warning: registry scan: {p}");
        }
        // What each environment runs and since when, as the bot persisted it (the same
        // soak clocks its status comments are written from).
        let deployments = match engine.pipeline() {
            Some(pipeline) => crate::service::load_deployments(&cfg, &pipeline)
                .await
                .unwrap_or_else(|e| {
                    eprintln!(
                        "warning: cannot read baton's state ({e}); soak gates show as waiting"
                    );
                    Default::default()
                }),
            None => Default::default(),
        };
        let actions = engine.plan_only(&releases, &deployments, now).await?;
        anyhow::Ok(actions)
    })?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&actions)?),
        Output::Table if actions.is_empty() => {
            println!("nothing to do: every environment pins what it should")
        }
        Output::Table => {
            for a in &actions {
                let (env, app) = a.key();
                let line = match a {
                    Action::Open { to, .. } => format!(
                        "open     {env}/{app} → {}",
                        to.tag.clone().unwrap_or_else(|| to.digest.clone())
                    ),
                    Action::Update { pr, to, .. } => format!(
                        "update   #{pr} {env}/{app} → {}",
                        to.tag.clone().unwrap_or_else(|| to.digest.clone())
                    ),
                    Action::OpenGroup { members, .. } => {
                        format!("open     {env}/{app} (group) → {}", members_text(members))
                    }
                    Action::UpdateGroup { pr, members, .. } => {
                        format!(
                            "update   #{pr} {env}/{app} (group) → {}",
                            members_text(members)
                        )
                    }
                    Action::Close { pr, reason, .. } => {
                        format!("close    #{pr} {env}/{app}: {reason}")
                    }
                    Action::Merge { pr, .. } => {
                        format!("merge    #{pr} {env}/{app}: every gate passed")
                    }
                    Action::Wait { pr, evaluation, .. } => {
                        let b = evaluation
                            .blocking()
                            .map(|g| format!("{}: {}", g.gate.title(), g.reason))
                            .unwrap_or_default();
                        format!("wait     #{pr} {env}/{app}: {b}")
                    }
                };
                println!("{line}");
                if let Action::Wait { evaluation, .. } | Action::Merge { evaluation, .. } = a {
                    for r in &evaluation.results {
                        println!(
                            "           {:<9} {:?}  {}",
                            r.gate.title(),
                            r.verdict,
                            r.detail(now)
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `web 1.5.0, worker release-2.2.0`: a group's members as `baton plan` shows them.
fn members_text(members: &[crate::promote::plan::MemberChange]) -> String {
    members
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m.app,
                m.to.tag.clone().unwrap_or_else(|| m.to.digest.clone())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
