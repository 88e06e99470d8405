//! Slash-commands in PR comments: the grammar (pure parsing, no I/O) and who may run what.
//!
//! ```text
//! /promote <env>
//! /rollback <env> [to <tag|digest>]
//! /retry [env]
//! /prune <env>
//! /hold [reason]
//! /unhold
//! /status
//! /help
//! ```
//!
//! A command is a line whose first non-blank character is `/`, outside fenced code blocks and
//! quotes (`> `), so that quoting someone's `/promote prod` does not run it again. Several
//! commands in one comment run in order.

use std::fmt;

use serde::Serialize;

use crate::config::pipeline::Environment;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Command {
    Promote {
        env: String,
    },
    Rollback {
        env: String,
        to: Option<String>,
    },
    /// Run the environment's verification (`verify:` Jobs) again for the digest this PR
    /// promoted, as a new attempt. Without an environment: the PR's own environment.
    Retry {
        env: Option<String>,
    },
    /// Let the deletions the prune guard holds back in an environment go ahead.
    Prune {
        env: String,
    },
    Hold {
        reason: Option<String>,
    },
    Unhold,
    Status,
    Help,
}

/// A line that looked like a command but is not one the bot knows or is malformed. The bot
/// answers it with the usage text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command `/{0}`")]
    Unknown(String),
    #[error("`/{command}` {problem}; usage: {usage}")]
    Usage {
        command: &'static str,
        problem: String,
        usage: &'static str,
    },
}

/// One line of a comment, parsed.
pub type Parsed = Result<Command, ParseError>;

