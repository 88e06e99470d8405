//! The kustomization parser must turn any input into a model or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = baton::render::kustomization::parse(text, std::path::Path::new("kustomization.yaml"));
    }
});
