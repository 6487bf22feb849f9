//! `http-source` and `http-sink` with real HTTP traffic: curl and concurrent reqwest
//! clients POST to the source's endpoint, and the sink POSTs to an HTTP server in this
//! test that fails some requests, so retries, batching and the dead-letter topic are seen
//! on the wire.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::{produce, read_topic, start_broker, start_connect, wait_for};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// curl: the status and the body of the answer.
fn curl(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn source_answers_once_records_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let port = free_port();
    let source = dir.path().join("http-source.toml");
    std::fs::write(
        &source,
        format!(
            "name = \"web-events\"\nconnector.class = \"http-source\"\nlisten = \"127.0.0.1:{port}\"\n\
             path = \"/events\"\ntopic = \"web\"\nkey.field = \"user\"\nauth.token = \"s3cret\"\nmax.request.bytes = 4096\n"
        ),
    )
    .unwrap();
    let mut connect = start_connect(&bootstrap, &[&source], &[]);
    let url = format!("http://127.0.0.1:{port}/events");
    let auth = "Authorization: Bearer s3cret";
    let json = "Content-Type: application/json";

    let (status, body) =
        curl(&["-H", auth, "-H", json, "--data", r#"[{"user": "ann", "n": 1}, {"user": "bob", "n": 2}]"#, &url]);
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":2,"failed":0}"#));
    // A 200 means the records are in the topic already.
    assert_eq!(read_topic(&bootstrap, "web").len(), 2, "acknowledged before the answer");
    let (status, _) = curl(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        "{\"user\":\"cy\"}\n{\"user\":\"di\"}\n",
        &url,
    ]);
    assert_eq!(status, 200);
    let (status, _) =
        curl(&["-H", auth, "-H", "Content-Type: text/plain", "--data-binary", "plain one\nplain two\n", &url]);
    assert_eq!(status, 200);

    // Refusals write nothing.
    let (status, body) = curl(&["-H", auth, "-H", json, "--data", "{broken", &url]);
    assert_eq!(status, 400);
    assert!(body.contains("not valid JSON"), "{body}");
    let (status, _) = curl(&["-H", "Authorization: Bearer wrong", "-H", json, "--data", "{}", &url]);
    assert_eq!(status, 401);
    let (status, _) = curl(&["-H", auth, "-H", json, "--data", &format!("[\"{}\"]", "x".repeat(5000)), &url]);
    assert_eq!(status, 413);
    let (status, _) = curl(&["-H", auth, &url]);
    assert_eq!(status, 405, "GET is not accepted");

    // Many clients at once.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let requests = (0..20).map(|c| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let body: Vec<serde_json::Value> =
                    (0..50).map(|i| serde_json::json!({"user": format!("c{c}"), "i": i})).collect();
                let response = client
                    .post(&url)
                    .bearer_auth("s3cret")
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(&body).unwrap())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let answer: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
                assert_eq!(answer["accepted"], 50);
            }
        });
        futures::future::join_all(requests).await;
    });
    assert!(connect.sigterm().success());

    let records = read_topic(&bootstrap, "web");
    assert_eq!(records.len(), 6 + 1000);
    let text = |b: &Option<bytes::Bytes>| b.as_deref().map(|b| String::from_utf8(b.to_vec()).unwrap());
    assert_eq!(text(&records[0].key).as_deref(), Some("\"ann\""), "the key field, as JSON");
    let value: serde_json::Value = serde_json::from_slice(records[1].value.as_deref().unwrap()).unwrap();
    assert_eq!(value, serde_json::json!({"user": "bob", "n": 2}));
    assert_eq!(text(&records[4].value).as_deref(), Some("\"plain one\""), "text as a JSON string");
    let per_client = records.iter().filter(|r| text(&r.key).as_deref() == Some("\"c7\"")).count();
    assert_eq!(per_client, 50);
}

