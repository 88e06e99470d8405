//! The HTTP surface: Kubernetes API paths (discovery, resources, watch, logs) and the `/_sim`
//! control API.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Shared;
use super::faults::{Fault, FaultKind, RequestKey};
use super::fields;
use super::resources::{self, ResourceType};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{self, ApiError, Change, DeleteOptions, EventType, Inner, Writer};

mod watch;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/requests", get(get_counts).delete(reset_counts))
        .route(
            "/_sim/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_sim/watches/disconnect", post(disconnect_watches))
        .route(
            "/_sim/images/broken",
            get(list_broken).post(mark_broken).delete(unmark_broken),
        )
        .route("/_sim/logs/{namespace}/{pod}", put(set_log))
        .fallback(api)
        .with_state(shared)
}

// ---- control API ----

async fn get_counts(State(s): State<Arc<Shared>>) -> Json<Value> {
    let counts = s.lock().counts.clone();
    Json(json!({
        "reads": counts.reads(),
        "writes": counts.writes(),
        "dryRunWrites": counts.dry_run_writes(),
        "total": counts.total(),
        "byVerbAndResource": counts.0,
    }))
}

async fn reset_counts(State(s): State<Arc<Shared>>) -> StatusCode {
    s.lock().counts = Default::default();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(s): State<Arc<Shared>>) -> Json<Vec<Fault>> {
    Json(s.lock().faults.clone())
}

async fn add_fault(State(s): State<Arc<Shared>>, Json(fault): Json<Fault>) -> StatusCode {
    s.lock().faults.push(fault);
    StatusCode::CREATED
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> StatusCode {
    s.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn disconnect_watches(State(s): State<Arc<Shared>>) -> StatusCode {
    s.disconnect.send_modify(|n| *n += 1);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ImageBody {
    image: String,
}

async fn list_broken(State(s): State<Arc<Shared>>) -> Json<Vec<String>> {
    Json(s.lock().broken.iter().cloned().collect())
}

async fn mark_broken(State(s): State<Arc<Shared>>, Json(body): Json<ImageBody>) -> StatusCode {
    s.lock().broken.insert(body.image);
    s.changed.send_modify(|_| {});
    StatusCode::NO_CONTENT
}

async fn unmark_broken(State(s): State<Arc<Shared>>, Json(body): Json<ImageBody>) -> StatusCode {
    s.lock().broken.remove(&body.image);
    s.changed.send_modify(|_| {});
    StatusCode::NO_CONTENT
}

async fn set_log(
    State(s): State<Arc<Shared>>,
    UrlPath((namespace, pod)): UrlPath<(String, String)>,
    body: String,
) -> StatusCode {
    s.lock().logs.insert((namespace, pod), body);
    StatusCode::NO_CONTENT
}

// ---- Kubernetes API ----

#[derive(Debug, Clone)]
struct ResPath {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

#[derive(Debug)]
enum Target {
    Version,
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    OpenApiRoot,
    OpenApi(String, String),
    Resource(ResPath),
    NotFound,
}

fn parse_path(path: &str) -> Target {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Target::Version,
        ["api"] => return Target::Api,
        ["api", v] => return Target::GroupVersion(String::new(), v.to_string()),
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis"] => return Target::Apis,
        ["apis", g] => return Target::Group(g.to_string()),
        ["apis", g, v] => return Target::GroupVersion(g.to_string(), v.to_string()),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        ["openapi", "v3"] => return Target::OpenApiRoot,
        ["openapi", "v3", "api", v] => return Target::OpenApi(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => return Target::OpenApi(g.to_string(), v.to_string()),
        _ => return Target::NotFound,
    };
    let s = |x: &&str| x.to_string();
    let res = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !matches!(*plural, "status" | "finalize") && tail.len() <= 2 =>
        {
            ResPath {
                group,
                version,
                namespace: Some(ns.to_string()),
                plural: plural.to_string(),
                name: tail.first().map(s),
                sub: tail.get(1).map(s),
            }
        }
        [plural, tail @ ..] if tail.len() <= 2 => ResPath {
            group,
            version,
            namespace: None,
            plural: plural.to_string(),
            name: tail.first().map(s),
            sub: tail.get(1).map(s),
        },
        _ => return Target::NotFound,
    };
    Target::Resource(res)
}

fn json_response(code: u16, body: &Value) -> Response {
    let mut resp = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        Json(body),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        "no-cache, private".parse().expect("static header"),
    );
    resp
}

fn error_response(err: &ApiError) -> Response {
    json_response(err.code, &err.status())
}

fn not_found_path() -> Response {
    error_response(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

type Params = HashMap<String, String>;

fn verb_of(method: &Method, res: &ResPath, params: &Params, headers: &HeaderMap) -> &'static str {
    let watch = params.get("watch").is_some_and(|v| v == "true" || v == "1");
    match *method {
        Method::GET if res.name.is_some() => "get",
        Method::GET if watch => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH if content_type(headers).contains("apply-patch") => "apply",
        Method::PATCH => "patch",
        Method::DELETE if res.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

fn accepts_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn manager_of(params: &Params, headers: &HeaderMap) -> String {
    if let Some(m) = params.get("fieldManager") {
        return m.clone();
    }
    // The API server's default: the user agent up to the first '/'.
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {ct})"
            ),
        ));
    }
    if ct.contains("yaml") {
        yaml_serde::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
    }
}

