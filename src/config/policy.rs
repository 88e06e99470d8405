//! The config repo's Rego policies (`policies/*.rego`): read and compiled here, so that
//! `baton validate` can refuse one that does not compile; `promote::policy` evaluates them
//! against a promotion.

use super::files::Files;

/// One policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// Repo-relative path, for error messages.
    pub path: String,
    pub text: String,
}

/// The Rego policies of the repo (`policies/*.rego`), sorted by path.
pub fn read_policies(files: &dyn Files) -> Result<Vec<PolicySource>, String> {
    let mut out = Vec::new();
    for path in files.list("policies")? {
        if path.ends_with(".rego") {
            let text = files.read(&path)?.unwrap_or_default();
            out.push(PolicySource { path, text });
        }
    }
    Ok(out)
}

/// A policy that does not compile or evaluate; the text names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub message: String,
}

/// Check that every source compiles (for `baton validate`).
pub fn compile(sources: &[PolicySource]) -> Result<(), PolicyError> {
    engine(sources).map(|_| ())
}

/// The sources loaded into one Rego engine; `promote::policy` evaluates promotions with it.
pub fn engine(sources: &[PolicySource]) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    for s in sources {
        engine
            .add_policy(s.path.clone(), s.text.clone())
            .map_err(|e| PolicyError {
                message: format!("{}: {e}", s.path),
            })?;
    }
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_policy_is_an_error_naming_its_file() {
        let bad = vec![PolicySource {
            path: "policies/bad.rego".into(),
            text: "package baton\ndeny contains msg if {".into(),
        }];
        let e = compile(&bad).unwrap_err();
        assert!(e.message.starts_with("policies/bad.rego"), "{e}");
    }
}
