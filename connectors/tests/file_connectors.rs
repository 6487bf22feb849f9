//! `file-source` and `file-sink` as processes against a real broker process: lines go
//! file → topic → file exactly once across graceful restarts, Kafka's `.properties`
//! configs work, malformed records reach the dead-letter topic, and bad configs are
//! refused with clear errors; with exactly-once sources, SIGKILLs neither lose nor repeat
//! a line.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{connect_command, create_topic, lines, read_topic, read_topic_at, start_broker, start_connect, wait_for};
use headwater_core::client::IsolationLevel;

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open input");
    file.write_all(text.as_bytes()).expect("append");
}

fn numbered(range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("line {i} {}\n", "x".repeat(i % 50))).collect()
}

fn wait_lines(path: &Path, count: usize) -> Vec<String> {
    wait_for(&format!("{count} lines in {}", path.display()), Duration::from_secs(60), || {
        let got = lines(path);
        (got.len() >= count).then_some(got)
    })
}

#[test]
fn lines_move_exactly_once_across_graceful_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    let source = dir.path().join("source.toml");
    let sink = dir.path().join("sink.toml");
    std::fs::write(
        &source,
        format!(
            "name = \"lines-in\"\nconnector.class = \"file-source\"\npath = \"{}\"\ntopic = \"lines\"\n",
            input.display()
        ),
    )
    .unwrap();
    std::fs::write(
        &sink,
        format!(
            "name = \"lines-out\"\nconnector.class = \"file-sink\"\ntopics = \"lines\"\npath = \"{}\"\n",
            output.display()
        ),
    )
    .unwrap();
    append(&input, &numbered(0..1000));

    let mut connect = start_connect(&bootstrap, &[&source, &sink], &[]);
    wait_lines(&output, 1000);
    // Appended lines are tailed; a line without its newline yet waits for the rest.
    append(&input, &numbered(1000..1500));
    append(&input, "half a li");
    wait_lines(&output, 1500);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(&output).len(), 1500, "the half line is not sent");
    assert!(connect.sigterm().success(), "a graceful stop exits 0");

    // Written while the worker is down: read on from the committed position.
    append(&input, "ne, finished\n");
    append(&input, &numbered(1500..2000));
    let mut connect = start_connect(&bootstrap, &[&source, &sink], &[]);
    let got = wait_lines(&output, 2001);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(connect.sigterm().success());

    let expected: Vec<String> = std::fs::read_to_string(&input).unwrap().lines().map(str::to_string).collect();
    assert_eq!(expected.len(), 2001);
    assert_eq!(lines(&output), expected, "every line once, in order");
    assert_eq!(got.len(), 2001);
    let topic: Vec<String> = read_topic(&bootstrap, "lines")
        .into_iter()
        .map(|r| String::from_utf8(r.value.expect("a value").to_vec()).unwrap())
        .collect();
    assert_eq!(topic, expected, "the topic holds each line once");

    // A third start with nothing new adds nothing.
    let mut connect = start_connect(&bootstrap, &[&source, &sink], &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(connect.sigterm().success());
    assert_eq!(lines(&output).len(), 2001, "no duplicates after a restart with nothing new");
    assert_eq!(read_topic(&bootstrap, "lines").len(), 2001);
}

#[test]
fn kafka_properties_files_run_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let input = dir.path().join("test.txt");
    let output = dir.path().join("test.sink.txt");
    // Kafka's config/connect-file-source.properties and connect-file-sink.properties.
    let source = dir.path().join("connect-file-source.properties");
    std::fs::write(
        &source,
        format!(
            "name=local-file-source\nconnector.class=FileStreamSource\ntasks.max=1\nfile={}\ntopic=connect-test\n",
            input.display()
        ),
    )
    .unwrap();
    let sink = dir.path().join("connect-file-sink.properties");
    std::fs::write(
        &sink,
        format!(
            "name=local-file-sink\nconnector.class=FileStreamSink\ntasks.max=1\nfile={}\ntopics=connect-test\n",
            output.display()
        ),
    )
    .unwrap();
    append(&input, "foo\nbar\n");
    let mut connect = start_connect(&bootstrap, &[&source, &sink], &["--offset-flush-interval-ms", "200"]);
    assert_eq!(wait_lines(&output, 2), ["foo", "bar"]);
    assert!(connect.sigterm().success());
}