/// The help text posted in reply to `/help` and to unknown commands.
pub const HELP: &str = "\
| command | what it does | who |
|---|---|---|
| `/promote <env>` | merge this promotion once every other gate passes | write access (and the environment's approvers) |
| `/rollback <env> [to <tag\\|digest>]` | open a PR restoring the previous healthy release (or the named one) | write access (and the environment's approvers) |
| `/retry [env]` | run the environment's verification Jobs again for this PR's release (default: the PR's environment) | write access (and the environment's approvers) |
| `/prune <env>` | let the deletions held back in the environment (more than its `prune.maxFraction` at once) go ahead | write access (and the environment's approvers) |
| `/hold [reason]` | stop this promotion from merging (label `baton:hold`) | triage access or more |
| `/unhold` | release a hold | write access (and the environment's approvers) |
| `/status` | post the gate table now | anyone |
| `/help` | this table | anyone |";

impl Command {
    /// The command name as typed, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Promote { .. } => "promote",
            Self::Rollback { .. } => "rollback",
            Self::Retry { .. } => "retry",
            Self::Prune { .. } => "prune",
            Self::Hold { .. } => "hold",
            Self::Unhold => "unhold",
            Self::Status => "status",
            Self::Help => "help",
        }
    }

    /// The environment the command names, if any.
    pub fn environment(&self) -> Option<&str> {
        match self {
            Self::Promote { env } | Self::Rollback { env, .. } | Self::Prune { env } => Some(env),
            Self::Retry { env } => env.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Promote { env } => write!(f, "/promote {env}"),
            Self::Rollback { env, to: None } => write!(f, "/rollback {env}"),
            Self::Rollback { env, to: Some(to) } => write!(f, "/rollback {env} to {to}"),
            Self::Retry { env: None } => f.write_str("/retry"),
            Self::Retry { env: Some(env) } => write!(f, "/retry {env}"),
            Self::Prune { env } => write!(f, "/prune {env}"),
            Self::Hold { reason: None } => f.write_str("/hold"),
            Self::Hold { reason: Some(r) } => write!(f, "/hold {r}"),
            Self::Unhold => f.write_str("/unhold"),
            Self::Status => f.write_str("/status"),
            Self::Help => f.write_str("/help"),
        }
    }
}

/// Every command in a comment body, in order. Lines that are not commands are skipped.
pub fn parse_comment(body: &str) -> Vec<Parsed> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for line in body.lines() {
        let trimmed = line.trim();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        if line.starts_with("    ") || line.starts_with('\t') || trimmed.starts_with('>') {
            continue; // indented code or a quote
        }
        if let Some(rest) = trimmed.strip_prefix('/')
            && let Some(parsed) = parse_line(rest)
        {
            out.push(parsed);
        }
    }
    out
}

/// Parse the text after `/`. `None` when it is not a command at all (`/` followed by a
/// space or nothing, or a path such as `/etc/hosts`).
fn parse_line(rest: &str) -> Option<Parsed> {
    let mut words = rest.split_whitespace();
    let name = words.next()?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    let args: Vec<&str> = words.collect();
    let usage = |command, problem: &str, usage| {
        Err(ParseError::Usage {
            command,
            problem: problem.to_string(),
            usage,
        })
    };
    let parsed = match name.to_ascii_lowercase().as_str() {
        "promote" => match args.as_slice() {
            [env] => Ok(Command::Promote {
                env: env.to_string(),
            }),
            [] => usage("promote", "needs an environment", "/promote <env>"),
            _ => usage("promote", "takes one environment", "/promote <env>"),
        },
        "rollback" => match args.as_slice() {
            [env] => Ok(Command::Rollback {
                env: env.to_string(),
                to: None,
            }),
            [env, kw, target] if kw.eq_ignore_ascii_case("to") => Ok(Command::Rollback {
                env: env.to_string(),
                to: Some(target.to_string()),
            }),
            [] => usage(
                "rollback",
                "needs an environment",
                "/rollback <env> [to <tag|digest>]",
            ),
            _ => usage(
                "rollback",
                "has unexpected arguments",
                "/rollback <env> [to <tag|digest>]",
            ),
        },
        "retry" => match args.as_slice() {
            [] => Ok(Command::Retry { env: None }),
            [env] => Ok(Command::Retry {
                env: Some(env.to_string()),
            }),
            _ => usage("retry", "takes at most one environment", "/retry [env]"),
        },
        "prune" => match args.as_slice() {
            [env] => Ok(Command::Prune {
                env: env.to_string(),
            }),
            [] => usage("prune", "needs an environment", "/prune <env>"),
            _ => usage("prune", "takes one environment", "/prune <env>"),
        },
        "hold" => {
            let reason = args.join(" ");
            Ok(Command::Hold {
                reason: (!reason.is_empty()).then_some(reason),
            })
        }
        "unhold" if args.is_empty() => Ok(Command::Unhold),
        "unhold" => usage("unhold", "takes no arguments", "/unhold"),
        "status" => Ok(Command::Status),
        "help" => Ok(Command::Help),
        other => Err(ParseError::Unknown(other.to_string())),
    };
    Some(parsed)
}

/// A user's permission on the config repo, as GitHub reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// GitHub's `permission` / `role_name` strings (`pull` and `push` are the legacy names).
    pub fn from_github(s: &str) -> Self {
        match s {
            "admin" => Self::Admin,
            "maintain" => Self::Maintain,
            "write" | "push" => Self::Write,
            "triage" => Self::Triage,
            "read" | "pull" => Self::Read,
            _ => Self::None,
        }
    }
}

/// Who wrote the comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub login: String,
    pub permission: Permission,
    /// Teams as `@org/slug` that the actor belongs to (only those the pipeline names need
    /// to be looked up).
    pub teams: Vec<String>,
}

/// Why a command was refused; the text is posted to the PR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "@{login}, `{command}` needs {needed:?} access to this repository and you have {have:?} access."
    )]
    Permission {
        login: String,
        command: String,
        needed: Permission,
        have: Permission,
    },
    #[error("@{login}, `{command}` in {env} may only be run by {approvers}.")]
    NotApprover {
        login: String,
        command: String,
        env: String,
        approvers: String,
    },
}