/// What the test's HTTP server saw: each request's headers and body.
type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// An HTTP server on a free port: `/ok` answers 503 to its first two requests and 200
/// after; `/refuse` always answers 400.
fn receiver() -> (String, Seen, std::thread::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::clone(&seen);
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let failures = Arc::new(Mutex::new(2));
            let ok_state = Arc::clone(&state);
            let app = axum::Router::new()
                .route(
                    "/ok",
                    axum::routing::post(move |headers: HeaderMap, body: String| {
                        let state = Arc::clone(&ok_state);
                        let failures = Arc::clone(&failures);
                        async move {
                            let mut left = failures.lock().unwrap();
                            if *left > 0 {
                                *left -= 1;
                                return StatusCode::SERVICE_UNAVAILABLE;
                            }
                            state.lock().unwrap().push((headers, body));
                            StatusCode::OK
                        }
                    }),
                )
                .route("/refuse", axum::routing::post(|| async { (StatusCode::BAD_REQUEST, "no thanks") }));
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (base, seen, handle)
}

#[test]
fn sink_posts_batches_with_retries_and_dead_letters_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let values: Vec<String> = (0..120).map(|i| format!(r#"{{"i":{i}}}"#)).collect();
    let mut records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
    records.push((None, None));
    produce(&bootstrap, "metrics", &records);
    let (base, seen, _server) = receiver();
    let sink = dir.path().join("http-sink.toml");
    std::fs::write(
        &sink,
        format!(
            "name = \"metrics-out\"\nconnector.class = \"http-sink\"\ntopics = \"metrics\"\nurl = \"{base}/ok\"\n\
             batch.size = 50\nheaders = \"Authorization: Bearer abc|X-Source: headwater\"\nretry.backoff.ms = 50\n"
        ),
    )
    .unwrap();
    let mut connect = start_connect(&bootstrap, &[&sink], &[]);
    let bodies = wait_for("every record POSTed", Duration::from_secs(60), || {
        let seen = seen.lock().unwrap();
        let count: usize =
            seen.iter().map(|(_, b)| serde_json::from_str::<Vec<serde_json::Value>>(b).unwrap().len()).sum();
        (count >= 121).then(|| seen.clone())
    });
    assert!(connect.sigterm().success());
    let mut got = Vec::new();
    for (headers, body) in &bodies {
        assert_eq!(headers["authorization"], "Bearer abc");
        assert_eq!(headers["x-source"], "headwater");
        assert_eq!(headers["content-type"], "application/json");
        let batch: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
        assert!(batch.len() <= 50, "batches respect batch.size");
        got.extend(batch);
    }
    let mut expected: Vec<serde_json::Value> = (0..120).map(|i| serde_json::json!({"i": i})).collect();
    expected.push(serde_json::Value::Null);
    assert_eq!(got, expected, "each record once, in order, after the 503s were retried");

    // A server that refuses: with tolerance, the records go to the dead-letter topic.
    let refuse = dir.path().join("refuse.toml");
    std::fs::write(
        &refuse,
        format!(
            "name = \"refused\"\nconnector.class = \"http-sink\"\ntopics = \"metrics\"\nurl = \"{base}/refuse\"\n\
             batch.format = \"ndjson\"\n[errors]\ntolerance = \"all\"\ndeadletterqueue.topic.name = \"metrics-dlq\"\n\
             deadletterqueue.context.headers.enable = true\n"
        ),
    )
    .unwrap();
    let mut connect = start_connect(&bootstrap, &[&refuse], &[]);
    wait_for("the refused records in the dead-letter topic", Duration::from_secs(60), || {
        (read_topic(&bootstrap, "metrics-dlq").len() == 121).then_some(())
    });
    assert!(connect.sigterm().success());
    let dead = read_topic(&bootstrap, "metrics-dlq");
    assert_eq!(dead[5].value.as_deref(), Some(values[5].as_bytes()));
    let message = dead[0].headers.iter().find(|(k, _)| k == "__connect.errors.exception.message").unwrap();
    let message = String::from_utf8(message.1.clone().unwrap().to_vec()).unwrap();
    assert!(message.contains("400") && message.contains("no thanks"), "{message}");
}
