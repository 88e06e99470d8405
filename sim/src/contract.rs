//! GitHub's own contract for the stand-in: a checker for requests and responses against GitHub's
//! published OpenAPI description (`@octokit/openapi`, `generated/api.github.com.json`).
//!
//! It understands the subset of OpenAPI 3.0 / JSON Schema that GitHub's description uses:
//! `$ref` (local), `type` (one or several), `nullable`, `enum`, `required`, `properties`,
//! `additionalProperties` (`false` or a schema), `items`, `allOf`, `anyOf`, `oneOf` (read as
//! "at least one": GitHub's alternatives overlap), `minItems`, `maxLength`, and the `date-time`
//! format. Operations are found by method and path template (literal segments win over
//! parameters); path and query parameters are checked against their schemas, and unknown query
//! parameters are reported.
//!
//! The description is not part of the repository: `.ci/run` installs the pinned npm package
//! with `scripts/github-openapi` into `$HOME/.cache/baton/npm`, and [`Spec::locate`] finds it
//! there (or at `$BATON_GITHUB_OPENAPI`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The pinned version of `@octokit/openapi` that `scripts/github-openapi` installs.
pub const OPENAPI_PACKAGE: &str = "@octokit/openapi@23.0.2";
/// The pinned version of `@octokit/fixtures` (real recorded GitHub exchanges).
pub const FIXTURES_PACKAGE: &str = "@octokit/fixtures@23.1.2";

/// Where `scripts/github-openapi` installs the npm packages: `$BATON_NPM_CACHE`, else
/// `$HOME/.cache/baton/npm`.
pub fn npm_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BATON_NPM_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/baton/npm")
}

/// `@octokit/fixtures`' scenarios for api.github.com, if installed.
pub fn fixtures_dir() -> PathBuf {
    npm_dir().join("node_modules/@octokit/fixtures/scenarios/api.github.com")
}

/// One problem found, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `METHOD /path` (and `→ status` for responses).
    pub exchange: String,
    /// A JSON pointer into the request or response body, or the parameter name.
    pub at: String,
    pub problem: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: {}", self.exchange, self.at, self.problem)
    }
}

/// GitHub's OpenAPI description, loaded.
pub struct Spec {
    root: Value,
}

/// A matched operation: its path template and its definition.
#[derive(Debug, Clone)]
pub struct Operation<'a> {
    pub template: &'a str,
    pub method: String,
    op: &'a Value,
    path_item: &'a Value,
}

impl Spec {
    /// Load the description from a file.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read(path)?;
        let root = serde_json::from_slice(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(Self { root })
    }

