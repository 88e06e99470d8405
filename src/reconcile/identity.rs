//! Least privilege per environment: an environment with `serviceAccount:` in the pipeline acts
//! as that ServiceAccount through Kubernetes impersonation, as Flux's `serviceAccountName` does.
//! Its apply, prune, dry run, discovery and health reads carry `Impersonate-User:
//! system:serviceaccount:<ns>:<name>`; the API server checks that baton may `impersonate` the
//! account, then authorizes the call as the account with the groups it gives every
//! ServiceAccount (`system:serviceaccounts`, `system:serviceaccounts:<ns>`,
//! `system:authenticated`). No `Impersonate-Group` is sent: naming groups would need
//! `impersonate` on groups too, and for a ServiceAccount the server adds exactly these.
//!
//! The impersonating client shares baton's own connection (token, TLS, connection pool): it
//! is baton's [`Client`] with one header added to every request.

use http::{HeaderValue, Request};
use kube::Client;
use kube::client::Body;

use super::error::ReconcileError;
use crate::config::pipeline::ServiceAccountRef;

/// The header the API server reads the impersonated user from.
pub const IMPERSONATE_USER: &str = "impersonate-user";

/// A client that makes every call of `base` as `account`.
pub fn impersonating(base: &Client, account: &ServiceAccountRef) -> Client {
    let user = HeaderValue::from_str(&account.username())
        .expect("a parsed ServiceAccountRef is a valid header value");
    let default_namespace = base.default_namespace().to_string();
    let base = base.clone();
    let service = tower::service_fn(move |mut request: Request<Body>| {
        let base = base.clone();
        request.headers_mut().insert(IMPERSONATE_USER, user.clone());
        async move { base.send(request).await }
    });
    Client::new(service, default_namespace)
}

/// What to do about a refusal of a call made as `account` for `env`, appended to the API
/// server's own message (which names the user, verb, resource and namespace).
pub(crate) fn forbidden_hint(env: &str, account: &ServiceAccountRef, message: &str) -> String {
    if message.contains("cannot impersonate") {
        format!(
            "; environment {env} acts as ServiceAccount {account} (serviceAccount: in policies/pipeline.yaml), and baton's own identity may not impersonate it: grant baton `impersonate` on serviceaccounts/{} in namespace {} (the chart's rbac.impersonate; docs/deployment.md)",
            account.name, account.namespace
        )
    } else {
        format!(
            "; environment {env} acts as ServiceAccount {account} (serviceAccount: in policies/pipeline.yaml), which lacks this permission: grant it to that ServiceAccount (a Role and RoleBinding in that namespace, a ClusterRole and ClusterRoleBinding for a cluster-scoped kind), or remove the object from the environment"
        )
    }
}

/// `error`, from a reconcile of `env` acting as `account`: a refusal by the API server now
/// says who was refused and what to grant (rather than pointing at baton's own RBAC). Other
/// errors are returned as they are.
pub(crate) fn explain(
    error: ReconcileError,
    env: &str,
    account: &ServiceAccountRef,
) -> ReconcileError {
    match error {
        ReconcileError::Api {
            action,
            object,
            source,
        } if is_forbidden(&source) => ReconcileError::Forbidden {
            env: env.to_string(),
            message: format!(
                "{action} {object}: {}",
                super::error::describe_with(&source, |m| forbidden_hint(env, account, m))
            ),
        },
        ReconcileError::DryRun { failures, total } => ReconcileError::DryRun {
            failures: retarget(failures, env, account),
            total,
        },
        ReconcileError::Apply { failures, total } => ReconcileError::Apply {
            failures: retarget(failures, env, account),
            total,
        },
        ReconcileError::Prune { failures, total } => ReconcileError::Prune {
            failures: retarget(failures, env, account),
            total,
        },
        other => other,
    }
}

fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

/// Failures whose hint points at baton's own RBAC point at the ServiceAccount instead.
fn retarget(
    failures: Vec<super::error::ObjectFailure>,
    env: &str,
    account: &ServiceAccountRef,
) -> Vec<super::error::ObjectFailure> {
    failures
        .into_iter()
        .map(|mut f| {
            if let Some(refusal) = f.message.strip_suffix(super::error::FORBIDDEN_HINT) {
                f.message = format!("{refusal}{}", forbidden_hint(env, account, refusal));
            }
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn account() -> ServiceAccountRef {
        ServiceAccountRef::parse("team-a/deployer").unwrap()
    }

    fn forbidden(message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code: 403,
            reason: "Forbidden".into(),
            message: message.into(),
            ..Default::default()
        }))
    }

    #[tokio::test]
    async fn every_request_of_the_impersonating_client_names_the_service_account() {
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let record = seen.clone();
        let base = Client::new(
            tower::service_fn(move |request: Request<Body>| {
                record.lock().unwrap().push(
                    request
                        .headers()
                        .get(IMPERSONATE_USER)
                        .map(|v| v.to_str().unwrap().to_string()),
                );
                async move {
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .status(200)
                            .body(Body::from(br#"{"major":"1","minor":"36","gitVersion":"v1.36.3","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":""}"#.to_vec()))
                            .unwrap(),
                    )
                }
            }),
            "default",
        );
        base.apiserver_version().await.unwrap();
        impersonating(&base, &account())
            .apiserver_version()
            .await
            .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                None,
                Some("system:serviceaccount:team-a:deployer".to_string())
            ]
        );
    }

    #[test]
    fn a_refused_dry_run_names_the_environment_and_service_account_and_what_to_grant() {
        let message = format!(
            "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"team-a\" (403 Forbidden){}",
            super::super::error::FORBIDDEN_HINT
        );
        let error = ReconcileError::DryRun {
            failures: vec![super::super::error::ObjectFailure {
                object: "Deployment/team-a/web".into(),
                message,
                transient: false,
            }],
            total: 1,
        };
        let text = explain(error, "dev", &account()).to_string();
        assert!(text.contains("nothing was applied"), "{text}");
        assert!(
            text.contains("cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"team-a\""),
            "{text}"
        );
        assert!(
            text.contains("environment dev acts as ServiceAccount team-a/deployer"),
            "{text}"
        );
        assert!(!text.contains("the chart's rbac.rules"), "{text}");
    }

    #[test]
    fn a_refused_impersonation_says_to_grant_baton_impersonate() {
        let error = ReconcileError::Api {
            action: "listing",
            object: "deployments (apps/v1) in namespace team-a".into(),
            source: forbidden(
                "users \"system:serviceaccount:team-a:deployer\" is forbidden: User \"system:serviceaccount:baton-system:baton\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"team-a\"",
            ),
        };
        let text = explain(error, "dev", &account()).to_string();
        assert!(
            text.contains(
                "grant baton `impersonate` on serviceaccounts/deployer in namespace team-a"
            ),
            "{text}"
        );
        assert!(!text.contains("the chart's rbac.rules"), "{text}");
    }
}
