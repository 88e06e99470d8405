//! Whatever YAML the reader accepts, printing it the kubectl-kustomize way and reading it back
//! gives the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(values) = baton::render::parse_stream(text) else { return };
    for v in values.iter().filter(|v| v.is_object()) {
        let printed = baton::render::to_yaml_document(v);
        let back = baton::render::parse_stream(&printed).expect("printed YAML parses");
        assert_eq!(back.len(), 1, "{printed}");
        assert_eq!(&back[0], v, "{printed}");
    }
});
