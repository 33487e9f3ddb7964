//! `epitome ensemble-eval`: models of one split are averaged; models of other splits refused.

mod common;

use common::{epitome_at, shared, stderr, train_tiny};

#[test]
fn models_of_one_split_are_averaged_and_models_of_another_split_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // a and b share seed 1 (so the split) and differ in learning rate; c draws another split.
    for (name, extra) in [
        ("a", ["--seed", "1", "--lr", "1e-4"]),
        ("b", ["--seed", "1", "--lr", "3e-4"]),
        ("c", ["--seed", "2", "--lr", "1e-4"]),
    ] {
        let mut args = vec!["--limit", "120"];
        args.extend(extra);
        let out = train_tiny(d, &d.join(name), &args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let data = shared().join("data/epitome-reddit");
    let data = data.to_str().unwrap();
    let out = epitome_at(
        d,
        d,
        &["ensemble-eval", "--data", data, "--models", "a", "b"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    for m in ["| ER |", "| IP |", "| EX |"] {
        assert!(table.contains(m), "{table}");
    }
    assert!(
        table.contains("| mechanism | a | b | mean of the models | ensemble |"),
        "{table}"
    );

    let refused = epitome_at(
        d,
        d,
        &["ensemble-eval", "--data", data, "--models", "a", "c"],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("another split"),
        "{}",
        stderr(&refused)
    );
}
