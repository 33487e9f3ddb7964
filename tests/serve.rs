//! The HTTP server on an ephemeral loopback port, with real HTTP requests.

mod common;

use common::server::TestServer;
use common::*;
use epitome::data::Pair;
use epitome::predict::{predict_pairs, EncodedPair, PairPrediction};
use epitome::serve::batcher::{Backend, BackendError};
use epitome::serve::{bundle_backend, ServeConfig};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

fn model() -> PathBuf {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("model");
            let encoder =
                epitome::encoder::PretrainedEncoder::open(&fixtures().join("tiny-roberta"))
                    .unwrap();
            let options = epitome::train::TrainOptions {
                epochs: 1,
                batch_size: 8,
                limit: Some(24),
                dev_fraction: 0.0,
                ..epitome::train::TrainOptions::default_for_minilm()
            };
            epitome::train::train(
                &shared().join("data/epitome-reddit"),
                &encoder,
                "tiny",
                &options,
                &out,
                &epitome::progress::Silent,
            )
            .unwrap();
            (dir, out)
        })
        .1
        .clone()
}

/// The test server, with the facts and no suggestions.
struct Server;

impl Server {
    fn start<B: Backend>(
        config: ServeConfig,
        backend: B,
        text: epitome::text::TextEncoder,
    ) -> TestServer {
        let info = json!({"mechanisms": ["ER", "IP", "EX"], "max_len": 64});
        TestServer::start(config, backend, text, info, None)
    }

    fn bundle(config: ServeConfig) -> TestServer {
        let bundle = epitome::bundle::load(&model(), &candle_core::Device::Cpu).unwrap();
        let (backend, text, _) = bundle_backend(bundle);
        Self::start(config, backend, text)
    }
}

struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let r =
        epitome::serve::client::request(addr, method, path, headers, body, Duration::from_secs(60))
            .unwrap();
    Reply {
        status: r.status,
        body: r.body,
    }
}

const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

fn post(addr: SocketAddr, body: &Value) -> Reply {
    request(addr, "POST", "/v1/score", JSON, body.to_string().as_bytes())
}

fn pairs() -> Vec<Pair> {
    let data = epitome::data::load_epitome(&shared().join("data/epitome-reddit")).unwrap();
    data.examples
        .iter()
        .skip(100)
        .take(12)
        .enumerate()
        .map(|(i, e)| Pair {
            id: format!("q{i}"),
            seeker_post: e.seeker_post.clone(),
            response_post: e.response_post.clone(),
        })
        .collect()
}

fn assert_same(served: &Value, direct: &PairPrediction) {
    let direct = direct.to_json();
    assert_eq!(served["id"], direct["id"]);
    for m in ["ER", "IP", "EX"] {
        assert_eq!(served[m]["level"], direct[m]["level"], "{m}");
        assert_eq!(served[m]["rationales"], direct[m]["rationales"], "{m}");
        for k in 0..3 {
            let (a, b) = (
                served[m]["probs"][k].as_f64().unwrap(),
                direct[m]["probs"][k].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-5, "{m} prob {k}: {a} vs {b}");
        }
    }
}

#[test]
fn scoring_equals_predict_for_single_pairs_and_batches() {
    let server = Server::bundle(ServeConfig::default());
    let bundle = epitome::bundle::load(&model(), &candle_core::Device::Cpu).unwrap();
    let pairs = pairs();
    let direct = predict_pairs(&bundle.scorer(), &bundle.text, &pairs).unwrap();

    let one = post(
        server.addr(),
        &json!({"id": "q0", "seeker_post": pairs[0].seeker_post, "response_post": pairs[0].response_post}),
    );
    assert_eq!(one.status, 200, "{}", String::from_utf8_lossy(&one.body));
    assert_same(&one.json(), &direct[0]);

    let batch: Vec<Value> = pairs
        .iter()
        .map(
            |p| json!({"id": p.id, "seeker_post": p.seeker_post, "response_post": p.response_post}),
        )
        .collect();
    let many = post(server.addr(), &json!({ "pairs": batch }));
    assert_eq!(many.status, 200);
    let served = many.json();
    let served = served["predictions"].as_array().unwrap();
    assert_eq!(served.len(), pairs.len());
    for (s, d) in served.iter().zip(&direct) {
        assert_same(s, d);
    }
}