async fn api(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Params = Query::<Params>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let target = parse_path(uri.path());
    let (verb, resource, dry_run) = match &target {
        Target::Resource(res) => (
            verb_of(&method, res, &params, &headers),
            match &res.sub {
                Some(sub) => format!("{}/{sub}", res.plural),
                None => res.plural.clone(),
            },
            params.get("dryRun").is_some_and(|v| v == "All"),
        ),
        Target::NotFound => ("unknown", String::new(), false),
        _ => ("discovery", String::new(), false),
    };
    let fault = {
        let mut inner = s.lock();
        inner.counts.add(&RequestKey {
            verb: verb.into(),
            resource: resource.clone(),
            dry_run,
        });
        take_fault(&mut inner, verb, &resource)
    };
    if let Some(fault) = fault {
        match fault {
            FaultKind::Delay { millis } => tokio::time::sleep(Duration::from_millis(millis)).await,
            FaultKind::Status { code } => {
                let reason = match code {
                    503 => "ServiceUnavailable",
                    504 => "Timeout",
                    _ => "InternalError",
                };
                return error_response(&ApiError::new(
                    code,
                    reason,
                    format!("injected fault: HTTP {code}"),
                ));
            }
            FaultKind::TooManyRequests {
                retry_after_seconds,
            } => {
                let err = ApiError {
                    details: Some(json!({"retryAfterSeconds": retry_after_seconds})),
                    ..ApiError::new(
                        429,
                        "TooManyRequests",
                        "the server has received too many requests and has asked us to try again later",
                    )
                };
                let mut resp = error_response(&err);
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    retry_after_seconds.to_string().parse().expect("digits"),
                );
                return resp;
            }
        }
    }
    if method != Method::GET && !matches!(target, Target::Resource(_)) {
        return error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    match target {
        Target::Version => json_response(
            200,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-baton-sim", "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2", "compiler": "gc",
                "platform": "linux/amd64",
            }),
        ),
        Target::Api => json_response(200, &resources::api_versions(&host)),
        Target::Apis => json_response(200, &resources::group_list(&s.lock().types)),
        Target::Group(g) => match resources::group(&s.lock().types, &g) {
            Some(doc) => json_response(200, &doc),
            None => not_found_path(),
        },
        Target::GroupVersion(g, v) => match resources::resource_list(&s.lock().types, &g, &v) {
            Some(doc) => json_response(200, &doc),
            None => not_found_path(),
        },
        Target::OpenApiRoot => json_response(200, &resources::openapi_v3_root(&s.lock().types)),
        Target::OpenApi(g, v) => match resources::openapi_v3_group_version(&s.lock().types, &g, &v)
        {
            Some(doc) => json_response(200, &doc),
            None => not_found_path(),
        },
        Target::NotFound => not_found_path(),
        Target::Resource(res) => {
            match resource_request(&s, &method, res, verb, &params, &headers, &body).await {
                Ok(resp) => resp,
                Err(err) => error_response(&err),
            }
        }
    }
}

