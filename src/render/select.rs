//! Patch targets: which resources a `patches[].target` selects. Group, version, kind, name and
//! namespace are anchored regular expressions; name and namespace match the original or the
//! current identity; label and annotation selectors use Kubernetes selector syntax.

use regex::Regex;
use serde_json::{Map, Value};

use super::kustomization::Target;
use super::resource::Resource;

/// A compiled target.
pub struct Selector {
    group: Option<Regex>,
    version: Option<Regex>,
    kind: Option<Regex>,
    name: Option<Regex>,
    namespace: Option<Regex>,
    labels: Vec<Requirement>,
    annotations: Vec<Requirement>,
}

fn anchored(field: &str, s: &str) -> Result<Option<Regex>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    Regex::new(&format!("^(?:{s})$"))
        .map(Some)
        .map_err(|e| format!("target.{field} {s:?} is not a valid regular expression: {e}"))
}

impl Selector {
    pub fn new(t: &Target) -> Result<Self, String> {
        Ok(Selector {
            group: anchored("group", &t.group)?,
            version: anchored("version", &t.version)?,
            kind: anchored("kind", &t.kind)?,
            name: anchored("name", &t.name)?,
            namespace: anchored("namespace", &t.namespace)?,
            labels: parse_selector(&t.label_selector)
                .map_err(|e| format!("target.labelSelector: {e}"))?,
            annotations: parse_selector(&t.annotation_selector)
                .map_err(|e| format!("target.annotationSelector: {e}"))?,
        })
    }

    pub fn matches(&self, r: &Resource) -> bool {
        let cur = r.cur_id();
        let org = r.org_id();
        if let Some(re) = &self.namespace
            && !re.is_match(&r.org_effective_namespace())
            && !re.is_match(cur.effective_namespace())
        {
            return false;
        }
        if let Some(re) = &self.name
            && !re.is_match(&org.name)
            && !re.is_match(&cur.name)
        {
            return false;
        }
        let gvk = &cur.gvk;
        for (re, v) in [
            (&self.group, &gvk.group),
            (&self.version, &gvk.version),
            (&self.kind, &gvk.kind),
        ] {
            if let Some(re) = re
                && !re.is_match(v)
            {
                return false;
            }
        }
        matches_all(&self.labels, &r.labels()) && matches_all(&self.annotations, &r.annotations())
    }
}

/// Does a label (or annotation) map satisfy a Kubernetes selector? An empty selector matches.
pub fn selector_matches(selector: &str, labels: &Map<String, Value>) -> Result<bool, String> {
    Ok(matches_all(&parse_selector(selector)?, labels))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

fn matches_all(reqs: &[Requirement], labels: &Map<String, Value>) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
        Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
    })
}

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Kubernetes label-selector syntax: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
/// `a notin (x,y)`, comma-separated.
fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in split_top(s) {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("empty requirement in {s:?}"));
        }
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("expected a parenthesised set in {part:?}"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
        let req = if let Some(k) = part.strip_prefix('!') {
            Requirement::NotExists(k.trim().to_string())
        } else if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(k.trim().to_string(), v.trim().to_string())
        } else if let Some((k, v)) = part.split_once("==") {
            Requirement::Equals(k.trim().to_string(), v.trim().to_string())
        } else if let Some((k, v)) = part.split_once('=') {
            Requirement::Equals(k.trim().to_string(), v.trim().to_string())
        } else if words.len() == 2 && words[1].trim_start().starts_with("notin") {
            Requirement::NotIn(
                words[0].to_string(),
                set(&words[1].trim_start()["notin".len()..])?,
            )
        } else if words.len() == 2 && words[1].trim_start().starts_with("in") {
            Requirement::In(
                words[0].to_string(),
                set(&words[1].trim_start()["in".len()..])?,
            )
        } else if words.len() == 1 {
            Requirement::Exists(part.to_string())
        } else {
            return Err(format!("cannot parse requirement {part:?}"));
        };
        out.push(req);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::error::Location;
    use serde_json::json;

    fn res(v: Value) -> Resource {
        Resource::new(v, Location::file("x.yaml"))
    }

    #[test]
    fn names_and_kinds_are_anchored_regexes() {
        let r = res(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-api"}}),
        );
        let sel = |t: Target| Selector::new(&t).unwrap().matches(&r);
        assert!(sel(Target {
            kind: "Deploy.*".into(),
            ..Default::default()
        }));
        assert!(!sel(Target {
            kind: "Deploy".into(),
            ..Default::default()
        }));
        assert!(sel(Target {
            name: "web-.*".into(),
            group: "apps".into(),
            ..Default::default()
        }));
        assert!(!sel(Target {
            name: "web".into(),
            ..Default::default()
        }));
        assert!(sel(Target {
            namespace: "default".into(),
            ..Default::default()
        }));
    }

    #[test]
    fn label_selectors_support_the_kubernetes_syntax() {
        let r = res(
            json!({"kind": "X", "metadata": {"name": "a", "labels": {"app": "web", "tier": "front"}}}),
        );
        let sel = |s: &str| {
            Selector::new(&Target {
                label_selector: s.into(),
                ..Default::default()
            })
            .unwrap()
            .matches(&r)
        };
        assert!(sel("app=web"));
        assert!(sel("app==web,tier"));
        assert!(!sel("app!=web"));
        assert!(sel("tier in (front, back)"));
        assert!(!sel("tier notin (front)"));
        assert!(sel("!missing"));
        assert!(!sel("missing"));
    }

    #[test]
    fn the_original_name_matches_after_a_prefix() {
        let mut r =
            res(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}));
        r.store_previous_id();
        r.set_name("dev-web".into());
        assert!(
            Selector::new(&Target {
                name: "web".into(),
                ..Default::default()
            })
            .unwrap()
            .matches(&r)
        );
        assert!(
            Selector::new(&Target {
                name: "dev-web".into(),
                ..Default::default()
            })
            .unwrap()
            .matches(&r)
        );
    }
}
