//! The layering of docs/architecture.md, checked by reading the source: the floors (`yaml`,
//! `image`, `render`, `config`, `commands`) and the pure planner (`promote`) import only the
//! modules below them, and no two modules of the crate import each other, directly or
//! through others. A plain scan of `crate::` paths in `src/`, so it needs no build metadata.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each lower module may import from the crate, besides itself. Everything not named here
/// (`gitrepo`, `forge`, `registry`, `reconcile`, `engine`, `server`, `service`, …) sits above.
const FLOORS: &[(&str, &[&str])] = &[
    ("yaml", &[]),
    ("image", &[]),
    ("render", &["yaml", "image"]),
    ("config", &["yaml", "image"]),
    ("commands", &["config", "yaml", "image"]),
    ("promote", &["commands", "config", "yaml", "image"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The crate's top-level modules, from `src/lib.rs`.
fn modules(src: &Path) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').trim().to_string())
        .collect()
}

/// Every `.rs` file of a module: `src/<m>.rs` and everything under `src/<m>/`.
fn files_of(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        out.push(file);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The top-level modules a piece of Rust names through `crate::`, with the line of each:
/// `crate::a::b`, `crate::{a, b::c}`. Comment lines are skipped (doc examples use `baton::`).
fn crate_imports(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `my_crate::`, not `crate::`
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let name = first_ident(item.trim());
                    if !name.is_empty() {
                        out.push((i + 1, name));
                    }
                }
            } else {
                let name = first_ident(rest);
                if !name.is_empty() {
                    out.push((i + 1, name));
                }
            }
        }
    }
    out
}

fn first_ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// module → (imported module → first place it is imported, `file:line`).
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = src();
    let modules = modules(&src);
    assert!(
        modules.len() > 10 && modules.contains("config") && modules.contains("promote"),
        "src/lib.rs lists the modules: {modules:?}"
    );
    let mut graph = BTreeMap::new();
    for m in &modules {
        let mut edges: BTreeMap<String, String> = BTreeMap::new();
        for file in files_of(&src, m) {
            let text = std::fs::read_to_string(&file).expect("read source");
            let shown = file.strip_prefix(src.parent().unwrap()).unwrap_or(&file);
            for (line, name) in crate_imports(&text) {
                if &name != m && modules.contains(&name) {
                    edges
                        .entry(name)
                        .or_insert_with(|| format!("{}:{line}", shown.display()));
                }
            }
        }
        graph.insert(m.clone(), edges);
    }
    graph
}

#[test]
fn the_scan_sees_plain_grouped_and_nested_paths_but_not_comments() {
    let text = "use crate::config::Diagnostic;\n\
                use crate::{image::Digest, yaml};\n\
                // crate::forge in a comment\n\
                let x = crate::gitrepo::files::normalize(p);\n\
                use my_crate::server;\n";
    let names: Vec<(usize, String)> = crate_imports(text);
    assert_eq!(
        names,
        vec![
            (1, "config".to_string()),
            (2, "image".to_string()),
            (2, "yaml".to_string()),
            (4, "gitrepo".to_string()),
        ]
    );
}

#[test]
fn floors_and_the_planner_import_only_what_is_below_them() {
    let graph = graph();
    let mut upward = Vec::new();
    for (module, allowed) in FLOORS {
        let edges = graph
            .get(*module)
            .unwrap_or_else(|| panic!("module {module} is not in src/lib.rs"));
        for (to, at) in edges {
            if !allowed.contains(&to.as_str()) {
                upward.push(format!(
                    "{at}: `{module}` imports `crate::{to}`; {module} may import only {allowed:?}"
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "upward imports (see docs/architecture.md for where the code belongs):\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other_even_through_others() {
    let graph = graph();
    // Depth-first search for a cycle, reporting its first one with where each edge is.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == m) {
            let mut cycle = path[start..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for to in graph.get(m).into_iter().flat_map(|e| e.keys()) {
            if let Some(cycle) = visit(to, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut done, &mut Vec::new()) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], graph[&w[0]][&w[1]]))
                .collect();
            panic!("modules import each other:\n{}", steps.join("\n"));
        }
    }
}
