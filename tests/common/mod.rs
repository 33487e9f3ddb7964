//! Helpers shared by the integration tests: the fixtures in ../shared are read in place.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn shared() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [here.join("../shared"), here.join("shared")];
    candidates
        .iter()
        .find(|p| p.join("fixtures").is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the shared fixtures are missing: expected ../shared/fixtures beside the checkout"
            )
        })
}

pub fn fixtures() -> PathBuf {
    shared().join("fixtures")
}

pub fn reference(name: &str) -> serde_json::Value {
    let path = fixtures().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn assert_close(actual: &[f32], expected: &[f32], tol: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol,
            "{what}[{i}]: got {a}, expected {e} (tolerance {tol})"
        );
    }
}
