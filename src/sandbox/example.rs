//! The project's own example config repo (`apps/`, `environments/`, `policies/`, `keys/`),
//! embedded so that `baton sandbox` runs from any directory. A test keeps this list equal to
//! the files on disk.

/// `(path, contents)` of every file of the example config repo.
pub const FILES: &[(&str, &str)] = &[
    (
        "apps/web/deployment.yaml",
        include_str!("../../apps/web/deployment.yaml"),
    ),
    (
        "apps/web/kustomization.yaml",
        include_str!("../../apps/web/kustomization.yaml"),
    ),
    (
        "apps/web/service.yaml",
        include_str!("../../apps/web/service.yaml"),
    ),
    (
        "apps/worker/deployment.yaml",
        include_str!("../../apps/worker/deployment.yaml"),
    ),
    (
        "apps/worker/kustomization.yaml",
        include_str!("../../apps/worker/kustomization.yaml"),
    ),
    (
        "environments/dev/kustomization.yaml",
        include_str!("../../environments/dev/kustomization.yaml"),
    ),
    (
        "environments/dev/namespace.yaml",
        include_str!("../../environments/dev/namespace.yaml"),
    ),
    (
        "environments/prod/kustomization.yaml",
        include_str!("../../environments/prod/kustomization.yaml"),
    ),
    (
        "environments/prod/namespace.yaml",
        include_str!("../../environments/prod/namespace.yaml"),
    ),
    (
        "environments/staging/kustomization.yaml",
        include_str!("../../environments/staging/kustomization.yaml"),
    ),
    (
        "environments/staging/namespace.yaml",
        include_str!("../../environments/staging/namespace.yaml"),
    ),
    (
        "environments/staging/verify/smoke.yaml",
        include_str!("../../environments/staging/verify/smoke.yaml"),
    ),
    ("keys/ci.pub", include_str!("../../keys/ci.pub")),
    (
        "policies/pipeline.yaml",
        include_str!("../../policies/pipeline.yaml"),
    ),
    (
        "policies/promotion.rego",
        include_str!("../../policies/promotion.rego"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }

    #[test]
    fn the_embedded_example_is_every_file_of_the_example_dirs() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk = Vec::new();
        for d in ["apps", "environments", "policies", "keys"] {
            walk(&root.join(d), root, &mut on_disk);
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "update src/sandbox/example.rs");
    }
}
