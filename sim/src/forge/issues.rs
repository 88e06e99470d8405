//! Issues that are not pull requests: opening one, editing it, listing a repository's issues
//! (which, as on GitHub, include its pull requests), and what tests read back
//! ([`ForgeHandle::issues`]).

use chrono::Utc;
use serde_json::Value;

use super::ops::{ensure_label, shapes};
use super::state::Issue;
use super::{Error, ForgeHandle, Inner, Permission};

/// `POST /repos/{owner}/{repo}/issues` and `PATCH .../issues/{issue_number}`, parsed.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct IssueFields {
    pub title: Option<Value>,
    pub body: Option<String>,
    pub state: Option<String>,
    pub labels: Option<Vec<Value>>,
}

fn label_names(labels: &[Value]) -> Result<Vec<String>, Error> {
    labels
        .iter()
        .map(|l| match l {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) => o
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| super::api::missing("Label", "name")),
            _ => Err(Error::validation("Label", Some("name"), "invalid", None)),
        })
        .collect()
}

fn title_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Open an issue. Labels need push access; without it GitHub drops them silently.
pub(crate) fn create(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    fields: IssueFields,
) -> Result<Value, Error> {
    let title = fields
        .title
        .as_ref()
        .and_then(title_of)
        .ok_or_else(|| super::api::missing("Issue", "title"))?;
    let mut st = inner.lock();
    st.repo(owner, repo).ok_or_else(Error::not_found)?;
    let labels = if st.permission(login) >= Permission::Write {
        label_names(fields.labels.as_deref().unwrap_or_default())?
    } else {
        Vec::new()
    };
    for l in &labels {
        ensure_label(&mut st, owner, repo, l);
    }
    let id = st.id();
    let now = Utc::now();
    let r = st.repo_mut(owner, repo).expect("checked above");
    let number = r.next_number;
    r.next_number += 1;
    r.issues.insert(
        number,
        Issue {
            id,
            number,
            title,
            body: fields.body,
            author: login.to_owned(),
            open: true,
            labels,
            created_at: now,
            updated_at: now,
            closed_at: None,
            reactions: Vec::new(),
            pull: None,
        },
    );
    let r = st.repo(owner, repo).expect("checked above");
    Ok(shapes(inner, &st).issue(r, &r.issues[&number]))
}

/// Edit an issue (not a pull request: GitHub edits those through this route too, but baton
/// uses the pulls route for them): title, body, state, labels (replaced).
pub(crate) fn update(
    inner: &Inner,
    owner: &str,
    repo: &str,
    number: u64,
    fields: IssueFields,
) -> Result<Value, Error> {
    let title = match &fields.title {
        None => None,
        Some(v) => Some(
            title_of(v)
                .ok_or_else(|| Error::validation("Issue", Some("title"), "missing_field", None))?,
        ),
    };
    if let Some(s) = fields.state.as_deref()
        && s != "open"
        && s != "closed"
    {
        return Err(Error::validation("Issue", Some("state"), "invalid", None));
    }
    let labels = fields.labels.as_deref().map(label_names).transpose()?;
    let mut st = inner.lock();
    let r = st.repo(owner, repo).ok_or_else(Error::not_found)?;
    if !r.issues.contains_key(&number) {
        return Err(Error::not_found());
    }
    for l in labels.iter().flatten() {
        ensure_label(&mut st, owner, repo, l);
    }
    let now = Utc::now();
    let r = st.repo_mut(owner, repo).expect("checked above");
    let issue = r.issues.get_mut(&number).expect("checked above");
    if let Some(t) = title {
        issue.title = t;
    }
    if let Some(b) = fields.body {
        issue.body = Some(b);
    }
    if let Some(s) = fields.state.as_deref() {
        let open = s == "open";
        if open != issue.open {
            issue.open = open;
            issue.closed_at = (!open).then_some(now);
        }
    }
    if let Some(l) = labels {
        issue.labels = l;
    }
    issue.updated_at = now;
    let r = st.repo(owner, repo).expect("checked above");
    Ok(shapes(inner, &st).issue(r, &r.issues[&number]))
}

/// An issue (not a PR) as a test reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueView {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    pub open: bool,
    pub labels: Vec<String>,
}

impl ForgeHandle {
    /// The repository's issues that are not pull requests, by number.
    pub fn issues(&self, owner: &str, repo: &str) -> Vec<IssueView> {
        let st = self.inner.lock();
        st.repo(owner, repo)
            .map(|r| {
                r.issues
                    .values()
                    .filter(|i| i.pull.is_none())
                    .map(|i| IssueView {
                        number: i.number,
                        title: i.title.clone(),
                        body: i.body.clone().unwrap_or_default(),
                        author: i.author.clone(),
                        open: i.open,
                        labels: i.labels.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
