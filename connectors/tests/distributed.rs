//! Distributed workers as real processes against a real broker, driven through the REST
//! API by an HTTP client: connectors created on one worker run on both, pause and resume,
//! restart, survive a SIGKILLed worker (its tasks move), are refused when invalid, and are
//! deleted.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Process, lines, start_broker, wait_for};
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_worker(bootstrap: &str, port: u16) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_headwater-connect"));
    command
        .args(["worker", "--bootstrap", bootstrap, "--group", "connect-cluster"])
        .args(["--rest-listen", &format!("127.0.0.1:{port}"), "--session-timeout-ms", "6000"])
        .args(["--offset-flush-interval-ms", "500"])
        .env("RUST_LOG", "warn");
    Process::spawn(command, "headwater-connect worker").0
}

/// One REST call: status and JSON body (null when empty).
fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method, url).timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
    })
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
}

fn task_states(base: &str, name: &str) -> Vec<(String, String)> {
    let (_, status) = call("GET", &format!("{base}/connectors/{name}/status"), None);
    status["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|t| {
                    (t["state"].as_str().unwrap_or("").to_string(), t["worker_id"].as_str().unwrap_or("").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn workers_share_connectors_through_the_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let (port_a, port_b) = (free_port(), free_port());
    let mut worker_a = start_worker(&bootstrap, port_a);
    let mut worker_b = start_worker(&bootstrap, port_b);
    let (a, b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));

    let (status, plugins) = call("GET", &format!("{a}/connector-plugins"), None);
    assert_eq!(status, 200);
    let classes: Vec<&str> = plugins.as_array().unwrap().iter().map(|p| p["class"].as_str().unwrap()).collect();
    for class in [
        "file-source",
        "file-sink",
        "postgres-sink",
        "postgres-source",
        "http-source",
        "http-sink",
        "parquet-sink",
        "mirror-source",
    ] {
        assert!(classes.contains(&class), "{classes:?}");
    }

    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    append(&input, "one\ntwo\n");
    let (status, created) = call(
        "POST",
        &format!("{a}/connectors"),
        Some(
            json!({"name": "lines-in", "config": {"connector.class": "FileStreamSource", "file": input.display().to_string(), "topic": "lines"}}),
        ),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["tasks"], json!([{"connector": "lines-in", "task": 0}]));
    assert_eq!(created["type"], "source");
    // Created through the other worker, with PUT.
    let (status, _) = call(
        "PUT",
        &format!("{b}/connectors/lines-out/config"),
        Some(json!({"connector.class": "file-sink", "topics": "lines", "path": output.display().to_string()})),
    );
    assert_eq!(status, 201);
    let (status, names) = call("GET", &format!("{a}/connectors"), None);
    assert_eq!((status, names), (200, json!(["lines-in", "lines-out"])));
    assert_eq!(
        wait_for("lines through both connectors", Duration::from_secs(60), || (lines(&output).len() == 2)
            .then(|| lines(&output))),
        ["one", "two"]
    );

    // Both workers took a task, and either answers for both.
    let workers = wait_for("both tasks running", Duration::from_secs(60), || {
        let mut workers: Vec<String> = ["lines-in", "lines-out"]
            .iter()
            .flat_map(|n| task_states(&b, n))
            .filter(|(state, _)| state == "RUNNING")
            .map(|(_, w)| w)
            .collect();
        workers.sort();
        (workers.len() == 2).then_some(workers)
    });
    assert_eq!(
        workers,
        {
            let mut both = vec![a.clone(), b.clone()];
            both.sort();
            both
        },
        "the group dealt one task to each worker"
    );

    // Refusals in Kafka Connect's shape.
    let (status, refused) = call(
        "POST",
        &format!("{a}/connectors"),
        Some(json!({"name": "bad", "config": {"connector.class": "file-source", "path": "/tmp/x"}})),
    );
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().unwrap().contains("missing required setting topic"), "{refused}");
    assert_eq!(refused["error_code"], 400);
    let (status, missing) = call("GET", &format!("{a}/connectors/nope/status"), None);
    assert_eq!((status, missing["error_code"].clone()), (404, json!(404)));
    let (status, _) = call(
        "POST",
        &format!("{a}/connectors"),
        Some(json!({"name": "lines-in", "config": {"connector.class": "file-source", "path": "/tmp/x", "topic": "t"}})),
    );
    assert_eq!(status, 409);
    let (status, checked) = call(
        "PUT",
        &format!("{a}/connector-plugins/FileStreamSource/config/validate"),
        Some(json!({"file": "/tmp/x"})),
    );
    assert_eq!(status, 200);
    assert_eq!(checked["error_count"], 1, "{checked}");

    // Pause: appended lines wait; resume: they flow.
    let (status, _) = call("PUT", &format!("{b}/connectors/lines-in/pause"), None);
    assert_eq!(status, 202);
    wait_for("PAUSED", Duration::from_secs(30), || {
        let (_, s) = call("GET", &format!("{a}/connectors/lines-in/status"), None);
        (s["connector"]["state"] == "PAUSED" && task_states(&a, "lines-in").iter().all(|(st, _)| st == "PAUSED"))
            .then_some(())
    });
    append(&input, "three\n");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lines(&output).len(), 2, "nothing flows while paused");
    assert_eq!(call("PUT", &format!("{a}/connectors/lines-in/resume"), None).0, 202);
    wait_for("the line after resume", Duration::from_secs(30), || (lines(&output).len() == 3).then_some(()));

    // Restart (KIP-745 form), and a task restart.
    let (status, restarted) = call("POST", &format!("{a}/connectors/lines-out/restart?includeTasks=true"), None);
    assert_eq!(status, 202, "{restarted}");
    assert_eq!(call("POST", &format!("{a}/connectors/lines-in/tasks/0/restart"), None).0, 204);
    assert_eq!(call("POST", &format!("{a}/connectors/lines-in/tasks/7/restart"), None).0, 404);
    append(&input, "four\n");
    wait_for("a line after the restarts", Duration::from_secs(30), || (lines(&output).len() == 4).then_some(()));

    // A worker dies: the other takes its task, and nothing is lost or repeated.
    worker_b.kill();
    append(&input, "five\n");
    wait_for("both tasks on the survivor", Duration::from_secs(60), || {
        let on_a = ["lines-in", "lines-out"]
            .iter()
            .flat_map(|n| task_states(&a, n))
            .filter(|(s, w)| s == "RUNNING" && *w == a)
            .count();
        (on_a == 2 && lines(&output).len() >= 5).then_some(())
    });
    // After a SIGKILL delivery is at least once: nothing lost, in order of first sight.
    let mut seen = Vec::new();
    for line in lines(&output) {
        if !seen.contains(&line) {
            seen.push(line);
        }
    }
    assert_eq!(seen, ["one", "two", "three", "four", "five"]);

    assert_eq!(call("DELETE", &format!("{a}/connectors/lines-out"), None).0, 204);
    assert_eq!(call("GET", &format!("{a}/connectors/lines-out"), None).0, 404);
    assert_eq!(call("GET", &format!("{a}/connectors"), None).1, json!(["lines-in"]));
    assert!(worker_a.sigterm().success(), "a graceful stop exits 0");

    // A new worker finds the connectors in the configs topic and runs them.
    let port_c = free_port();
    let mut worker_c = start_worker(&bootstrap, port_c);
    let c = format!("http://127.0.0.1:{port_c}");
    assert_eq!(call("GET", &format!("{c}/connectors"), None).1, json!(["lines-in"]));
    wait_for("the source running on the new worker", Duration::from_secs(60), || {
        task_states(&c, "lines-in").iter().any(|(s, w)| s == "RUNNING" && *w == c).then_some(())
    });
    assert!(worker_c.sigterm().success());
}