    /// The installed description: `$BATON_GITHUB_OPENAPI`, else the npm cache. Panics with
    /// what to run when it is not there (tests need it; `.ci/run` installs it).
    pub fn locate() -> Self {
        let path = std::env::var_os("BATON_GITHUB_OPENAPI")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                npm_dir().join("node_modules/@octokit/openapi/generated/api.github.com.json")
            });
        Self::load(&path).unwrap_or_else(|e| {
            panic!(
                "GitHub's OpenAPI description is not at {} ({e}); run `scripts/github-openapi` \
                 (npm install {OPENAPI_PACKAGE}) or .ci/run",
                path.display()
            )
        })
    }

    /// The operation for `method` on a concrete `path` (no query), if GitHub documents one.
    pub fn operation(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let method = method.to_ascii_lowercase();
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let paths = self.root.get("paths")?.as_object()?;
        let mut best: Option<(usize, &str, &Value)> = None;
        for (template, item) in paths {
            if item.get(&method).is_none() {
                continue;
            }
            let tsegs: Vec<&str> = template.trim_end_matches('/').split('/').collect();
            // A trailing `{ref}` is a Git ref with its slashes (`heads/baton/prod/web`), as
            // GitHub documents it (`x-multi-segment`).
            let multi = tsegs.last() == Some(&"{ref}") && segs.len() > tsegs.len();
            let segs: Vec<&str> = if multi {
                segs[..tsegs.len()].to_vec()
            } else {
                segs.clone()
            };
            if tsegs.len() != segs.len() {
                continue;
            }
            let mut literal = 0;
            let fits = tsegs.iter().zip(&segs).all(|(t, s)| {
                if t.starts_with('{') && t.ends_with('}') {
                    !s.is_empty()
                } else if t == s {
                    literal += 1;
                    true
                } else {
                    false
                }
            });
            if fits && best.is_none_or(|(l, _, _)| literal > l) {
                best = Some((literal, template.as_str(), item));
            }
        }
        let (_, template, path_item) = best?;
        Some(Operation {
            template,
            method: method.clone(),
            op: &path_item[&method],
            path_item,
        })
    }

    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let Some(r) = v.get("$ref").and_then(Value::as_str) else {
                return v;
            };
            let Some(pointer) = r.strip_prefix('#') else {
                return v;
            };
            match self.root.pointer(pointer) {
                Some(target) => v = target,
                None => return v,
            }
        }
        v
    }

    fn parameters<'a>(&'a self, op: &Operation<'a>) -> Vec<&'a Value> {
        let mut out = Vec::new();
        for list in [op.path_item.get("parameters"), op.op.get("parameters")] {
            if let Some(Value::Array(ps)) = list {
                out.extend(ps.iter().map(|p| self.resolve(p)));
            }
        }
        out
    }

    /// Check a request: the operation exists, path and query parameters fit their schemas (and
    /// required ones are there), the JSON body fits the request body schema.
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
    ) -> Vec<Violation> {
        let exchange = format!("{method} {path}");
        let v = |at: &str, problem: String| Violation {
            exchange: exchange.clone(),
            at: at.to_owned(),
            problem,
        };
        let Some(op) = self.operation(method, path) else {
            return vec![v("path", "GitHub documents no such operation".into())];
        };
        let mut out = Vec::new();
        let params = self.parameters(&op);
        // Path parameters.
        let tsegs: Vec<&str> = op.template.split('/').collect();
        for (t, s) in tsegs.iter().zip(path.split('/')) {
            let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
                continue;
            };
            if let Some(p) = params
                .iter()
                .find(|p| p["in"] == "path" && p["name"] == name)
            {
                self.check_param(p, &percent_decode(s), &mut out, &exchange);
            }
        }
        // Query parameters.
        let pairs: Vec<(String, String)> = query
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        for (k, value) in &pairs {
            match params
                .iter()
                .find(|p| p["in"] == "query" && p["name"] == *k)
            {
                Some(p) => self.check_param(p, value, &mut out, &exchange),
                None => out.push(v(k, "GitHub documents no such query parameter".into())),
            }
        }
        for p in params
            .iter()
            .filter(|p| p["in"] == "query" && p["required"] == true)
        {
            if !pairs.iter().any(|(k, _)| p["name"] == *k) {
                out.push(v(
                    p["name"].as_str().unwrap_or("?"),
                    "required query parameter is missing".into(),
                ));
            }
        }
        // Body.
        let request_body = op.op.get("requestBody").map(|b| self.resolve(b));
        match (request_body, body) {
            (Some(rb), Some(body)) => {
                if let Some(schema) = json_schema(rb) {
                    self.check(schema, body, "", &mut out, &exchange);
                }
            }
            (Some(rb), None) if rb["required"] == true => {
                out.push(v("body", "the request body is required".into()))
            }
            (None, Some(body)) if !body.is_null() => out.push(v(
                "body",
                "GitHub documents no request body for this operation".into(),
            )),
            _ => {}
        }
        out
    }

    /// Check a response: the status is one GitHub documents for the operation (or one any
    /// route may answer: `304` to a `GET`, `401`, rate limits, `5xx`), and the body fits its
    /// schema. Errors any route may answer must have GitHub's basic error shape.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: Option<&Value>,
    ) -> Vec<Violation> {
        let exchange = format!("{method} {path} → {status}");
        let v = |at: &str, problem: String| Violation {
            exchange: exchange.clone(),
            at: at.to_owned(),
            problem,
        };
        let Some(op) = self.operation(method, path) else {
            return vec![v("path", "GitHub documents no such operation".into())];
        };
        let responses = &op.op["responses"];
        let documented = responses
            .get(status.to_string())
            .or_else(|| responses.get(format!("{}XX", status / 100)))
            .or_else(|| responses.get("default"))
            .map(|r| self.resolve(r));
        let mut out = Vec::new();
        match documented {
            Some(r) => match (json_schema(r), body) {
                (Some(schema), Some(body)) => self.check(schema, body, "", &mut out, &exchange),
                (Some(_), None) => out.push(v("body", "a JSON body is documented".into())),
                // GitHub documents some errors without their body, which is its basic error.
                (None, Some(b)) if status >= 400 => self.check_error(b, &mut out, &exchange),
                (None, Some(b)) if !b.is_null() => {
                    out.push(v("body", "GitHub documents no body for this status".into()))
                }
                _ => {}
            },
            None => {
                // Answers any route gives: not modified, authentication, no access (private
                // resources are `404`), rate limits, server errors.
                let generic = (status == 304 && op.method == "get")
                    || matches!(status, 401 | 403 | 404 | 429)
                    || status >= 500;
                if !generic {
                    out.push(v(
                        "status",
                        format!(
                            "GitHub documents {} for {} {}",
                            responses
                                .as_object()
                                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                                .unwrap_or_default(),
                            op.method.to_uppercase(),
                            op.template
                        ),
                    ));
                } else if status != 304 {
                    match body {
                        Some(b) => self.check_error(b, &mut out, &exchange),
                        None => out.push(v("body", "an error has a JSON body".into())),
                    }
                }
            }
        }
        out
    }

    /// GitHub's basic error: `message` (required here: every GitHub error names one),
    /// `documentation_url`, `status`.
    fn check_error(&self, body: &Value, out: &mut Vec<Violation>, exchange: &str) {
        let basic = serde_json::json!({"$ref": "#/components/schemas/basic-error"});
        self.check(&basic, body, "", out, exchange);
        if body.get("message").and_then(Value::as_str).is_none() {
            out.push(Violation {
                exchange: exchange.to_owned(),
                at: "/message".into(),
                problem: "an error names its message".into(),
            });
        }
    }

    fn check_param(&self, p: &Value, raw: &str, out: &mut Vec<Violation>, exchange: &str) {
        let Some(schema) = p.get("schema") else {
            return;
        };
        let schema = self.resolve(schema);
        let name = p["name"].as_str().unwrap_or("?");
        // Parameters arrive as text: read them as the type the schema wants.
        let value = match schema.get("type").and_then(Value::as_str) {
            Some("integer") => match raw.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(raw.to_owned()),
            },
            Some("number") => match raw.parse::<f64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(raw.to_owned()),
            },
            Some("boolean") => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(raw.to_owned()),
            },
            _ => Value::String(raw.to_owned()),
        };
        self.check(schema, &value, &format!("?{name}"), out, exchange);
    }

    /// Check `value` against `schema`; problems go to `out` with JSON pointers from `at`.
    pub fn check(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
        exchange: &str,
    ) {
        let schema = self.resolve(schema);
        let here = if at.is_empty() { "/" } else { at };
        let viol = |problem: String| Violation {
            exchange: exchange.to_owned(),
            at: here.to_owned(),
            problem,
        };
        let Some(s) = schema.as_object() else {
            return;
        };
        if value.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, value, at, out, exchange);
            }
        }
        for key in ["anyOf", "oneOf"] {
            let Some(alts) = s.get(key).and_then(Value::as_array) else {
                continue;
            };
            let tries: Vec<Vec<Violation>> = alts
                .iter()
                .map(|sub| {
                    let mut tmp = Vec::new();
                    self.check(sub, value, at, &mut tmp, exchange);
                    tmp
                })
                .collect();
            if tries.iter().any(Vec::is_empty) {
                continue;
            }
            // The closest alternative's problems say the most.
            let closest = tries.into_iter().min_by_key(Vec::len).unwrap_or_default();
            out.push(viol(format!(
                "fits none of the {key} alternatives (closest: {})",
                closest
                    .iter()
                    .map(|v| format!("{}: {}", v.at, v.problem))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
            return;
        }
        if let Some(types) = s.get("type") {
            let wanted: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !wanted.is_empty() && !wanted.iter().any(|t| type_fits(t, value)) {
                out.push(viol(format!(
                    "expected {}, found {}",
                    wanted.join(" or "),
                    type_name(value)
                )));
                return;
            }
        }
        if let Some(Value::Array(options)) = s.get("enum")
            && !options.contains(value)
        {
            out.push(viol(format!(
                "{value} is not one of {}",
                Value::Array(options.clone())
            )));
        }
        if s.get("format").and_then(Value::as_str) == Some("date-time")
            && let Some(t) = value.as_str()
            && chrono::DateTime::parse_from_rfc3339(t).is_err()
        {
            out.push(viol(format!("{t:?} is not an RFC 3339 date-time")));
        }
        if let (Some(max), Some(t)) = (s.get("maxLength").and_then(Value::as_u64), value.as_str())
            && t.chars().count() as u64 > max
        {
            out.push(viol(format!("longer than {max} characters")));
        }
        if let Value::Object(obj) = value {
            let props = s.get("properties").and_then(Value::as_object);
            if let Some(Value::Array(required)) = s.get("required") {
                for r in required.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(r) {
                        out.push(viol(format!("required field `{r}` is missing")));
                    }
                }
            }
            for (k, v) in obj {
                let inner = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match props.and_then(|p| p.get(k)) {
                    Some(sub) => self.check(sub, v, &inner, out, exchange),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => out.push(Violation {
                            exchange: exchange.to_owned(),
                            at: inner,
                            problem: "not a documented field (additionalProperties: false)".into(),
                        }),
                        Some(sub @ Value::Object(_)) => self.check(sub, v, &inner, out, exchange),
                        _ => {}
                    },
                }
            }
        }
        if let Value::Array(items) = value {
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                out.push(viol(format!("fewer than {min} items")));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.check(item_schema, item, &format!("{at}/{i}"), out, exchange);
                }
            }
        }
    }
}

