//! GitHub's JSON shapes, built from the state. Field names follow the REST reference; octocrab's
//! model types are the check that they deserialize.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::gitops;
use super::state::{
    AppRef, CheckRun, Comment, Issue, LabelDef, Reaction, Repo, Review, State, StatusRec, Team,
};

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn ots(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(ts(t))).unwrap_or(Value::Null)
}

/// Builds response bodies; `base` is the API root (`http://127.0.0.1:PORT`).
pub(crate) struct Shapes<'a> {
    pub base: &'a str,
    pub root: &'a Path,
    pub st: &'a State,
}

impl Shapes<'_> {
    pub fn repo_path(&self, owner: &str, repo: &str) -> PathBuf {
        crate::git::repo_path(self.root, owner, repo)
    }

    pub fn user(&self, login: &str) -> Value {
        let b = self.base;
        let (id, bot) = self
            .st
            .users
            .get(login)
            .map(|u| (u.id, u.bot))
            .unwrap_or((0, false));
        let u = format!("{b}/users/{login}");
        json!({
            "login": login,
            "id": id,
            "node_id": format!("U_sim{id}"),
            "avatar_url": format!("{b}/avatars/u/{id}"),
            "gravatar_id": "",
            "url": u,
            "html_url": format!("{b}/{login}"),
            "followers_url": format!("{u}/followers"),
            "following_url": format!("{u}/following{{/other_user}}"),
            "gists_url": format!("{u}/gists{{/gist_id}}"),
            "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{u}/subscriptions"),
            "organizations_url": format!("{u}/orgs"),
            "repos_url": format!("{u}/repos"),
            "events_url": format!("{u}/events{{/privacy}}"),
            "received_events_url": format!("{u}/received_events"),
            "type": if bot { "Bot" } else { "User" },
            "user_view_type": "public",
            "site_admin": false,
        })
    }

    /// A user with the `permissions` hash, as in collaborator listings.
    pub fn collaborator(&self, login: &str) -> Value {
        let p = self.st.permission(login);
        use super::state::Permission as P;
        let mut v = self.user(login);
        v["permissions"] = json!({
            "admin": p >= P::Admin,
            "maintain": p >= P::Maintain,
            "push": p >= P::Write,
            "triage": p >= P::Triage,
            "pull": p >= P::Read,
        });
        v["role_name"] = json!(p.role_name());
        v
    }

    pub fn repo(&self, r: &Repo) -> Value {
        let b = self.base;
        let full = format!("{}/{}", r.owner, r.name);
        let u = format!("{b}/repos/{full}");
        json!({
            "id": r.id,
            "node_id": format!("R_sim{}", r.id),
            "name": r.name,
            "full_name": full,
            "private": true,
            "owner": self.owner(&r.owner),
            "html_url": format!("{b}/{full}"),
            "description": null,
            "fork": false,
            "url": u,
            "archive_url": format!("{u}/{{archive_format}}{{/ref}}"),
            "branches_url": format!("{u}/branches{{/branch}}"),
            "collaborators_url": format!("{u}/collaborators{{/collaborator}}"),
            "comments_url": format!("{u}/comments{{/number}}"),
            "commits_url": format!("{u}/commits{{/sha}}"),
            "compare_url": format!("{u}/compare/{{base}}...{{head}}"),
            "contents_url": format!("{u}/contents/{{+path}}"),
            "git_refs_url": format!("{u}/git/refs{{/sha}}"),
            "hooks_url": format!("{u}/hooks"),
            "issue_comment_url": format!("{u}/issues/comments{{/number}}"),
            "issues_url": format!("{u}/issues{{/number}}"),
            "labels_url": format!("{u}/labels{{/name}}"),
            "pulls_url": format!("{u}/pulls{{/number}}"),
            "statuses_url": format!("{u}/statuses/{{sha}}"),
            "teams_url": format!("{u}/teams"),
            "assignees_url": format!("{u}/assignees{{/user}}"),
            "blobs_url": format!("{u}/git/blobs{{/sha}}"),
            "contributors_url": format!("{u}/contributors"),
            "deployments_url": format!("{u}/deployments"),
            "downloads_url": format!("{u}/downloads"),
            "events_url": format!("{u}/events"),
            "forks_url": format!("{u}/forks"),
            "git_commits_url": format!("{u}/git/commits{{/sha}}"),
            "git_tags_url": format!("{u}/git/tags{{/sha}}"),
            "issue_events_url": format!("{u}/issues/events{{/number}}"),
            "keys_url": format!("{u}/keys{{/key_id}}"),
            "languages_url": format!("{u}/languages"),
            "merges_url": format!("{u}/merges"),
            "milestones_url": format!("{u}/milestones{{/number}}"),
            "notifications_url": format!("{u}/notifications{{?since,all,participating}}"),
            "releases_url": format!("{u}/releases{{/id}}"),
            "stargazers_url": format!("{u}/stargazers"),
            "subscribers_url": format!("{u}/subscribers"),
            "subscription_url": format!("{u}/subscription"),
            "tags_url": format!("{u}/tags"),
            "trees_url": format!("{u}/git/trees{{/sha}}"),
            "mirror_url": null,
            "license": null,
            "forks": 0,
            "open_issues": r.issues.values().filter(|i| i.open).count(),
            "watchers": 0,
            "clone_url": format!("{b}/{full}.git"),
            "git_url": format!("{b}/{full}.git"),
            "ssh_url": format!("git@127.0.0.1:{full}.git"),
            "svn_url": format!("{b}/{full}"),
            "homepage": null,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "forks_count": 0,
            "open_issues_count": r.issues.values().filter(|i| i.open).count(),
            "language": null,
            "has_issues": true,
            "has_projects": false,
            "has_wiki": false,
            "has_pages": false,
            "has_downloads": false,
            "archived": false,
            "disabled": false,
            "visibility": "private",
            "default_branch": r.default_branch,
            "allow_merge_commit": true,
            "allow_squash_merge": true,
            "allow_rebase_merge": false,
            "delete_branch_on_merge": false,
            "created_at": ts(r.created_at),
            "updated_at": ts(r.created_at),
            "pushed_at": ts(r.created_at),
        })
    }

    /// Repository owners are users or organizations; organizations have no user entry.
    fn owner(&self, login: &str) -> Value {
        let mut v = self.user(login);
        if !self.st.users.contains_key(login) {
            v["type"] = json!("Organization");
            v["id"] = json!(crc(login));
        }
        v
    }

    pub fn label(&self, r: &Repo, l: &LabelDef) -> Value {
        json!({
            "id": l.id,
            "node_id": format!("LA_sim{}", l.id),
            "url": format!("{}/repos/{}/{}/labels/{}", self.base, r.owner, r.name, encode(&l.name)),
            "name": l.name,
            "description": l.description,
            "color": l.color,
            "default": false,
        })
    }

    /// A label as embedded in a pull request, where GitHub's description requires
    /// `description` as a string (not nullable): a label without one has `""` there.
    fn pull_label(&self, r: &Repo, l: &LabelDef) -> Value {
        let mut v = self.label(r, l);
        if l.description.is_none() {
            v["description"] = json!("");
        }
        v
    }

    pub fn issue_labels(&self, r: &Repo, i: &Issue) -> Vec<Value> {
        i.labels
            .iter()
            .filter_map(|n| r.labels.iter().find(|l| &l.name == n))
            .map(|l| self.label(r, l))
            .collect()
    }

    fn reactions_summary(&self, url: &str, reactions: &[Reaction]) -> Value {
        let count = |c: &str| reactions.iter().filter(|r| r.content == c).count();
        json!({
            "url": url,
            "total_count": reactions.len(),
            "+1": count("+1"), "-1": count("-1"), "laugh": count("laugh"),
            "hooray": count("hooray"), "confused": count("confused"), "heart": count("heart"),
            "rocket": count("rocket"), "eyes": count("eyes"),
        })
    }

    pub fn reaction(&self, r: &Reaction) -> Value {
        json!({
            "id": r.id,
            "node_id": format!("REA_sim{}", r.id),
            "user": self.user(&r.user),
            "content": r.content,
            "created_at": ts(r.created_at),
        })
    }

    fn association(&self, r: &Repo, login: &str) -> &'static str {
        if login == r.owner {
            "OWNER"
        } else if self.st.permission(login) >= super::state::Permission::Read {
            "COLLABORATOR"
        } else {
            "NONE"
        }
    }

    pub fn issue(&self, r: &Repo, i: &Issue) -> Value {
        let b = self.base;
        let ru = format!("{b}/repos/{}/{}", r.owner, r.name);
        let u = format!("{ru}/issues/{}", i.number);
        let kind = if i.pull.is_some() { "pull" } else { "issues" };
        let mut v = json!({
            "id": i.id,
            "node_id": format!("I_sim{}", i.id),
            "url": u,
            "repository_url": ru,
            "labels_url": format!("{u}/labels{{/name}}"),
            "comments_url": format!("{u}/comments"),
            "events_url": format!("{u}/events"),
            "html_url": format!("{b}/{}/{}/{kind}/{}", r.owner, r.name, i.number),
            "number": i.number,
            "state": if i.open { "open" } else { "closed" },
            "state_reason": if i.open { Value::Null } else { json!("completed") },
            "title": i.title,
            "body": i.body,
            "user": self.user(&i.author),
            "labels": self.issue_labels(r, i),
            "assignee": null,
            "assignees": [],
            "milestone": null,
            "locked": false,
            "active_lock_reason": null,
            "comments": self.st.comments.values().filter(|c| c.owner == r.owner && c.repo == r.name && c.issue == i.number).count(),
            "closed_at": ots(i.closed_at),
            "created_at": ts(i.created_at),
            "updated_at": ts(i.updated_at),
            "closed_by": null,
            "author_association": self.association(r, &i.author),
            "reactions": self.reactions_summary(&format!("{u}/reactions"), &i.reactions),
        });
        if i.pull.is_some() {
            let pu = format!("{ru}/pulls/{}", i.number);
            let html = format!("{b}/{}/{}/pull/{}", r.owner, r.name, i.number);
            v["pull_request"] = json!({
                "url": pu,
                "html_url": html,
                "diff_url": format!("{html}.diff"),
                "patch_url": format!("{html}.patch"),
                "merged_at": ots(i.pull.as_ref().and_then(|p| p.merged_at)),
            });
        }
        v
    }

    pub fn comment(&self, c: &Comment) -> Value {
        let b = self.base;
        let u = format!("{b}/repos/{}/{}/issues/comments/{}", c.owner, c.repo, c.id);
        let r = self.st.repo(&c.owner, &c.repo);
        let kind = match r.and_then(|r| r.issues.get(&c.issue)) {
            Some(i) if i.pull.is_some() => "pull",
            _ => "issues",
        };
        json!({
            "id": c.id,
            "node_id": format!("IC_sim{}", c.id),
            "url": u,
            "html_url": format!("{b}/{}/{}/{kind}/{}#issuecomment-{}", c.owner, c.repo, c.issue, c.id),
            "issue_url": format!("{b}/repos/{}/{}/issues/{}", c.owner, c.repo, c.issue),
            "body": c.body,
            "user": self.user(&c.author),
            "created_at": ts(c.created_at),
            "updated_at": ts(c.updated_at),
            "author_association": r.map(|r| self.association(r, &c.author)).unwrap_or("NONE"),
            "performed_via_github_app": null,
            "reactions": self.reactions_summary(&format!("{u}/reactions"), &c.reactions),
        })
    }

    /// The head commit of a pull: the live branch while it is open and the branch exists.
    pub fn pull_head_sha(&self, r: &Repo, i: &Issue) -> String {
        let p = i.pull.as_ref().expect("a pull request");
        if i.open
            && let Some(sha) = gitops::branch_sha(&self.repo_path(&r.owner, &r.name), &p.head_ref)
        {
            return sha;
        }
        p.head_sha.clone()
    }

    /// (mergeable, mergeable_state) as GitHub computes them without branch protection.
    pub fn mergeability(&self, r: &Repo, i: &Issue) -> (Value, &'static str) {
        let p = i.pull.as_ref().expect("a pull request");
        if !i.open {
            return (Value::Null, "unknown");
        }
        let path = self.repo_path(&r.owner, &r.name);
        let head = self.pull_head_sha(r, i);
        let Some(base) = gitops::branch_sha(&path, &p.base_ref) else {
            return (Value::Null, "unknown");
        };
        match gitops::mergeable(&path, &base, &head) {
            Ok(false) => (json!(false), "dirty"),
            Ok(true) if p.draft => (json!(true), "draft"),
            Ok(true)
                if ["merge", "squash"].iter().all(|m| {
                    super::protect::refusal(self.st, &path, r, i, &head, &base, m).is_some()
                }) =>
            {
                (json!(true), "blocked")
            }
            Ok(true) => {
                let state = combined_state(&latest_statuses(r, &head));
                let checks_bad = latest_check_runs(r, &head).iter().any(|c| {
                    c.status != "completed"
                        || !matches!(
                            c.conclusion.as_deref(),
                            Some("success" | "neutral" | "skipped")
                        )
                });
                let has_statuses = r.statuses.iter().any(|s| s.sha == head);
                if (has_statuses && state != "success") || checks_bad {
                    (json!(true), "unstable")
                } else {
                    (json!(true), "clean")
                }
            }
            Err(_) => (Value::Null, "unknown"),
        }
    }

    fn branch_end(&self, r: &Repo, branch: &str, sha: String) -> Value {
        json!({
            "label": format!("{}:{}", r.owner, branch),
            "ref": branch,
            "sha": sha,
            "user": self.owner(&r.owner),
            "repo": self.repo(r),
        })
    }

    pub fn team(&self, t: &Team) -> Value {
        let b = self.base;
        let u = format!("{b}/orgs/{}/teams/{}", t.org, t.slug);
        json!({
            "id": t.id,
            "node_id": format!("T_sim{}", t.id),
            "url": u,
            "html_url": format!("{b}/orgs/{}/teams/{}", t.org, t.slug),
            "name": t.name,
            "slug": t.slug,
            "description": null,
            "privacy": "closed",
            "notification_setting": "notifications_enabled",
            "permission": "pull",
            "members_url": format!("{u}/members{{/member}}"),
            "repositories_url": format!("{u}/repos"),
            "type": "organization",
            "parent": null,
        })
    }

    pub fn pull(&self, r: &Repo, i: &Issue) -> Value {
        let b = self.base;
        let p = i.pull.as_ref().expect("a pull request");
        let ru = format!("{b}/repos/{}/{}", r.owner, r.name);
        let u = format!("{ru}/pulls/{}", i.number);
        let html = format!("{b}/{}/{}/pull/{}", r.owner, r.name, i.number);
        let head_sha = self.pull_head_sha(r, i);
        let base_sha =
            gitops::branch_sha(&self.repo_path(&r.owner, &r.name), &p.base_ref).unwrap_or_default();
        let (mergeable, mergeable_state) = self.mergeability(r, i);
        let teams: Vec<Value> = p
            .requested_teams
            .iter()
            .filter_map(|slug| self.st.teams.get(&(r.owner.clone(), slug.clone())))
            .map(|t| self.team(t))
            .collect();
        let comments = self
            .st
            .comments
            .values()
            .filter(|c| c.owner == r.owner && c.repo == r.name && c.issue == i.number)
            .count();
        json!({
            "url": u,
            "id": p.id,
            "node_id": format!("PR_sim{}", p.id),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "issue_url": format!("{ru}/issues/{}", i.number),
            "commits_url": format!("{u}/commits"),
            "review_comments_url": format!("{u}/comments"),
            "review_comment_url": format!("{ru}/pulls/comments{{/number}}"),
            "comments_url": format!("{ru}/issues/{}/comments", i.number),
            "statuses_url": format!("{ru}/statuses/{head_sha}"),
            "number": i.number,
            "state": if i.open { "open" } else { "closed" },
            "locked": false,
            "title": i.title,
            "user": self.user(&i.author),
            "body": i.body,
            "labels": i
                .labels
                .iter()
                .filter_map(|n| r.labels.iter().find(|l| &l.name == n))
                .map(|l| self.pull_label(r, l))
                .collect::<Vec<_>>(),
            "milestone": null,
            "active_lock_reason": null,
            "created_at": ts(i.created_at),
            "updated_at": ts(i.updated_at),
            "closed_at": ots(i.closed_at),
            "merged_at": ots(p.merged_at),
            "merge_commit_sha": p.merge_commit_sha,
            "assignee": null,
            "assignees": [],
            "requested_reviewers": p.requested_reviewers.iter().map(|l| self.user(l)).collect::<Vec<_>>(),
            "requested_teams": teams,
            "head": self.branch_end(r, &p.head_ref, head_sha),
            "base": self.branch_end(r, &p.base_ref, base_sha),
            "_links": {
                "self": {"href": u},
                "html": {"href": html},
                "issue": {"href": format!("{ru}/issues/{}", i.number)},
                "comments": {"href": format!("{ru}/issues/{}/comments", i.number)},
                "review_comments": {"href": format!("{u}/comments")},
                "review_comment": {"href": format!("{ru}/pulls/comments{{/number}}")},
                "commits": {"href": format!("{u}/commits")},
                "statuses": {"href": format!("{ru}/statuses/{}", p.head_sha)},
            },
            "author_association": self.association(r, &i.author),
            "auto_merge": null,
            "draft": p.draft,
            "merged": p.merged,
            "mergeable": mergeable,
            "rebaseable": false,
            "mergeable_state": mergeable_state,
            "merged_by": p.merged_by.as_deref().map(|l| self.user(l)),
            "comments": comments,
            "review_comments": 0,
            "maintainer_can_modify": false,
            "commits": 1,
            "additions": 0,
            "deletions": 0,
            "changed_files": 0,
        })
    }

    pub fn review(&self, r: &Repo, i: &Issue, rv: &Review) -> Value {
        let b = self.base;
        let html = format!(
            "{b}/{}/{}/pull/{}#pullrequestreview-{}",
            r.owner, r.name, i.number, rv.id
        );
        let pr = format!("{b}/repos/{}/{}/pulls/{}", r.owner, r.name, i.number);
        json!({
            "id": rv.id,
            "node_id": format!("PRR_sim{}", rv.id),
            "user": self.user(&rv.user),
            "body": rv.body,
            "state": rv.state.as_str(),
            "html_url": html,
            "pull_request_url": pr,
            "author_association": self.association(r, &rv.user),
            "_links": {"html": {"href": html}, "pull_request": {"href": pr}},
            "submitted_at": ts(rv.submitted_at),
            "commit_id": rv.commit_id,
        })
    }

    pub fn status(&self, r: &Repo, s: &StatusRec) -> Value {
        json!({
            "url": format!("{}/repos/{}/{}/statuses/{}", self.base, r.owner, r.name, s.sha),
            "avatar_url": null,
            "id": s.id,
            "node_id": format!("SC_sim{}", s.id),
            "state": s.state,
            "description": s.description,
            "target_url": s.target_url,
            "context": s.context,
            "created_at": ts(s.created_at),
            "updated_at": ts(s.created_at),
            "creator": self.user(&s.creator),
        })
    }

    /// `GET /repos/{owner}/{repo}/commits/{ref}`: the commit (no `stats` or `files`).
    pub fn commit(&self, r: &Repo, c: &super::gitops::CommitInfo) -> Value {
        let ru = format!("{}/repos/{}/{}", self.base, r.owner, r.name);
        let web = format!("{}/{}/{}", self.base, r.owner, r.name);
        let person = |(name, email, at): &(String, String, DateTime<Utc>)| json!({ "name": name, "email": email, "date": ts(*at) });
        json!({
            "url": format!("{ru}/commits/{}", c.sha),
            "sha": c.sha,
            "node_id": format!("C_sim{}", &c.sha[..12]),
            "html_url": format!("{web}/commit/{}", c.sha),
            "comments_url": format!("{ru}/commits/{}/comments", c.sha),
            "commit": {
                "url": format!("{ru}/git/commits/{}", c.sha),
                "author": person(&c.author),
                "committer": person(&c.committer),
                "message": c.message,
                "comment_count": 0,
                "tree": { "sha": c.tree, "url": format!("{ru}/git/trees/{}", c.tree) },
            },
            "author": null,
            "committer": null,
            "parents": c.parents.iter().map(|p| json!({
                "sha": p,
                "url": format!("{ru}/commits/{p}"),
                "html_url": format!("{web}/commit/{p}"),
            })).collect::<Vec<_>>(),
        })
    }

    pub fn combined_status(&self, r: &Repo, sha: &str) -> Value {
        let latest = latest_statuses(r, sha);
        let ru = format!("{}/repos/{}/{}", self.base, r.owner, r.name);
        json!({
            "state": combined_state(&latest),
            "statuses": latest.iter().map(|s| self.status(r, s)).collect::<Vec<_>>(),
            "sha": sha,
            "total_count": latest.len(),
            "repository": self.repo(r),
            "commit_url": format!("{ru}/commits/{sha}"),
            "url": format!("{ru}/commits/{sha}/status"),
        })
    }

    pub fn app(&self, app: AppRef) -> Value {
        let (id, slug, name) = match app {
            AppRef::Bot => (
                self.st.app_id,
                self.st.bot_login.trim_end_matches("[bot]").to_owned(),
                self.st.bot_login.trim_end_matches("[bot]").to_owned(),
            ),
            AppRef::Ci => (
                super::state::CI_APP_ID,
                "sim-ci".to_owned(),
                "Sim CI".to_owned(),
            ),
        };
        json!({
            "id": id,
            "slug": slug,
            "node_id": format!("A_sim{id}"),
            "owner": self.user(&self.st.bot_login),
            "name": name,
            "description": "",
            "external_url": self.base,
            "html_url": format!("{}/apps/{slug}", self.base),
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "permissions": {"checks": "write", "pull_requests": "write", "contents": "write", "statuses": "write", "deployments": "write", "issues": "write"},
            "events": ["check_run", "check_suite", "issue_comment", "pull_request", "pull_request_review", "push", "status"],
        })
    }

    /// The minimal pull objects GitHub embeds in check runs and suites.
    fn pulls_for_sha(&self, r: &Repo, sha: &str) -> Vec<Value> {
        let ru = format!("{}/repos/{}/{}", self.base, r.owner, r.name);
        let mini = json!({"id": r.id, "url": ru, "name": r.name});
        r.issues
            .values()
            .filter(|i| i.open && i.pull.is_some() && self.pull_head_sha(r, i) == sha)
            .map(|i| {
                let p = i.pull.as_ref().expect("filtered");
                json!({
                    "url": format!("{ru}/pulls/{}", i.number),
                    "id": p.id,
                    "number": i.number,
                    "head": {"ref": p.head_ref, "sha": sha, "repo": mini},
                    "base": {
                        "ref": p.base_ref,
                        "sha": gitops::branch_sha(&self.repo_path(&r.owner, &r.name), &p.base_ref).unwrap_or_default(),
                        "repo": mini,
                    },
                })
            })
            .collect()
    }

    pub fn check_suite(&self, r: &Repo, suite_id: u64) -> Value {
        let Some(s) = r.check_suites.iter().find(|s| s.id == suite_id) else {
            return Value::Null;
        };
        let runs: Vec<&CheckRun> = r.check_runs.iter().filter(|c| c.suite_id == s.id).collect();
        let status = if runs.is_empty() {
            "queued"
        } else if runs.iter().all(|c| c.status == "completed") {
            "completed"
        } else if runs.iter().any(|c| c.status == "in_progress") {
            "in_progress"
        } else {
            "queued"
        };
        let conclusion = (status == "completed").then(|| suite_conclusion(&runs));
        let ru = format!("{}/repos/{}/{}", self.base, r.owner, r.name);
        json!({
            "id": s.id,
            "node_id": format!("CS_sim{}", s.id),
            "head_branch": s.head_branch,
            "head_sha": s.sha,
            "status": status,
            "conclusion": conclusion,
            "url": format!("{ru}/check-suites/{}", s.id),
            "before": null,
            "after": s.sha,
            "pull_requests": self.pulls_for_sha(r, &s.sha),
            "app": self.app(s.app),
            "created_at": ts(s.created_at),
            "updated_at": ts(s.updated_at),
            "latest_check_runs_count": runs.len(),
            "check_runs_url": format!("{ru}/check-suites/{}/check-runs", s.id),
            "rerequestable": true,
            "runs_rerequestable": true,
            "head_commit": {"id": s.sha, "tree_id": "", "message": "", "timestamp": ts(s.created_at),
                "author": {"name": "", "email": ""}, "committer": {"name": "", "email": ""}},
        })
    }

    pub fn check_run(&self, r: &Repo, c: &CheckRun) -> Value {
        let ru = format!("{}/repos/{}/{}", self.base, r.owner, r.name);
        json!({
            "id": c.id,
            "head_sha": c.sha,
            "node_id": format!("CR_sim{}", c.id),
            "external_id": c.external_id.clone().unwrap_or_default(),
            "url": format!("{ru}/check-runs/{}", c.id),
            "html_url": format!("{}/{}/{}/runs/{}", self.base, r.owner, r.name, c.id),
            "details_url": c.details_url,
            "status": c.status,
            "conclusion": c.conclusion,
            "started_at": ots(c.started_at),
            "completed_at": ots(c.completed_at),
            "output": {
                "title": c.title,
                "summary": c.summary,
                "text": c.text,
                "annotations_count": 0,
                "annotations_url": format!("{ru}/check-runs/{}/annotations", c.id),
            },
            "name": c.name,
            "check_suite": {"id": c.suite_id},
            "app": self.app(c.app),
            "pull_requests": self.pulls_for_sha(r, &c.sha),
        })
    }
}