/// Whether `actor` may run `command`, given the environment it concerns.
pub fn authorize(
    command: &Command,
    actor: &Actor,
    env: Option<&Environment>,
) -> Result<(), Refusal> {
    let needed = match command {
        Command::Promote { .. }
        | Command::Rollback { .. }
        | Command::Retry { .. }
        | Command::Prune { .. }
        | Command::Unhold => Permission::Write,
        Command::Hold { .. } => Permission::Triage,
        Command::Status | Command::Help => Permission::None,
    };
    if actor.permission < needed {
        return Err(Refusal::Permission {
            login: actor.login.clone(),
            command: command.to_string(),
            needed,
            have: actor.permission,
        });
    }
    if needed == Permission::Write
        && let Some(env) = env
        && let Some(approvals) = &env.approvals
        && !approvals.from.is_empty()
    {
        let allowed = approvals
            .from
            .iter()
            .any(|who| match who.strip_prefix('@') {
                Some(_) => actor.teams.iter().any(|t| t.eq_ignore_ascii_case(who)),
                None => who.eq_ignore_ascii_case(&actor.login),
            });
        if !allowed {
            return Err(Refusal::NotApprover {
                login: actor.login.clone(),
                command: command.to_string(),
                env: env.name.clone(),
                approvers: approvals.from.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(s: &str) -> Parsed {
        let mut v = parse_comment(s);
        assert_eq!(v.len(), 1, "{s:?} gave {v:?}");
        v.remove(0)
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(
            one("/promote prod"),
            Ok(Command::Promote { env: "prod".into() })
        );
        assert_eq!(
            one("/rollback prod"),
            Ok(Command::Rollback {
                env: "prod".into(),
                to: None
            })
        );
        assert_eq!(
            one("/rollback prod to 1.3.2"),
            Ok(Command::Rollback {
                env: "prod".into(),
                to: Some("1.3.2".into())
            })
        );
        assert_eq!(
            one("/hold waiting for the DB migration"),
            Ok(Command::Hold {
                reason: Some("waiting for the DB migration".into())
            })
        );
        assert_eq!(one("/hold"), Ok(Command::Hold { reason: None }));
        assert_eq!(one("/retry"), Ok(Command::Retry { env: None }));
        assert_eq!(
            one("/prune prod"),
            Ok(Command::Prune { env: "prod".into() })
        );
        assert!(matches!(one("/prune"), Err(ParseError::Usage { .. })));
        assert!(matches!(one("/prune a b"), Err(ParseError::Usage { .. })));
        assert_eq!(
            one("/retry staging"),
            Ok(Command::Retry {
                env: Some("staging".into())
            })
        );
        assert_eq!(one("/unhold"), Ok(Command::Unhold));
        assert_eq!(one("/status"), Ok(Command::Status));
        assert_eq!(one("/help"), Ok(Command::Help));
        assert_eq!(
            one("  /PROMOTE prod  "),
            Ok(Command::Promote { env: "prod".into() })
        );
    }

    #[test]
    fn malformed_and_unknown_commands_are_errors_that_carry_usage() {
        assert_eq!(
            one("/deploy prod"),
            Err(ParseError::Unknown("deploy".into()))
        );
        let e = one("/promote").unwrap_err().to_string();
        assert!(
            e.contains("needs an environment") && e.contains("/promote <env>"),
            "{e}"
        );
        assert!(one("/rollback prod from 1.0").is_err());
        assert!(one("/unhold now").is_err());
        let e = one("/retry staging now").unwrap_err().to_string();
        assert!(
            e.contains("takes at most one environment") && e.contains("/retry [env]"),
            "{e}"
        );
    }

    #[test]
    fn quotes_code_and_prose_are_not_commands() {
        let body = "LGTM, will run it after lunch\n> /promote prod\n```\n/promote prod\n```\n    /promote prod\nsee /etc/hosts and a / b\n";
        assert_eq!(parse_comment(body), vec![]);
    }

    #[test]
    fn several_commands_in_one_comment_run_in_order() {
        let v = parse_comment("/hold checking\nsome text\n/status");
        assert_eq!(
            v,
            vec![
                Ok(Command::Hold {
                    reason: Some("checking".into())
                }),
                Ok(Command::Status)
            ]
        );
    }

    fn env(from: &[&str]) -> Environment {
        let yaml = format!(
            "name: prod\napprovals: {{ count: 1, from: [{}] }}\n",
            from.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        yaml_serde::from_str(&yaml).unwrap()
    }

    fn actor(login: &str, permission: Permission, teams: &[&str]) -> Actor {
        Actor {
            login: login.into(),
            permission,
            teams: teams.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn promote_needs_write_access_and_membership_of_the_approvers() {
        let prod = env(&["@shop/release-managers", "dana"]);
        let promote = Command::Promote { env: "prod".into() };
        assert_eq!(
            authorize(
                &promote,
                &actor("rm", Permission::Write, &["@shop/release-managers"]),
                Some(&prod)
            ),
            Ok(())
        );
        assert_eq!(
            authorize(
                &promote,
                &actor("dana", Permission::Admin, &[]),
                Some(&prod)
            ),
            Ok(())
        );
        let refused = authorize(
            &promote,
            &actor("eve", Permission::Read, &["@shop/release-managers"]),
            Some(&prod),
        )
        .unwrap_err();
        assert!(
            refused.to_string().contains("needs Write access")
                && refused.to_string().contains("you have Read"),
            "{refused}"
        );
        let not_approver = authorize(
            &promote,
            &actor("dev", Permission::Write, &["@shop/devs"]),
            Some(&prod),
        )
        .unwrap_err();
        assert!(
            not_approver
                .to_string()
                .contains("may only be run by @shop/release-managers, dana"),
            "{not_approver}"
        );
    }

    #[test]
    fn retry_is_authorized_like_promote() {
        let prod = env(&["@shop/release-managers"]);
        for retry in [
            Command::Retry { env: None },
            Command::Retry {
                env: Some("prod".into()),
            },
        ] {
            assert_eq!(
                authorize(
                    &retry,
                    &actor("rm", Permission::Write, &["@shop/release-managers"]),
                    Some(&prod)
                ),
                Ok(())
            );
            let refused = authorize(
                &retry,
                &actor("t", Permission::Triage, &["@shop/release-managers"]),
                Some(&prod),
            )
            .unwrap_err();
            assert!(
                refused.to_string().contains("needs Write access"),
                "{refused}"
            );
            assert!(matches!(
                authorize(&retry, &actor("dev", Permission::Write, &[]), Some(&prod)),
                Err(Refusal::NotApprover { .. })
            ));
        }
        assert_eq!(
            Command::Retry {
                env: Some("prod".into())
            }
            .environment(),
            Some("prod")
        );
        assert_eq!(Command::Retry { env: None }.environment(), None);
    }

    #[test]
    fn hold_needs_triage_and_status_needs_nothing() {
        let hold = Command::Hold { reason: None };
        assert!(authorize(&hold, &actor("x", Permission::Read, &[]), None).is_err());
        assert!(authorize(&hold, &actor("x", Permission::Triage, &[]), None).is_ok());
        assert!(authorize(&Command::Status, &actor("x", Permission::None, &[]), None).is_ok());
    }

    #[test]
    fn github_permission_names_map_including_legacy_ones() {
        assert_eq!(Permission::from_github("push"), Permission::Write);
        assert_eq!(Permission::from_github("maintain"), Permission::Maintain);
        assert_eq!(Permission::from_github("pull"), Permission::Read);
        assert_eq!(Permission::from_github("???"), Permission::None);
    }

    fn command() -> impl Strategy<Value = Command> {
        let env = "[a-z][a-z0-9-]{0,10}";
        prop_oneof![
            env.prop_map(|env| Command::Promote { env }),
            (env, proptest::option::of("[a-z0-9][a-z0-9.-]{0,12}"))
                .prop_map(|(env, to)| Command::Rollback { env, to }),
            proptest::option::of("[a-zA-Z0-9]{1,8}( [a-zA-Z0-9,.]{1,8}){0,3}")
                .prop_map(|reason| Command::Hold { reason }),
            proptest::option::of(env).prop_map(|env| Command::Retry { env }),
            Just(Command::Unhold),
            Just(Command::Status),
            Just(Command::Help),
        ]
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(cmd in command(), prose in "[a-zA-Z ,.]{0,40}") {
            let body = format!("{prose}\n{cmd}\n{prose}");
            prop_assert_eq!(parse_comment(&body), vec![Ok(cmd)]);
        }

        #[test]
        fn parsing_never_panics_on_any_text(body in "\\PC{0,200}") {
            let _ = parse_comment(&body);
        }
    }
}