fn take_fault(inner: &mut Inner, verb: &str, resource: &str) -> Option<FaultKind> {
    let plural = resource.split('/').next().unwrap_or_default();
    let index = inner.faults.iter().position(|f| f.matches(verb, plural))?;
    let fault = &mut inner.faults[index];
    let kind = fault.kind.clone();
    if let Some(times) = fault.times.as_mut() {
        *times = times.saturating_sub(1);
        if *times == 0 {
            inner.faults.remove(index);
        }
    }
    Some(kind)
}

async fn resource_request(
    s: &Arc<Shared>,
    method: &Method,
    res: ResPath,
    verb: &str,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let t = s
        .lock()
        .find_type(&res.group, &res.version, &res.plural)
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })?;
    if res.namespace.is_some() && !t.namespaced {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if t.namespaced && res.namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let namespace = res.namespace.clone().unwrap_or_default();
    let dry_run = params.get("dryRun").is_some_and(|v| v == "All");
    let manager = manager_of(params, headers);
    match (verb, res.name.as_deref(), res.sub.as_deref()) {
        ("watch", _, _) => watch::watch(s, &t, res.namespace.as_deref(), params),
        ("list", _, _) => {
            let (labels, fields) = selectors(params)?;
            let (items, rv) = {
                let inner = s.lock();
                let items: Vec<Value> = inner
                    .list(&t, res.namespace.as_deref())
                    .into_iter()
                    .filter(|o| labels.matches(o) && fields.matches(o))
                    .collect();
                (items, inner.rv)
            };
            let (items, cont, remaining) = paginate(items, params)?;
            if accepts_table(headers) {
                return Ok(json_response(200, &table(&t, &items, rv, params)));
            }
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if let Some(cont) = cont {
                meta["continue"] = json!(cont);
                meta["remainingItemCount"] = json!(remaining);
            }
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": meta, "items": items}),
            ))
        }
        ("get", Some(name), None | Some("status")) => {
            let (obj, rv) = {
                let inner = s.lock();
                (inner.get(&t, &namespace, name), inner.rv)
            };
            let obj = obj.ok_or_else(|| ApiError::not_found(&t, name))?;
            if accepts_table(headers) {
                return Ok(json_response(200, &table(&t, &[obj], rv, params)));
            }
            Ok(json_response(200, &obj))
        }
        ("get", Some(name), Some("log")) if t.plural == "pods" && t.group.is_empty() => {
            let inner = s.lock();
            inner
                .get(&t, &namespace, name)
                .ok_or_else(|| ApiError::not_found(&t, name))?;
            let log = inner
                .logs
                .get(&(namespace.clone(), name.to_string()))
                .cloned()
                .unwrap_or_default();
            Ok(([(header::CONTENT_TYPE, "text/plain")], log).into_response())
        }
        ("get", Some(name), Some("scale")) if t.subresources.iter().any(|x| x == "scale") => {
            let obj = s
                .lock()
                .get(&t, &namespace, name)
                .ok_or_else(|| ApiError::not_found(&t, name))?;
            Ok(json_response(200, &scale_of(&obj)))
        }
        ("create", None, None) => {
            let mut obj = decode_body(headers, body)?;
            if let Some(body_ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
                && t.namespaced
                && body_ns != namespace
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let writer = Writer {
                manager,
                subresource: None,
                dry_run,
            };
            let created = s.write(|inner| {
                let name = match obj.pointer("/metadata/name").and_then(Value::as_str) {
                    Some(name) if !name.is_empty() => name.to_string(),
                    _ => match obj
                        .pointer("/metadata/generateName")
                        .and_then(Value::as_str)
                    {
                        Some(prefix) => {
                            let name = format!("{prefix}{}", inner.random_suffix());
                            obj["metadata"]["name"] = json!(name);
                            name
                        }
                        None => {
                            return Err(ApiError::invalid(
                                &t,
                                "",
                                "metadata.name: Required value: name or generateName is required",
                            ));
                        }
                    },
                };
                inner.write(&t, &namespace, &name, Change::Replace(obj), &writer, true)
            })?;
            Ok(json_response(201, &created))
        }
        ("update", Some(name), sub @ (None | Some("status") | Some("scale"))) => {
            let body = decode_body(headers, body)?;
            let writer = Writer {
                manager,
                subresource: sub.map(String::from),
                dry_run,
            };
            let updated = s.write(|inner| {
                let old = inner
                    .get(&t, &namespace, name)
                    .ok_or_else(|| ApiError::not_found(&t, name))?;
                let new = scale_in(sub, &old, body)?;
                inner.write(&t, &namespace, name, Change::Replace(new), &writer, false)
            })?;
            Ok(json_response(200, &scale_out(sub, updated)))
        }
        ("apply", Some(name), sub @ (None | Some("status"))) => {
            let config = decode_body(headers, body)?;
            if !params.contains_key("fieldManager") {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requires fieldManager to be set",
                ));
            }
            for field in ["apiVersion", "kind"] {
                if config
                    .get(field)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(ApiError::bad_request(format!(
                        "invalid object type: {field} must be set"
                    )));
                }
            }
            let force = params.get("force").is_some_and(|v| v == "true");
            let writer = Writer {
                manager,
                subresource: sub.map(String::from),
                dry_run,
            };
            let (result, existed) = s.write(|inner| {
                let existed = inner.get(&t, &namespace, name).is_some();
                (
                    inner.write(
                        &t,
                        &namespace,
                        name,
                        Change::Apply { config, force },
                        &writer,
                        false,
                    ),
                    existed,
                )
            });
            Ok(json_response(if existed { 200 } else { 201 }, &result?))
        }
        ("patch", Some(name), sub @ (None | Some("status") | Some("scale"))) => {
            let patch = decode_body(headers, body)?;
            let ct = content_type(headers).to_string();
            let writer = Writer {
                manager,
                subresource: sub.map(String::from),
                dry_run,
            };
            let updated = s.write(|inner| {
                let old = inner.get(&t, &namespace, name).ok_or_else(|| ApiError::not_found(&t, name))?;
                let mut target = if sub == Some("scale") { scale_of(&old) } else { old.clone() };
                if ct.contains("json-patch") {
                    fields::json_patch(&mut target, &patch).map_err(|m| ApiError::new(422, "Invalid", m))?;
                } else if ct.contains("strategic-merge-patch") {
                    fields::strategic_merge_patch(&mut target, &patch);
                } else if ct.contains("merge-patch") {
                    fields::merge_patch(&mut target, &patch);
                } else {
                    return Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct})")));
                }
                let new = scale_in(sub, &old, target)?;
                inner.write(&t, &namespace, name, Change::Replace(new), &writer, false)
            })?;
            Ok(json_response(200, &scale_out(sub, updated)))
        }
        ("delete", Some(name), None) => {
            let opts: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(body).unwrap_or(json!({}))
            };
            let policy = params.get("propagationPolicy").cloned().or_else(|| {
                opts.get("propagationPolicy")
                    .and_then(Value::as_str)
                    .map(String::from)
            });
            let dry_run = dry_run
                || opts
                    .get("dryRun")
                    .is_some_and(|d| d.as_array().is_some_and(|a| a.contains(&json!("All"))));
            let uid = opts.pointer("/preconditions/uid").and_then(Value::as_str);
            let rv = opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str);
            let orphan = policy.as_deref() == Some("Orphan");
            let (result, still_there) = s.write(|inner| {
                let result = inner.delete(
                    &t,
                    &namespace,
                    name,
                    &DeleteOptions {
                        orphan,
                        dry_run,
                        uid,
                        resource_version: rv,
                    },
                );
                (result, inner.get(&t, &namespace, name).is_some())
            });
            let obj = result?;
            if still_there && !dry_run {
                return Ok(json_response(200, &obj));
            }
            Ok(json_response(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": t.group, "kind": t.plural, "uid": obj.pointer("/metadata/uid")}}),
            ))
        }
        ("deletecollection", None, None) => {
            let (labels, fields) = selectors(params)?;
            let deleted = s.write(|inner| {
                let victims: Vec<Value> = inner
                    .list(&t, res.namespace.as_deref())
                    .into_iter()
                    .filter(|o| labels.matches(o) && fields.matches(o))
                    .collect();
                let mut deleted = Vec::new();
                for v in victims {
                    let ns = v
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let n = v
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    if let Ok(obj) = inner.delete(
                        &t,
                        &ns,
                        &n,
                        &DeleteOptions {
                            dry_run,
                            ..Default::default()
                        },
                    ) {
                        deleted.push(obj);
                    }
                }
                deleted
            });
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": {}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on this path"),
        )),
    }
}