#[test]
fn malformed_records_go_to_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let values: &[&[u8]] = &[b"{\"n\":1}", b"{not json", b"{\"n\":2}", b"\xff\xfe", b"{\"n\":3}"];
    runtime.block_on(async {
        let producer = headwater_core::client::Producer::connect(headwater_core::client::ProducerConfig {
            bootstrap: bootstrap.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        for value in values {
            producer.send("events", None, Some(Bytes::copy_from_slice(value)), Vec::new()).await.unwrap();
        }
        producer.flush().await.unwrap();
    });
    let output = dir.path().join("events.txt");
    let sink = dir.path().join("sink.json");
    std::fs::write(
        &sink,
        serde_json::json!({
            "name": "events-out",
            "config": {
                "connector.class": "file-sink",
                "topics": "events",
                "file": output.display().to_string(),
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter.schemas.enable": "false",
                "errors.tolerance": "all",
                "errors.deadletterqueue.topic.name": "events-dlq",
                "errors.deadletterqueue.context.headers.enable": "true",
            }
        })
        .to_string(),
    )
    .unwrap();
    let mut connect = start_connect(&bootstrap, &[&sink], &[]);
    assert_eq!(wait_lines(&output, 3), [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    assert!(connect.sigterm().success());

    let dead = read_topic(&bootstrap, "events-dlq");
    assert_eq!(dead.len(), 2, "both malformed records");
    for (record, (expected, offset)) in dead.iter().zip([(values[1], 1), (values[3], 3)]) {
        assert_eq!(record.value.as_deref(), Some(expected), "the record as it was read");
        let header = |name: &str| {
            let (_, value) = record.headers.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("header {name}"));
            String::from_utf8(value.clone().unwrap().to_vec()).unwrap()
        };
        assert_eq!(header("__connect.errors.topic"), "events");
        assert_eq!(header("__connect.errors.offset"), offset.to_string());
        assert_eq!(header("__connect.errors.stage"), "VALUE_CONVERTER");
        assert_eq!(header("__connect.errors.connector.name"), "events-out");
        assert!(
            header("__connect.errors.exception.message").contains("JSON"),
            "{}",
            header("__connect.errors.exception.message")
        );
    }

    // Without tolerance the task fails at the first malformed record and commits nothing.
    let strict_output = dir.path().join("strict.txt");
    let strict = dir.path().join("strict.toml");
    std::fs::write(
        &strict,
        format!(
            "name = \"strict\"\nconnector.class = \"file-sink\"\ntopics = \"events\"\npath = \"{}\"\n\
             value.converter = \"json\"\n\"value.converter.schemas.enable\" = false\n",
            strict_output.display()
        ),
    )
    .unwrap();
    let mut connect = start_connect(&bootstrap, &[&strict], &[]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(connect.sigterm().success());
    assert_eq!(lines(&strict_output), Vec::<String>::new(), "a poll is put only once all of it converts");
}

#[test]
fn bad_configs_are_refused_with_the_file_and_setting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-topic.toml");
    std::fs::write(&missing, "name = \"a\"\nconnector.class = \"file-source\"\npath = \"/tmp/x\"\n").unwrap();
    let unknown = dir.path().join("unknown.json");
    std::fs::write(&unknown, r#"{"name": "b", "connector.class": "no-such-thing"}"#).unwrap();
    let bad_number = dir.path().join("bad.properties");
    std::fs::write(&bad_number, "name=c\nconnector.class=FileStreamSource\nfile=/tmp/y\ntopic=t\nbatch.size=lots\n")
        .unwrap();
    let dlq_on_source = dir.path().join("dlq.toml");
    std::fs::write(
        &dlq_on_source,
        "name = \"d\"\nconnector.class = \"file-source\"\npath = \"/tmp/z\"\ntopic = \"t\"\n\
         [errors]\ntolerance = \"all\"\ndeadletterqueue.topic.name = \"dlq\"\n",
    )
    .unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "name = \"e\nconnector.class = 1\n").unwrap();
    let args: Vec<&str> = ["validate"]
        .into_iter()
        .chain([&missing, &unknown, &bad_number, &dlq_on_source, &broken].map(|p| p.to_str().unwrap()))
        .collect();
    let (status, _, stderr) = connect_command(&args);
    assert!(!status.success());
    assert!(stderr.contains("missing-topic.toml") && stderr.contains("missing required setting topic"), "{stderr}");
    assert!(stderr.contains("unknown connector.class no-such-thing"), "{stderr}");
    assert!(stderr.contains("bad.properties") && stderr.contains("batch.size"), "{stderr}");
    assert!(stderr.contains("only sink connectors have a dead-letter topic"), "{stderr}");
    assert!(stderr.contains("broken.toml"), "{stderr}");

    // `run` refuses them before starting anything, and needs no broker to do so.
    let (status, _, stderr) = connect_command(&["run", "--bootstrap", "127.0.0.1:1", missing.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("missing required setting topic"), "{stderr}");

    let (status, stdout, _) = connect_command(&["plugins"]);
    assert!(status.success());
    assert!(stdout.contains("file-source (source)") && stdout.contains("file-sink (sink)"), "{stdout}");
}

#[test]
fn the_example_configs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/connect");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("toml" | "json" | "properties")))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let (status, stdout, stderr) = connect_command(&args);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.ends_with(')') && l.contains(": ok (")).count(), files.len(), "{stdout}");
}

#[test]
fn a_sigkilled_worker_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    let source = dir.path().join("source.toml");
    let sink = dir.path().join("sink.toml");
    std::fs::write(
        &source,
        format!(
            "name = \"in\"\nconnector.class = \"file-source\"\npath = \"{}\"\ntopic = \"lines\"\nbatch.size = 100\n",
            input.display()
        ),
    )
    .unwrap();
    std::fs::write(
        &sink,
        format!(
            "name = \"out\"\nconnector.class = \"file-sink\"\ntopics = \"lines\"\npath = \"{}\"\n",
            output.display()
        ),
    )
    .unwrap();
    append(&input, &numbered(0..30_000));
    let flush = ["--offset-flush-interval-ms", "100"];
    let mut connect = start_connect(&bootstrap, &[&source, &sink], &flush);
    wait_for("some lines out", Duration::from_secs(60), || (lines(&output).len() >= 3_000).then_some(()));
    // No commit, no goodbye: whatever was in flight is delivered again after the restart.
    connect.kill();
    append(&input, &numbered(30_000..31_000));
    let mut connect = start_connect(&bootstrap, &[&source, &sink], &flush);
    let expected: Vec<String> = std::fs::read_to_string(&input).unwrap().lines().map(str::to_string).collect();
    let got = wait_for("every line, at least once", Duration::from_secs(120), || {
        let got = lines(&output);
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<String> = got.iter().filter(|l| seen.insert(l.to_string())).cloned().collect();
        (firsts.len() == expected.len()).then_some(firsts)
    });
    assert!(connect.sigterm().success());
    assert_eq!(got, expected, "nothing lost, in order of first delivery");
}

/// KIP-618: lines and the file position that covers them commit in one transaction, so a
/// worker SIGKILLed mid-stream again and again leaves every line in the topic exactly
/// once for a read_committed reader, in order. (At least once, the same kills repeat
/// the lines sent since the last offset commit.) Transactions of 300 ms make each kill
/// land inside one whose records the broker already holds.
#[test]
fn an_exactly_once_file_source_killed_mid_stream_writes_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    create_topic(&bootstrap, "eos-lines", 1);
    let input = dir.path().join("in.txt");
    let source = dir.path().join("source.toml");
    std::fs::write(
        &source,
        format!(
            "name = \"eos-in\"\nconnector.class = \"file-source\"\npath = \"{}\"\ntopic = \"eos-lines\"\n\
             batch.size = 200\nexactly.once.support = \"required\"\n\
             transaction.boundary = \"interval\"\n\"transaction.boundary.interval.ms\" = 300\n",
            input.display()
        ),
    )
    .unwrap();
    // A worker without exactly-once support refuses a connector that requires it.
    let (status, _, stderr) = connect_command(&["run", "--bootstrap", &bootstrap, &source.display().to_string()]);
    assert!(!status.success() && stderr.contains("exactly.once.source.support"), "{stderr}");

    let eos = ["--exactly-once-source-support", "enabled", "--offset-flush-interval-ms", "50"];
    // The file grows all the while, so every kill lands mid-stream.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (input, writing) = (input.clone(), std::sync::Arc::clone(&writing));
        std::thread::spawn(move || {
            let mut next = 0;
            while writing.load(std::sync::atomic::Ordering::Acquire) {
                append(&input, &numbered(next..next + 500));
                next += 500;
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut connect = start_connect(&bootstrap, &[&source], &eos);
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        // No commit, no goodbye: the open transaction is aborted by the next producer of
        // the task's transactional id.
        connect.kill();
        connect = start_connect(&bootstrap, &[&source], &eos);
    }
    std::thread::sleep(Duration::from_millis(500));
    writing.store(false, std::sync::atomic::Ordering::Release);
    writer.join().unwrap();
    let expected: Vec<String> = std::fs::read_to_string(&input).unwrap().lines().map(str::to_string).collect();
    let got = wait_for("every line", Duration::from_secs(120), || {
        let records = read_topic_at(&bootstrap, "eos-lines", IsolationLevel::ReadCommitted);
        (records.len() >= expected.len()).then_some(records)
    });
    assert!(connect.sigterm().success());
    let got: Vec<String> = got.iter().map(|r| String::from_utf8(r.value.as_ref().unwrap().to_vec()).unwrap()).collect();
    assert_eq!(got.len(), expected.len(), "no line twice");
    assert_eq!(got, expected, "every line once, in order");
    // The aborted transactions are there for read_uncommitted readers to see.
    let everything = read_topic(&bootstrap, "eos-lines").len();
    assert!(everything > expected.len(), "the SIGKILLs left aborted records ({everything})");
}

#[test]
fn exactly_once_is_refused_for_a_source_that_cannot_replay() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("http.toml");
    std::fs::write(
        &config,
        "name = \"push\"\nconnector.class = \"http-source\"\ntopic = \"t\"\nexactly.once.support = \"required\"\n",
    )
    .unwrap();
    let (status, _, stderr) = connect_command(&["validate", &config.display().to_string()]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("exactly.once.support") && stderr.contains("http-source"), "{stderr}");
    std::fs::write(&config, "name = \"f\"\nconnector.class = \"file-source\"\npath = \"/tmp/x\"\ntopic = \"t\"\ntransaction.boundary = \"connector\"\n").unwrap();
    let (status, _, stderr) = connect_command(&["validate", &config.display().to_string()]);
    assert!(!status.success() && stderr.contains("transaction.boundary"), "{stderr}");
}
