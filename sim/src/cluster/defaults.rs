//! The defaulting the API server performs on write, for the fields a reconciler is most likely to
//! trip over when it compares desired and live objects. Not exhaustive (see docs/sim.md).

use serde_json::{Value, json};

use super::resources::ResourceType;

fn default(obj: &mut Value, pointer: &str, value: Value) {
    if obj.pointer(pointer).is_some() {
        return;
    }
    let (parent, field) = pointer.rsplit_once('/').expect("pointers have a parent");
    if let Some(Value::Object(map)) = obj.pointer_mut(parent) {
        map.insert(field.to_string(), value);
    }
}

fn ensure_object(obj: &mut Value, pointer: &str) {
    if obj.pointer(pointer).is_none() {
        default(obj, pointer, json!({}));
    }
}

fn pod_spec(spec: &mut Value, restart_policy: &str) {
    default(spec, "/restartPolicy", json!(restart_policy));
    default(spec, "/dnsPolicy", json!("ClusterFirst"));
    default(spec, "/terminationGracePeriodSeconds", json!(30));
    default(spec, "/schedulerName", json!("default-scheduler"));
    default(spec, "/securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        let Some(Value::Array(containers)) = spec.get_mut(list) else {
            continue;
        };
        for c in containers {
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let last = image.rsplit('/').next().unwrap_or_default();
            let pull = if !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
            {
                "Always"
            } else {
                "IfNotPresent"
            };
            default(c, "/imagePullPolicy", json!(pull));
            default(c, "/terminationMessagePath", json!("/dev/termination-log"));
            default(c, "/terminationMessagePolicy", json!("File"));
            default(c, "/resources", json!({}));
            if let Some(Value::Array(ports)) = c.get_mut("ports") {
                for p in ports {
                    default(p, "/protocol", json!("TCP"));
                }
            }
        }
    }
}

fn template(obj: &mut Value, restart_policy: &str) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec(spec, restart_policy);
    }
}

/// Like the API server, a Job without `manualSelector` selects its pods by its own uid.
fn job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector") == Some(&json!(true))
        || obj.pointer("/spec/selector").is_some()
    {
        return;
    }
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(json!(""));
    let name = obj.pointer("/metadata/name").cloned().unwrap_or(json!(""));
    default(
        obj,
        "/spec/selector",
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    ensure_object(obj, "/spec/template");
    ensure_object(obj, "/spec/template/metadata");
    ensure_object(obj, "/spec/template/metadata/labels");
    if let Some(Value::Object(labels)) = obj.pointer_mut("/spec/template/metadata/labels") {
        for key in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
            labels.insert(key.into(), uid.clone());
        }
        for key in ["batch.kubernetes.io/job-name", "job-name"] {
            labels.insert(key.into(), name.clone());
        }
    }
}

/// Apply the defaults for `t` to `obj` in place.
pub fn apply(t: &ResourceType, obj: &mut Value) {
    if obj.get("spec").is_none()
        && matches!(
            t.kind.as_str(),
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job"
        )
    {
        return;
    }
    match (t.group.as_str(), t.kind.as_str()) {
        ("apps", "Deployment") => {
            default(obj, "/spec/replicas", json!(1));
            default(obj, "/spec/revisionHistoryLimit", json!(10));
            default(obj, "/spec/progressDeadlineSeconds", json!(600));
            default(
                obj,
                "/spec/strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            template(obj, "Always");
        }
        ("apps", "StatefulSet") => {
            default(obj, "/spec/replicas", json!(1));
            default(obj, "/spec/revisionHistoryLimit", json!(10));
            default(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
            default(
                obj,
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            template(obj, "Always");
        }
        ("apps", "DaemonSet") => {
            default(obj, "/spec/revisionHistoryLimit", json!(10));
            default(
                obj,
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
            );
            template(obj, "Always");
        }
        ("batch", "Job") => {
            default(obj, "/spec/backoffLimit", json!(6));
            default(obj, "/spec/completions", json!(1));
            default(obj, "/spec/parallelism", json!(1));
            default(obj, "/spec/completionMode", json!("NonIndexed"));
            default(obj, "/spec/suspend", json!(false));
            template(obj, "Never");
            job_selector(obj);
        }
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec, "Always");
            }
        }
        ("", "Service") => {
            ensure_object(obj, "/spec");
            default(obj, "/spec/type", json!("ClusterIP"));
            default(obj, "/spec/sessionAffinity", json!("None"));
            if let Some(Value::Array(ports)) = obj.pointer_mut("/spec/ports") {
                for p in ports {
                    default(p, "/protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        default(p, "/targetPort", port);
                    }
                }
            }
        }
        ("", "Secret") => {
            // `stringData` is write-only: folded into `data`, base64-encoded, over its keys.
            let Some(Value::Object(strings)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            else {
                return;
            };
            ensure_object(obj, "/data");
            if let Some(Value::Object(data)) = obj.get_mut("data") {
                use base64::Engine as _;
                for (k, v) in strings {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
            }
        }
        ("", "Namespace") => {
            ensure_object(obj, "/spec");
            default(obj, "/spec/finalizers", json!(["kubernetes"]));
            default(obj, "/status", json!({"phase": "Active"}));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resources::builtins;

    #[test]
    fn deployments_get_the_api_servers_defaults_without_overriding_given_values() {
        let t = builtins()
            .into_iter()
            .find(|t| t.kind == "Deployment")
            .unwrap();
        let mut d = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "web", "image": "web:1.0", "ports": [{"containerPort": 80}]}]}}}});
        apply(&t, &mut d);
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
    }
}
