//! What the registries offer: the newest blessed release of every app, verified as the
//! pipeline asks, with what the registry says about its provenance and attestations.

use std::collections::BTreeMap;

use super::{Engine, EngineError};
use crate::forge::Forge;
use crate::gitrepo::files::Files;
use crate::promote::plan::Release;
use crate::registry::verify::{AttestationResult, Requirements};

impl<F: Forge> Engine<F> {
    /// The newest blessed release of every app of the pipeline at the config branch tip,
    /// verified with the cosign keys of that same tip. Apps whose scan failed are reported
    /// by name and reason and left out (their PRs stay as they are).
    pub async fn releases(
        &self,
        scanner: &crate::registry::scan::Scanner,
    ) -> Result<(BTreeMap<String, Release>, Vec<String>), EngineError> {
        let (pipeline, keys) = tokio::task::block_in_place(|| -> Result<_, EngineError> {
            let view = self.read_repo()?;
            let repo = self.repo();
            let files = repo.files_at(repo.tip()?)?;
            let mut keys = BTreeMap::new();
            for (name, app) in &view.pipeline.apps {
                if let Some(v) = &app.verify {
                    let read = |path: &str| {
                        files
                            .read(path)
                            .ok()
                            .flatten()
                            .map(String::into_bytes)
                            .ok_or_else(|| format!("{path} is not in the config repo"))
                    };
                    keys.insert(name.clone(), Requirements::from_config(v, &read));
                }
            }
            Ok((view.pipeline, keys))
        })?;
        let mut releases = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, app) in &pipeline.apps {
            let key = match keys.get(name) {
                Some(Err(e)) => {
                    problems.push(format!("{name}: verify: {e}"));
                    continue;
                }
                Some(Ok(k)) => Some(k),
                None => None,
            };
            match scanner.scan_app(name, app, key).await {
                Err(e) => problems.push(format!("{name}: {e}")),
                Ok(scan) => {
                    if let Some(c) = scan.newest
                        && let Some(digest) = c.digest.as_deref().and_then(|d| d.parse().ok())
                    {
                        let verified = verified_predicates(&c.attestations);
                        if !verified.is_empty() {
                            self.attestations
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(c.digest.clone().unwrap_or_default(), verified);
                        }
                        if let Some(meta) = &c.meta
                            && (meta.revision.is_some() || meta.source.is_some())
                        {
                            self.provenance
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(
                                    c.digest.clone().unwrap_or_default(),
                                    (meta.revision.clone(), meta.source.clone()),
                                );
                        }
                        releases.insert(
                            name.clone(),
                            Release {
                                tag: Some(c.tag),
                                digest,
                            },
                        );
                    }
                }
            }
        }
        // Open PRs may pin older digests than the newest (or the process restarted): their
        // attestations are read too, so the policy gate sees them (cached by the scanner).
        let open: Vec<(String, String)> = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .iter()
            .map(|(pr, _)| (pr.app.clone(), pr.digest.to_string()))
            .collect();
        for (app, digest) in open {
            let known = self
                .attestations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&digest);
            let (Some(Ok(req)), Some(cfg)) = (keys.get(&app), pipeline.app(&app)) else {
                continue;
            };
            if known || req.attestations.is_empty() {
                continue;
            }
            let Ok(repo) = crate::registry::Repo::parse(&cfg.image) else {
                continue;
            };
            match scanner.check(&repo, &digest, req).await {
                Ok(outcome) => {
                    let verified = verified_predicates(&outcome.attestations);
                    if !verified.is_empty() {
                        self.attestations
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(digest, verified);
                    }
                }
                Err(e) => problems.push(format!("{app}: attestations of {digest}: {e}")),
            }
        }
        Ok((releases, problems))
    }
}

/// Verified attestations as the policy input has them: predicate type → predicate.
fn verified_predicates(
    attestations: &[crate::registry::verify::AttestationStatus],
) -> BTreeMap<String, serde_json::Value> {
    attestations
        .iter()
        .filter_map(|a| match &a.result {
            AttestationResult::Verified { predicate, .. } => {
                Some((a.predicate_type.clone(), predicate.clone()))
            }
            _ => None,
        })
        .collect()
}