/// The `application/json` schema of a request body or response, if it has one.
fn json_schema(r: &Value) -> Option<&Value> {
    let content = r.get("content")?.as_object()?;
    content
        .get("application/json")
        .or_else(|| content.values().next())
        .and_then(|c| c.get("schema"))
}

fn type_fits(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A recorded request and its answer, as the stand-in saw them.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: Option<String>,
    pub request: Option<Value>,
    pub status: u16,
    pub response: Option<Value>,
}

impl Exchange {
    pub fn what(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Check every exchange both ways; requests to the stand-in's own `/_sim` routes and Git smart
/// HTTP are not GitHub's REST API and are skipped, and so is `POST /graphql` (GraphQL is not in
/// the REST description; its one mutation is checked by shape in `tests/merge_queue.rs`).
pub fn check_exchanges(spec: &Spec, exchanges: &[Exchange]) -> Vec<Violation> {
    let mut out = Vec::new();
    for e in exchanges.iter().filter(|e| e.path != "/graphql") {
        out.extend(spec.check_request(&e.method, &e.path, e.query.as_deref(), e.request.as_ref()));
        out.extend(spec.check_response(&e.method, &e.path, e.status, e.response.as_ref()));
    }
    out
}

/// Every distinct `METHOD /template` among `exchanges` (unknown operations as their path).
pub fn operations(spec: &Spec, exchanges: &[Exchange]) -> std::collections::BTreeSet<String> {
    exchanges
        .iter()
        .map(|e| match spec.operation(&e.method, &e.path) {
            Some(op) => format!("{} {}", e.method, op.template),
            None => e.what(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Spec {
        Spec {
            root: json!({
                "paths": {
                    "/repos/{owner}/{repo}/pulls": {
                        "get": {
                            "parameters": [
                                {"$ref": "#/components/parameters/owner"},
                                {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["open", "closed", "all"]}},
                                {"name": "per_page", "in": "query", "schema": {"type": "integer"}}
                            ],
                            "responses": {"200": {"content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/pull"}}}}}}
                        },
                        "post": {
                            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                                "type": "object", "required": ["head", "base"],
                                "properties": {"head": {"type": "string"}, "base": {"type": "string"}, "draft": {"type": "boolean"}}
                            }}}},
                            "responses": {"201": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/pull"}}}}, "422": {"$ref": "#/components/responses/validation_failed"}}
                        }
                    },
                    "/repos/{owner}/{repo}/pulls/{pull_number}": {"get": {"responses": {"200": {}}}},
                    "/repos/{owner}/{repo}/pulls/comments": {"get": {"responses": {"200": {}}}}
                },
                "components": {
                    "parameters": {"owner": {"name": "owner", "in": "path", "required": true, "schema": {"type": "string"}}},
                    "responses": {"validation_failed": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/basic-error"}}}}},
                    "schemas": {
                        "basic-error": {"type": "object", "properties": {"message": {"type": "string"}}},
                        "pull": {"type": "object", "required": ["number", "merged_at"], "properties": {
                            "number": {"type": "integer"},
                            "merged_at": {"type": "string", "format": "date-time", "nullable": true},
                            "state": {"type": "string", "enum": ["open", "closed"]},
                            "user": {"anyOf": [{"type": "null"}, {"type": "object", "required": ["login"]}]}
                        }}
                    }
                }
            }),
        }
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        let s = spec();
        assert_eq!(
            s.operation("GET", "/repos/a/b/pulls/comments")
                .unwrap()
                .template,
            "/repos/{owner}/{repo}/pulls/comments"
        );
        assert_eq!(
            s.operation("GET", "/repos/a/b/pulls/7").unwrap().template,
            "/repos/{owner}/{repo}/pulls/{pull_number}"
        );
        assert!(s.operation("DELETE", "/repos/a/b/pulls").is_none());
    }

    #[test]
    fn requests_are_checked_for_query_enums_unknown_parameters_and_required_fields() {
        let s = spec();
        assert!(
            s.check_request(
                "GET",
                "/repos/a/b/pulls",
                Some("state=open&per_page=100"),
                None
            )
            .is_empty()
        );
        let bad = s.check_request(
            "GET",
            "/repos/a/b/pulls",
            Some("state=merged&sort=x&per_page=many"),
            None,
        );
        let text: Vec<String> = bad.iter().map(ToString::to_string).collect();
        assert_eq!(bad.len(), 3, "{text:#?}");
        assert!(text[0].contains("\"merged\" is not one of"));
        assert!(text[1].contains("no such query parameter"));
        assert!(text[2].contains("expected integer"));
        let missing = s.check_request(
            "POST",
            "/repos/a/b/pulls",
            None,
            Some(&json!({"head": "x"})),
        );
        assert_eq!(missing.len(), 1);
        assert!(missing[0].problem.contains("`base`"));
        assert_eq!(
            s.check_request("POST", "/repos/a/b/pulls", None, None)
                .len(),
            1
        );
        assert_eq!(s.check_request("PUT", "/nowhere", None, None).len(), 1);
    }

    #[test]
    fn responses_are_checked_for_required_fields_types_formats_and_documented_statuses() {
        let s = spec();
        let good =
            json!([{"number": 1, "merged_at": null, "state": "open", "user": {"login": "a"}}]);
        assert!(
            s.check_response("GET", "/repos/a/b/pulls", 200, Some(&good))
                .is_empty()
        );
        let bad = json!([{"number": "1", "state": "merged", "merged_at": "yesterday", "user": {}}]);
        let problems = s.check_response("GET", "/repos/a/b/pulls", 200, Some(&bad));
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{text:#?}");
        let missing = json!([{"number": 1}]);
        assert!(
            s.check_response("GET", "/repos/a/b/pulls", 200, Some(&missing))[0]
                .problem
                .contains("`merged_at`")
        );
        // Undocumented statuses: 409 is not, 304/404/5xx/429 are answers any route may give.
        assert_eq!(
            s.check_response(
                "POST",
                "/repos/a/b/pulls",
                409,
                Some(&json!({"message": "x"}))
            )
            .len(),
            1
        );
        assert!(
            s.check_response("GET", "/repos/a/b/pulls", 304, None)
                .is_empty()
        );
        assert!(
            s.check_response(
                "POST",
                "/repos/a/b/pulls",
                502,
                Some(&json!({"message": "x"}))
            )
            .is_empty()
        );
        assert_eq!(
            s.check_response("POST", "/repos/a/b/pulls", 429, Some(&json!({})))
                .len(),
            1
        );
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("shop%3Abaton%2Fdev"), "shop:baton/dev");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