#[test]
fn concurrent_requests_are_batched_and_metrics_move() {
    let server = Server::bundle(ServeConfig {
        max_wait: Duration::from_millis(60),
        ..ServeConfig::default()
    });
    let addr = server.addr();
    let pairs = pairs();
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let p = pairs[i % pairs.len()].clone();
            std::thread::spawn(move || {
                post(
                    addr,
                    &json!({"seeker_post": p.seeker_post, "response_post": p.response_post}),
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let metrics = String::from_utf8(request(addr, "GET", "/metrics", &[], b"").body).unwrap();
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing:\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("epitome_requests_total{route=\"/v1/score\",status=\"200\"}"),
        24.0
    );
    assert_eq!(value("epitome_pairs_scored_total"), 24.0);
    let batches = value("epitome_batch_pairs_count");
    assert!(
        batches < 24.0,
        "24 concurrent requests ran in {batches} batches: none were batched together"
    );
    assert_eq!(value("epitome_request_duration_seconds_count"), 24.0);
    assert!(metrics.contains("epitome_queue_depth 0"));
}

#[test]
fn bad_requests_get_clear_4xx_errors() {
    let server = Server::bundle(ServeConfig {
        max_pairs_per_request: 3,
        max_body_bytes: 4096,
        max_text_chars: 500,
        ..ServeConfig::default()
    });
    let addr = server.addr();
    let check = |reply: Reply, status: u16, kind: &str, words: &str| {
        assert_eq!(
            reply.status,
            status,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        assert_eq!(body["type"], kind);
        assert!(body["error"].as_str().unwrap().contains(words), "{body}");
    };
    check(
        request(addr, "POST", "/v1/score", JSON, b"{not json"),
        400,
        "invalid_json",
        "not valid JSON",
    );
    check(
        request(
            addr,
            "POST",
            "/v1/score",
            JSON,
            b"{\"seeker_post\": \"\xff\"}",
        ),
        400,
        "invalid_utf8",
        "UTF-8",
    );
    check(
        post(addr, &json!({"seeker_post": "hi"})),
        422,
        "validation_error",
        "missing field response_post",
    );
    check(
        post(addr, &json!({"seeker_post": "hi", "response_post": 5})),
        422,
        "validation_error",
        "response_post: expected a string",
    );
    check(
        post(addr, &json!({"seeker_post": "hi", "response_post": "   "})),
        422,
        "validation_error",
        "empty",
    );
    check(
        post(addr, &json!({"pairs": "x"})),
        422,
        "validation_error",
        "expected an array",
    );
    check(
        post(
            addr,
            &json!({"pairs": [{"seeker_post": "a", "response_post": "b"}, {"seeker_post": "a"}]}),
        ),
        422,
        "validation_error",
        "pairs[1]",
    );
    let four: Vec<Value> = (0..4)
        .map(|_| json!({"seeker_post": "a", "response_post": "b"}))
        .collect();
    check(
        post(addr, &json!({ "pairs": four })),
        413,
        "payload_too_large",
        "max_pairs_per_request",
    );
    check(
        post(
            addr,
            &json!({"seeker_post": "a", "response_post": "b".repeat(600)}),
        ),
        413,
        "payload_too_large",
        "max_text_chars",
    );
    check(
        post(
            addr,
            &json!({"seeker_post": "a".repeat(5000), "response_post": "b"}),
        ),
        413,
        "payload_too_large",
        "max_body_bytes",
    );
    check(
        request(addr, "GET", "/nowhere", &[], b""),
        404,
        "not_found",
        "openapi",
    );

    // A long post is truncated, and the answer says so.
    let long = post(
        addr,
        &json!({"seeker_post": "I feel alone. ".repeat(30), "response_post": "I am sorry."}),
    );
    assert_eq!(long.status, 200);
    assert_eq!(long.json()["truncated"], true);
}

#[test]
fn a_token_guards_scoring_info_and_metrics_but_not_health() {
    let server = Server::bundle(ServeConfig {
        token: Some("s3cret".into()),
        ..ServeConfig::default()
    });
    let addr = server.addr();
    let body = json!({"seeker_post": "I feel low", "response_post": "I'm sorry to hear that."})
        .to_string();
    assert_eq!(
        request(addr, "POST", "/v1/score", JSON, body.as_bytes()).status,
        401
    );
    assert_eq!(
        request(
            addr,
            "POST",
            "/v1/score",
            &[JSON[0], ("Authorization", "Bearer nope")],
            body.as_bytes()
        )
        .status,
        401
    );
    let ok = request(
        addr,
        "POST",
        "/v1/score",
        &[JSON[0], ("Authorization", "Bearer s3cret")],
        body.as_bytes(),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(request(addr, "GET", "/info", &[], b"").status, 401);
    assert_eq!(request(addr, "GET", "/metrics", &[], b"").status, 401);
    assert_eq!(
        request(
            addr,
            "GET",
            "/info",
            &[("Authorization", "Bearer s3cret")],
            b""
        )
        .status,
        200
    );
    assert_eq!(request(addr, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(addr, "GET", "/readyz", &[], b"").status, 200);
    let unauth = request(addr, "POST", "/v1/score", JSON, body.as_bytes()).json();
    assert_eq!(unauth["type"], "unauthorized");
}

/// A backend that takes its time, so that the queue fills.
struct Slow;

impl Backend for Slow {
    fn score(&mut self, pairs: &[EncodedPair]) -> Result<Vec<PairPrediction>, BackendError> {
        std::thread::sleep(Duration::from_millis(400));
        Ok(ids_only(pairs))
    }
}

fn ids_only(pairs: &[EncodedPair]) -> Vec<PairPrediction> {
    pairs
        .iter()
        .map(|p| PairPrediction {
            id: p.pair.id.clone(),
            mechanisms: vec![],
            truncated: false,
        })
        .collect()
}

#[test]
fn a_full_queue_answers_429_instead_of_growing() {
    let text = epitome::encoder::PretrainedEncoder::open(&fixtures().join("tiny-roberta"))
        .unwrap()
        .text_encoder(64)
        .unwrap();
    let server = Server::start(
        ServeConfig {
            max_concurrent_requests: 1,
            max_wait: Duration::from_millis(0),
            ..ServeConfig::default()
        },
        Slow,
        text,
    );
    let addr = server.addr();
    let send = move || post(addr, &json!({"seeker_post": "a", "response_post": "b"})).status;
    let first = std::thread::spawn(send);
    std::thread::sleep(Duration::from_millis(100)); // the model thread is busy with the first
    let second = std::thread::spawn(send);
    std::thread::sleep(Duration::from_millis(100)); // the second waits in the queue
    let third = send();
    assert_eq!(third, 429);
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(second.join().unwrap(), 200);
}

#[test]
fn openapi_describes_the_real_routes_and_the_page_is_served() {
    let server = Server::bundle(ServeConfig::default());
    let addr = server.addr();
    let doc = request(addr, "GET", "/openapi.json", &[], b"").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let reply = request(addr, &method.to_uppercase(), path, &[], b"{}");
            assert_ne!(
                reply.status, 404,
                "{method} {path} is documented but not served"
            );
            assert_ne!(
                reply.status, 405,
                "{method} {path} is documented with the wrong method"
            );
        }
    }
    assert!(paths.contains_key("/v1/score") && paths.contains_key("/metrics"));
    assert!(paths["/v1/suggest"]["post"].is_object());
    // And the other way: on a documented path every other method is refused, with the JSON
    // error, and a path that is not documented is not served.
    for (path, ops) in paths {
        let ops = ops.as_object().unwrap();
        for method in ["get", "post", "put", "delete", "patch"] {
            if ops.contains_key(method) {
                continue;
            }
            let reply = request(addr, &method.to_uppercase(), path, &[], b"");
            assert_eq!(reply.status, 405, "{method} {path} is served undocumented");
            assert_eq!(reply.json()["type"], "method_not_allowed");
        }
    }
    for path in ["/v1/rewrite", "/score", "/v1", "/docs"] {
        assert_eq!(request(addr, "GET", path, &[], b"").status, 404, "{path}");
        assert_eq!(
            request(addr, "POST", path, JSON, b"{}").status,
            404,
            "{path}"
        );
    }
    for schema in [
        "Pair",
        "Batch",
        "Prediction",
        "Error",
        "SuggestRequest",
        "Suggestions",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let info = request(addr, "GET", "/info", &[], b"").json();
    assert!(info["mechanisms"].is_array());
    let page = request(addr, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("Empathy feedback") && html.contains("/v1/score"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from elsewhere"
    );
}

#[test]
fn shutdown_finishes_the_requests_in_flight() {
    let text = epitome::encoder::PretrainedEncoder::open(&fixtures().join("tiny-roberta"))
        .unwrap()
        .text_encoder(64)
        .unwrap();
    let mut server = Server::start(
        ServeConfig {
            max_wait: Duration::from_millis(0),
            ..ServeConfig::default()
        },
        Slow,
        text,
    );
    let addr = server.addr();
    let in_flight = std::thread::spawn(move || {
        post(addr, &json!({"seeker_post": "a", "response_post": "b"})).status
    });
    std::thread::sleep(Duration::from_millis(150)); // the request is with the model
    let running = server.running.take().unwrap();
    server.runtime.block_on(running.stop()).unwrap();
    assert_eq!(
        in_flight.join().unwrap(),
        200,
        "the request in flight was cut off"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

/// A backend that panics on its first batch, as a model thread with a bug would.
struct Panics;

impl Backend for Panics {
    fn score(&mut self, _: &[EncodedPair]) -> Result<Vec<PairPrediction>, BackendError> {
        panic!("the model blew up");
    }
}

fn tiny_text() -> epitome::text::TextEncoder {
    epitome::encoder::PretrainedEncoder::open(&fixtures().join("tiny-roberta"))
        .unwrap()
        .text_encoder(64)
        .unwrap()
}

#[test]
fn a_dead_model_thread_makes_the_server_unready_and_requests_503() {
    let server = Server::start(ServeConfig::default(), Panics, tiny_text());
    let addr = server.addr();
    // Ready once the model thread runs.
    let started = std::time::Instant::now();
    while request(addr, "GET", "/readyz", &[], b"").status != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pair = json!({"seeker_post": "a", "response_post": "b"});
    for _ in 0..2 {
        let reply = post(addr, &pair);
        assert_eq!(
            reply.status,
            503,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["type"], "unavailable");
    }
    let ready = request(addr, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["type"], "not_ready");
    assert_eq!(request(addr, "GET", "/healthz", &[], b"").status, 200);
}

/// Answers with ids only, at once.
struct Echo;

impl Backend for Echo {
    fn score(&mut self, pairs: &[EncodedPair]) -> Result<Vec<PairPrediction>, BackendError> {
        Ok(ids_only(pairs))
    }
}

#[test]
fn a_tokenizer_failure_is_a_422_naming_no_text() {
    // A word-level vocabulary without an unknown token cannot encode words outside it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"hello": 0, "there": 1}, "unk_token": "<unk>"}
    });
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let text = epitome::text::TextEncoder::from_file(&path, 16).unwrap();
    assert!(
        text.encode("secretword").is_err(),
        "the fixture must fail to encode"
    );
    let server = Server::start(ServeConfig::default(), Echo, text);
    let addr = server.addr();
    let ok = post(
        addr,
        &json!({"seeker_post": "hello", "response_post": "there"}),
    );
    assert_eq!(ok.status, 200);
    let reply = post(
        addr,
        &json!({"seeker_post": "hello", "response_post": "secretword"}),
    );
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert_eq!(body["type"], "validation_error");
    assert!(
        !body["error"].as_str().unwrap().contains("secretword"),
        "{body}"
    );
}

#[test]
fn content_type_methods_encodings_and_ids_are_checked() {
    let server = Server::start(ServeConfig::default(), Echo, tiny_text());
    let addr = server.addr();
    let body = json!({"seeker_post": "a", "response_post": "b"}).to_string();
    for headers in [&[][..], &[("Content-Type", "text/plain")][..]] {
        let reply = request(addr, "POST", "/v1/score", headers, body.as_bytes());
        assert_eq!(reply.status, 415);
        assert_eq!(reply.json()["type"], "unsupported_media_type");
    }
    let charset = request(
        addr,
        "POST",
        "/v1/score",
        &[("Content-Type", "application/json; charset=utf-8")],
        body.as_bytes(),
    );
    assert_eq!(charset.status, 200);
    let wrong_method = request(addr, "GET", "/v1/score", &[], b"");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json()["type"], "method_not_allowed");

    // An id beyond 64 bits comes back as written, not as a float.
    let big = "123456789012345678901234567890";
    let raw = format!("{{\"id\": {big}, \"seeker_post\": \"a\", \"response_post\": \"b\"}}");
    let reply = request(addr, "POST", "/v1/score", JSON, raw.as_bytes());
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["id"], big);
    let reply = post(
        addr,
        &json!({"id": [1], "seeker_post": "a", "response_post": "b"}),
    );
    assert_eq!(reply.status, 422);
    assert!(reply.json()["error"].as_str().unwrap().contains("body.id"));

    // A broken chunked body is a bad request, not a body over its size limit.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        )
        .unwrap();
    let reply = read_reply(&mut stream, Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("bad_request"), "{reply}");
}

/// Everything the server sends until it closes the connection (or `limit` passes).
fn read_reply(stream: &mut std::net::TcpStream, limit: Duration) -> String {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// Opens a connection and sends `bytes`, leaving the request unfinished.
fn half_sent(addr: SocketAddr, bytes: &[u8]) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream
}

#[test]
fn slow_clients_are_cut_off_while_others_are_served() {
    let server = Server::start(
        ServeConfig {
            header_timeout: Duration::from_millis(400),
            body_timeout: Duration::from_millis(400),
            ..ServeConfig::default()
        },
        Echo,
        tiny_text(),
    );
    let addr = server.addr();
    let started = std::time::Instant::now();
    let mut slow_headers = half_sent(addr, b"POST /v1/score HTTP/1.1\r\nHost: x\r\n");
    let mut slow_body = half_sent(
        addr,
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"seeker",
    );
    // Others are served meanwhile.
    let ok = post(addr, &json!({"seeker_post": "a", "response_post": "b"}));
    assert_eq!(ok.status, 200);
    let headers_reply = read_reply(&mut slow_headers, Duration::from_secs(10));
    assert!(
        !headers_reply.starts_with("HTTP/1.1 200"),
        "a request without its headers was answered: {headers_reply}"
    );
    let body_reply = read_reply(&mut slow_body, Duration::from_secs(10));
    assert!(body_reply.starts_with("HTTP/1.1 408"), "{body_reply}");
    assert!(body_reply.contains("request_timeout"), "{body_reply}");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "the slow connections stayed open for {waited:?}"
    );
}

#[test]
fn over_the_concurrency_limit_a_request_is_refused_before_its_body_is_read() {
    let server = Server::start(
        ServeConfig {
            max_concurrent_requests: 1,
            body_timeout: Duration::from_secs(30),
            ..ServeConfig::default()
        },
        Echo,
        tiny_text(),
    );
    let addr = server.addr();
    let head = b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n";
    // The one place is taken by a request still sending its body.
    let mut holder = head.to_vec();
    holder.extend_from_slice(b"{\"seeker_post\"");
    let _holding = half_sent(addr, &holder);
    std::thread::sleep(Duration::from_millis(200));
    // This one sends no body at all: the answer can only come before the body was read.
    let mut refused = half_sent(addr, head);
    let started = std::time::Instant::now();
    let reply = read_reply(&mut refused, Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
    assert!(reply.contains("overloaded"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_request_that_waited_past_the_queue_bound_is_refused_unscored() {
    let server = Server::start(
        ServeConfig {
            max_queue_time: Duration::from_millis(100),
            max_wait: Duration::from_millis(0),
            ..ServeConfig::default()
        },
        Slow,
        tiny_text(),
    );
    let addr = server.addr();
    let send = move || post(addr, &json!({"seeker_post": "a", "response_post": "b"}));
    let first = std::thread::spawn(send);
    std::thread::sleep(Duration::from_millis(100)); // the model is busy for 400 ms
    let late = send();
    assert_eq!(late.status, 429, "{}", String::from_utf8_lossy(&late.body));
    assert!(late.json()["error"]
        .as_str()
        .unwrap()
        .contains("max_queue_ms"));
    assert_eq!(first.join().unwrap().status, 200);
}
