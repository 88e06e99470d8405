//! kwok's configuration: the stage files shipped in kwok's module (copied into the assets by
//! `scripts/kube-assets`), with two rules added so that rollouts can fail for real:
//! pods whose image matches a broken marker never become Ready, and Job pods with such an image,
//! or with `SIM_JOB_FAIL=true` in a container's environment, fail instead of completing.

use std::collections::BTreeSet;
use std::path::Path;

use crate::Error;

/// The stage files the assets must hold, under `stages/`.
pub(crate) const STAGES: [&str; 5] = [
    "node-initialize",
    "node-heartbeat-with-lease",
    "pod-ready",
    "pod-complete",
    "pod-delete",
];

const ANCHOR: &str = "    matchExpressions:\n";

pub(crate) fn check_stages(assets: &Path) -> Result<(), Error> {
    for s in STAGES {
        if !assets.join("stages").join(format!("{s}.yaml")).is_file() {
            return Err(Error::Assets {
                dir: assets.to_path_buf(),
                what: format!("kwok stage stages/{s}.yaml"),
            });
        }
    }
    Ok(())
}

/// A regular expression matching image references that carry one of `markers` as the whole
/// reference, its tag or its digest (as the stand-in's `mark_broken` does). Written without
/// backslashes, so it can stand in a jq string inside single-quoted YAML.
pub(crate) fn broken_regex(markers: &BTreeSet<String>) -> String {
    if markers.is_empty() {
        return "^$".to_string(); // no image reference is empty
    }
    let escaped: Vec<String> = markers
        .iter()
        .map(|m| {
            m.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_string()
                    } else {
                        format!("[{c}]")
                    }
                })
                .collect()
        })
        .collect();
    format!("(^|[:@])({})($|@)", escaped.join("|"))
}

fn with_requirement(stage: &str, key: &str, value: &str) -> Result<String, String> {
    if !stage.contains(ANCHOR) {
        return Err("no selector.matchExpressions".to_string());
    }
    let requirement = format!(
        "{ANCHOR}    - key: '{key}'\n      operator: 'In'\n      values:\n      - '{value}'\n"
    );
    Ok(stage.replacen(ANCHOR, &requirement, 1))
}

/// The whole kwok configuration file for the current broken markers.
pub(crate) fn config(assets: &Path, markers: &BTreeSet<String>) -> Result<String, Error> {
    let read = |name: &str| -> Result<String, Error> {
        let p = assets.join("stages").join(format!("{name}.yaml"));
        std::fs::read_to_string(&p).map_err(crate::io(format!("{}", p.display())))
    };
    let bad = |stage: &str, why: String| Error::Assets {
        dir: assets.to_path_buf(),
        what: format!("usable kwok stage {stage} ({why})"),
    };
    let re = broken_regex(markers);
    let broken_image = format!("[.spec.containers[].image | select(test(\"{re}\"))] | length > 0");
    let job_fails = format!(
        "if ([.spec.containers[] | (.env // [])[] | select(.name == \"SIM_JOB_FAIL\" and (.value == \"true\" or .value == \"1\"))] | length > 0) or ({broken_image}) then \"fail\" else \"succeed\" end"
    );
    let ready = format!(
        "if ((.metadata.ownerReferences // []) | map(.kind) | index(\"Job\")) != null then \"run\" elif ({broken_image}) then \"never\" else \"run\" end"
    );

    let pod_ready =
        with_requirement(&read("pod-ready")?, &ready, "run").map_err(|e| bad("pod-ready", e))?;
    let complete = read("pod-complete")?;
    let pod_complete =
        with_requirement(&complete, &job_fails, "succeed").map_err(|e| bad("pod-complete", e))?;
    let failing = complete
        .replace("name: pod-complete", "name: pod-fail")
        .replace("exitCode: 0", "exitCode: 1")
        .replace("reason: Completed", "reason: Error")
        .replace("phase: Succeeded", "phase: Failed");
    if !failing.contains("phase: Failed") || !failing.contains("name: pod-fail") {
        return Err(bad("pod-complete", "its shape changed".into()));
    }
    let pod_fail =
        with_requirement(&failing, &job_fails, "fail").map_err(|e| bad("pod-fail", e))?;

    let mut docs = vec![
        read("node-initialize")?,
        read("node-heartbeat-with-lease")?,
        pod_ready,
        pod_complete,
        pod_fail,
        read("pod-delete")?,
    ];
    for d in &mut docs {
        if !d.ends_with('\n') {
            d.push('\n');
        }
    }
    Ok(docs.join("---\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broken_regex_escapes_every_punctuation_mark_and_anchors_on_tag_or_digest() {
        let m: BTreeSet<String> = ["sha256:ab12".to_string(), "1.2.0".to_string()].into();
        assert_eq!(broken_regex(&m), "(^|[:@])(1[.]2[.]0|sha256[:]ab12)($|@)");
        assert_eq!(broken_regex(&BTreeSet::new()), "^$");
        assert!(!broken_regex(&m).contains('\\'));
    }
}