/// The request's `labelSelector` and `fieldSelector` (empty when absent: everything matches).
fn selectors(params: &Params) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or("");
    Ok((
        LabelSelector::parse(param("labelSelector")).map_err(ApiError::bad_request)?,
        FieldSelector::parse(param("fieldSelector")).map_err(ApiError::bad_request)?,
    ))
}

/// The object a write stores: through `/scale`, `old` with the replicas of the Scale `new`;
/// otherwise `new` itself.
fn scale_in(sub: Option<&str>, old: &Value, new: Value) -> Result<Value, ApiError> {
    if sub == Some("scale") {
        with_scale(old, &new)
    } else {
        Ok(new)
    }
}

/// What a write answers: through `/scale`, the Scale of the stored object; otherwise the object.
fn scale_out(sub: Option<&str>, stored: Value) -> Value {
    if sub == Some("scale") {
        scale_of(&stored)
    } else {
        stored
    }
}

fn scale_of(obj: &Value) -> Value {
    let replicas = obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1));
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": replicas},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

fn with_scale(old: &Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale
        .pointer("/spec/replicas")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("spec.replicas is required"))?;
    let mut new = old.clone();
    new["spec"]["replicas"] = replicas;
    if let Some(rv) = scale
        .pointer("/metadata/resourceVersion")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        new["metadata"]["resourceVersion"] = rv.clone();
    }
    Ok(new)
}

