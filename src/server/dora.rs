//! `/api/v1/dora`: the DORA report the service computed last (`crate::dora`), optionally
//! narrowed to one environment and one app.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AppState, api_error};

/// `/api/v1/dora` query parameters.
#[derive(Debug, Deserialize)]
pub struct DoraQuery {
    pub env: Option<String>,
    pub app: Option<String>,
}

/// The report narrowed to `env` and `app`, or the name that is not in it.
pub fn narrow(
    report: &crate::dora::Report,
    env: Option<&str>,
    app: Option<&str>,
) -> Result<crate::dora::Report, String> {
    let mut out = report.clone();
    if let Some(env) = env {
        out.environments.retain(|e| e.env == env);
        if out.environments.is_empty() {
            return Err(format!("unknown environment {env:?}"));
        }
    }
    if let Some(app) = app {
        let known = out
            .environments
            .iter()
            .any(|e| e.apps.iter().any(|a| a.app == app));
        if !known {
            return Err(format!("no promotions of app {app:?} in the window"));
        }
        for e in &mut out.environments {
            e.apps.retain(|a| a.app == app);
            e.changes.retain(|c| c.app == app);
        }
    }
    Ok(out)
}

pub(super) async fn api_dora(
    State(state): State<Arc<AppState>>,
    query: Result<Query<DoraQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("{}; parameters: env, app", e.body_text()),
            );
        }
    };
    let Some(report) = state.dora() else {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the DORA metrics are not computed yet",
        );
    };
    match narrow(&report, q.env.as_deref(), q.app.as_deref()) {
        Ok(r) => Json(r).into_response(),
        Err(e) => api_error(StatusCode::NOT_FOUND, e),
    }
}