/// The newest status per context, newest first.
pub(crate) fn latest_statuses<'r>(r: &'r Repo, sha: &str) -> Vec<&'r StatusRec> {
    let mut seen = std::collections::BTreeSet::new();
    r.statuses
        .iter()
        .rev()
        .filter(|s| s.sha == sha)
        .filter(|s| seen.insert(s.context.clone()))
        .collect()
}

/// GitHub's rule: `failure` if any context failed or errored, `pending` if there are none or
/// any is pending, else `success`.
pub(crate) fn combined_state(latest: &[&StatusRec]) -> &'static str {
    if latest
        .iter()
        .any(|s| s.state == "failure" || s.state == "error")
    {
        "failure"
    } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    }
}

/// The newest check run per (app, name) for a commit.
pub(crate) fn latest_check_runs<'r>(r: &'r Repo, sha: &str) -> Vec<&'r CheckRun> {
    let mut seen = std::collections::BTreeSet::new();
    r.check_runs
        .iter()
        .rev()
        .filter(|c| c.sha == sha)
        .filter(|c| seen.insert((c.app == AppRef::Bot, c.name.clone())))
        .collect()
}

fn suite_conclusion(runs: &[&CheckRun]) -> &'static str {
    for bad in ["action_required", "cancelled", "timed_out", "failure"] {
        if runs.iter().any(|r| r.conclusion.as_deref() == Some(bad)) {
            return bad;
        }
    }
    if runs
        .iter()
        .all(|r| matches!(r.conclusion.as_deref(), Some("neutral" | "skipped")))
    {
        "neutral"
    } else {
        "success"
    }
}

/// A stable id for names that have no user entry (organizations).
fn crc(s: &str) -> u64 {
    s.bytes()
        .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
        % 1_000_000
        + 1_000_000
}

/// Percent-encode a path segment (label names may hold `:` and spaces).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_percent_encoded_in_urls() {
        assert_eq!(encode("env:prod"), "env%3Aprod");
        assert_eq!(encode("baton:hold now"), "baton%3Ahold%20now");
        assert_eq!(encode("plain-1.0_x"), "plain-1.0_x");
    }

    #[test]
    fn one_failing_context_fails_the_combined_status() {
        let s = |state: &str, ctx: &str| StatusRec {
            id: 1,
            sha: "a".into(),
            state: state.into(),
            context: ctx.into(),
            description: None,
            target_url: None,
            creator: "x".into(),
            created_at: Utc::now(),
        };
        let (ok, bad, wait) = (s("success", "a"), s("failure", "b"), s("pending", "c"));
        assert_eq!(combined_state(&[]), "pending");
        assert_eq!(combined_state(&[&ok]), "success");
        assert_eq!(combined_state(&[&ok, &wait]), "pending");
        assert_eq!(combined_state(&[&ok, &wait, &bad]), "failure");
    }
}