fn paginate(
    items: Vec<Value>,
    params: &Params,
) -> Result<(Vec<Value>, Option<String>, usize), ApiError> {
    let start = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let bytes =
                hex::decode(token).map_err(|_| ApiError::bad_request("invalid continue token"))?;
            let after: (String, String) = serde_json::from_slice(&bytes)
                .map_err(|_| ApiError::bad_request("invalid continue token"))?;
            items
                .iter()
                .position(|o| key_of(o) > after)
                .unwrap_or(items.len())
        }
        None => 0,
    };
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let end = start + page.len();
    if end < total {
        let last = key_of(page.last().expect("a page before the end is not empty"));
        let token = hex::encode(serde_json::to_vec(&last).expect("strings serialize"));
        return Ok((page, Some(token), total - end));
    }
    Ok((page, None, 0))
}

fn key_of(obj: &Value) -> (String, String) {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

fn age(timestamp: &str) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

type CellFn = Box<dyn Fn(&Value) -> Vec<Value>>;

/// A `meta.k8s.io/v1` Table, as `kubectl get` asks for.
fn table(t: &ResourceType, items: &[Value], rv: u64, params: &Params) -> Value {
    let col = |name: &str, ty: &str| json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": name, "priority": 0});
    let int = |o: &Value, p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let (columns, cells): (Vec<Value>, CellFn) = match (t.group.as_str(), t.plural.as_str()) {
        ("apps", "deployments") => (
            vec![
                col("Name", "string"),
                col("Ready", "string"),
                col("Up-to-date", "integer"),
                col("Available", "integer"),
                col("Age", "string"),
            ],
            Box::new(move |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(format!(
                        "{}/{}",
                        int(o, "/status/readyReplicas"),
                        int(o, "/spec/replicas")
                    )),
                    json!(int(o, "/status/updatedReplicas")),
                    json!(int(o, "/status/availableReplicas")),
                    json!(age(o["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or_default())),
                ]
            }),
        ),
        ("", "pods") => (
            vec![
                col("Name", "string"),
                col("Status", "string"),
                col("Age", "string"),
            ],
            Box::new(|o| {
                vec![
                    o["metadata"]["name"].clone(),
                    o.pointer("/status/phase")
                        .cloned()
                        .unwrap_or(json!("Pending")),
                    json!(age(o["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or_default())),
                ]
            }),
        ),
        _ => (
            vec![col("Name", "string"), col("Created At", "date")],
            Box::new(|o| {
                vec![
                    o["metadata"]["name"].clone(),
                    o["metadata"]["creationTimestamp"].clone(),
                ]
            }),
        ),
    };
    let include = params
        .get("includeObject")
        .map(String::as_str)
        .unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let object = match include {
                "Object" => o.clone(),
                "None" => Value::Null,
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            json!({"cells": cells(o), "object": object})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests;
