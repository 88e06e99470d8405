//! `POST /graphql`: the one mutation baton sends, `enqueuePullRequest`, answered as GitHub's
//! GraphQL API answers (`200` with `data`, or `200` with `errors` and `data: null` fields).
//! Other documents are answered with a GraphQL error naming what the stand-in supports.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Me, R, S, body, ok};
use crate::forge::Inner;
use crate::forge::queue;

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new().route("/graphql", post(graphql))
}

#[derive(Deserialize)]
struct Document {
    query: Option<String>,
    #[serde(default)]
    variables: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnqueueInput {
    pull_request_id: Option<String>,
    expected_head_oid: Option<String>,
}

fn graph_error(kind: &str, message: &str, path: Option<&str>) -> Value {
    let mut e = json!({"type": kind, "message": message, "locations": [{"line": 1, "column": 1}]});
    if let Some(p) = path {
        e["path"] = json!([p]);
    }
    e
}

async fn graphql(State(inner): S, Extension(me): Me, b: Bytes) -> R {
    let doc: Document = body(&b)?;
    let Some(query) = doc.query else {
        return ok(
            StatusCode::OK,
            json!({"errors": [{"message": "A query attribute must be specified and must be a string."}]}),
        );
    };
    if !query.contains("enqueuePullRequest") {
        return ok(
            StatusCode::OK,
            json!({"errors": [graph_error("UNSUPPORTED", "the GitHub stand-in answers only the enqueuePullRequest mutation", None)]}),
        );
    }
    // The input is taken from `variables.input` (baton's form).
    let input: Option<EnqueueInput> = serde_json::from_value(doc.variables["input"].clone()).ok();
    let Some(node_id) = input.as_ref().and_then(|i| i.pull_request_id.clone()) else {
        return ok(
            StatusCode::OK,
            json!({"errors": [graph_error("INVALID", "Variable $input of type EnqueuePullRequestInput! was provided invalid value for pullRequestId (Expected value to not be null)", None)]}),
        );
    };
    let expected = input.and_then(|i| i.expected_head_oid);
    match queue::enqueue(&inner, &me.login, &node_id, expected.as_deref()) {
        Ok(entry) => ok(
            StatusCode::OK,
            json!({"data": {"enqueuePullRequest": {"mergeQueueEntry": entry}}}),
        ),
        Err(e) => ok(
            StatusCode::OK,
            json!({"data": {"enqueuePullRequest": null}, "errors": [graph_error(e.kind, &e.message, Some("enqueuePullRequest"))]}),
        ),
    }
}
