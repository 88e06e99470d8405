//! Whatever YAML the reader accepts, printing it the kubectl-kustomize way and reading it back
//! gives the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A key `<<` prints plain and reads back as a merge key (in go-yaml too): not round-trippable.
fn has_merge_key(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| k == "<<" || has_merge_key(v)),
        Value::Array(a) => a.iter().any(has_merge_key),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(values) = baton::render::parse_stream(text) else { return };
    for v in values.iter().filter(|v| v.is_object() && !has_merge_key(v)) {
        let printed = baton::render::to_yaml_document(v);
        let back = baton::render::parse_stream(&printed).expect("printed YAML parses");
        assert_eq!(back.len(), 1, "{printed}");
        assert_eq!(&back[0], v, "{printed}");
    }
});
