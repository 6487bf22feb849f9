//! `postgres-sink` and `postgres-source` against a real PostgreSQL server and a real
//! broker process: upserts, deletes, auto-created tables, refused rows in the dead-letter
//! topic, incremental reads of inserts and updates, and no duplicates across graceful
//! restarts.

mod common;

use std::time::Duration;

use common::postgres::Postgres;
use common::{produce, read_topic, start_broker, start_connect, wait_for};

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn rows(pg: &Postgres, sql: &str) -> Vec<String> {
    pg.query(sql).into_iter().map(|r| r.join("|")).collect()
}

#[test]
fn sink_upserts_deletes_and_dead_letters() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    produce(
        &bootstrap,
        "orders",
        &[
            (Some("1"), Some(r#"{"id": 1, "item": "pen", "qty": 2, "price": 1.5, "tags": ["office"]}"#)),
            (Some("2"), Some(r#"{"id": 2, "item": "ink", "qty": 1, "price": 7.25, "tags": []}"#)),
            (Some("3"), Some(r#"{"id": 3, "item": "pad", "qty": 4, "price": 3.0, "tags": null}"#)),
            (Some("1"), Some(r#"{"id": 1, "item": "pen", "qty": 5, "price": 1.5, "tags": ["office"]}"#)),
            (Some("2"), None),
            (Some("4"), Some("not json at all")),
            (None, Some(r#"{"item": "no key anywhere", "qty": 1}"#)),
            (Some("5"), Some(r#"{"id": 5, "item": "cup", "qty": "many"}"#)),
        ],
    );
    let sink = write(
        dir.path(),
        "pg-sink.toml",
        &format!(
            "name = \"orders-pg\"\nconnector.class = \"postgres-sink\"\ntopics = \"orders\"\nurl = \"{}\"\n\
             table = \"shop_${{topic}}\"\nprimary_key = \"id\"\nauto_create = true\n\
             [errors]\ntolerance = \"all\"\ndeadletterqueue.topic.name = \"orders-dlq\"\n\
             deadletterqueue.context.headers.enable = true\n",
            pg.url
        ),
    );
    let mut connect = start_connect(&bootstrap, &[&sink], &[]);
    let got = wait_for("three rows", Duration::from_secs(60), || {
        let got = pg.query("SELECT to_regclass('shop_orders') IS NOT NULL");
        if got.first().map(|r| r[0].as_str()) != Some("t") {
            return None;
        }
        let got = rows(&pg, "SELECT id, item, qty, price, tags FROM shop_orders ORDER BY id");
        (got.len() == 2 && read_topic(&bootstrap, "orders-dlq").len() == 3).then_some(got)
    });
    assert_eq!(got, ["1|pen|5|1.5|[\"office\"]", "3|pad|4|3|NULL"], "the update won, the tombstone deleted");
    assert!(connect.sigterm().success());

    // Column types came from the first records.
    let types = rows(
        &pg,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'shop_orders' ORDER BY 1",
    );
    assert_eq!(types, ["id|bigint", "item|text", "price|double precision", "qty|bigint", "tags|jsonb"]);
    let dead = read_topic(&bootstrap, "orders-dlq");
    let stage = |i: usize| {
        let header = dead[i].headers.iter().find(|(k, _)| k == "__connect.errors.stage").expect("stage header");
        String::from_utf8(header.1.clone().unwrap().to_vec()).unwrap()
    };
    assert_eq!(dead[0].value.as_deref(), Some(&b"not json at all"[..]));
    assert_eq!(stage(0), "VALUE_CONVERTER");
    assert_eq!(stage(1), "TASK_PUT", "no primary key value");
    assert_eq!(dead[2].value.as_deref(), Some(&br#"{"id": 5, "item": "cup", "qty": "many"}"#[..]));
    assert_eq!(stage(2), "TASK_PUT", "PostgreSQL refused the row");
    let message = dead[2].headers.iter().find(|(k, _)| k == "__connect.errors.exception.message").unwrap();
    let message = String::from_utf8(message.1.clone().unwrap().to_vec()).unwrap();
    assert!(message.contains("22P02"), "the SQLSTATE is kept: {message}");

    // Restarted, it reads on from its committed offsets.
    produce(
        &bootstrap,
        "orders",
        &[(Some("6"), Some(r#"{"id": 6, "item": "mug", "qty": 1, "price": 4.0, "tags": []}"#))],
    );
    let mut connect = start_connect(&bootstrap, &[&sink], &[]);
    wait_for("the new row", Duration::from_secs(60), || {
        (rows(&pg, "SELECT id FROM shop_orders ORDER BY id") == ["1", "3", "6"]).then_some(())
    });
    assert!(connect.sigterm().success());
    assert_eq!(read_topic(&bootstrap, "orders-dlq").len(), 3, "nothing was read twice");
}

#[test]
fn sink_without_a_key_inserts_each_record_once() {
    let pg = Postgres::start();
    pg.query("CREATE TABLE clicks (page text, ms bigint)");
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let batch: Vec<String> = (0..500).map(|i| format!(r#"{{"page": "/p{}", "ms": {i}}}"#, i % 7)).collect();
    let records: Vec<(Option<&str>, Option<&str>)> = batch.iter().map(|v| (None, Some(v.as_str()))).collect();
    produce(&bootstrap, "clicks", &records);
    let sink = write(
        dir.path(),
        "clicks.json",
        &serde_json::json!({"name": "clicks-pg", "config": {
            "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
            "topics": "clicks", "connection.url": pg.url, "batch.size": "64"}})
        .to_string(),
    );
    for round in 0..2 {
        let mut connect = start_connect(&bootstrap, &[&sink], &[]);
        wait_for("the inserts", Duration::from_secs(60), || {
            (rows(&pg, "SELECT count(*) FROM clicks") == [(500 * (round + 1)).to_string()]).then_some(())
        });
        assert!(connect.sigterm().success());
        // The second round's records come after the first's offsets.
        produce(&bootstrap, "clicks", &records);
    }
    assert_eq!(rows(&pg, "SELECT count(*), count(DISTINCT ms), sum(ms) FROM clicks"), ["1000|500|249500"]);
}

#[test]
fn source_reads_inserts_and_updates_incrementally() {
    let pg = Postgres::start();
    pg.query(
        "CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL, balance numeric, \
         updated_at timestamptz NOT NULL DEFAULT clock_timestamp()); \
         INSERT INTO accounts (name, balance) SELECT 'user' || g, g * 10 FROM generate_series(1, 250) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let source = write(
        dir.path(),
        "pg-source.toml",
        &format!(
            "name = \"accounts-src\"\nconnector.class = \"postgres-source\"\nurl = \"{}\"\ntable = \"accounts\"\n\
             mode = \"timestamp+incrementing\"\nincrementing.column.name = \"id\"\n\
             timestamp.column.name = \"updated_at\"\ntopic.prefix = \"pg-\"\npoll.interval.ms = 200\nbatch.max.rows = 100\n",
            pg.url
        ),
    );
    let values = |bootstrap: &str| -> Vec<serde_json::Value> {
        read_topic(bootstrap, "pg-accounts")
            .into_iter()
            .map(|r| serde_json::from_slice(&r.value.expect("a value")).expect("JSON"))
            .collect()
    };
    let topic_len = |bootstrap: &str| read_topic(bootstrap, "pg-accounts").len();
    let mut connect = start_connect(&bootstrap, &[&source], &[]);
    wait_for("250 rows", Duration::from_secs(60), || (topic_len(&bootstrap) == 250).then_some(()));
    pg.query("UPDATE accounts SET balance = -1, updated_at = clock_timestamp() WHERE id IN (7, 8)");
    pg.query("INSERT INTO accounts (name, balance) VALUES ('late', 5)");
    wait_for("the update and the insert", Duration::from_secs(60), || (topic_len(&bootstrap) == 253).then_some(()));
    assert!(connect.sigterm().success());

    let got = values(&bootstrap);
    let ids: Vec<i64> = got.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    assert_eq!(&ids[..250], &(1..=250).collect::<Vec<_>>()[..], "in order, each once");
    assert_eq!(got[0]["name"], "user1");
    assert_eq!(got[0]["balance"], 10);
    let mut tail: Vec<(i64, String)> =
        got[250..].iter().map(|v| (v["id"].as_i64().unwrap(), v["balance"].to_string())).collect();
    tail.sort();
    assert_eq!(tail, [(7, "-1".to_string()), (8, "-1".to_string()), (251, "5".to_string())]);

    // Rows written while it was down, and nothing twice.
    pg.query("INSERT INTO accounts (name, balance) SELECT 'more' || g, g FROM generate_series(1, 30) g");
    let mut connect = start_connect(&bootstrap, &[&source], &[]);
    wait_for("the rows written meanwhile", Duration::from_secs(60), || (topic_len(&bootstrap) >= 283).then_some(()));
    std::thread::sleep(Duration::from_secs(1));
    assert!(connect.sigterm().success());
    let got = values(&bootstrap);
    assert_eq!(got.len(), 283, "no row read twice");
    assert_eq!(got[282]["id"], 281);
}

#[test]
fn source_in_incrementing_mode_sees_inserts() {
    let pg = Postgres::start();
    pg.query(
        "CREATE TABLE events (seq bigserial PRIMARY KEY, kind text); INSERT INTO events (kind) VALUES ('a'), ('b');",
    );
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    let source = write(
        dir.path(),
        "events.properties",
        &format!(
            "name=events-src\nconnector.class=io.confluent.connect.jdbc.JdbcSourceConnector\nconnection.url={}\n\
             table.whitelist=events\nmode=incrementing\nincrementing.column.name=seq\npoll.interval.ms=100\n",
            pg.url
        ),
    );
    let mut connect = start_connect(&bootstrap, &[&source], &["--offset-flush-interval-ms", "100"]);
    wait_for("two events", Duration::from_secs(60), || (read_topic(&bootstrap, "events").len() == 2).then_some(()));
    pg.query("INSERT INTO events (kind) VALUES ('c')");
    wait_for("the third", Duration::from_secs(60), || (read_topic(&bootstrap, "events").len() == 3).then_some(()));
    assert!(connect.sigterm().success());
    let kinds: Vec<String> = read_topic(&bootstrap, "events")
        .into_iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.value.unwrap()).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["a", "b", "c"]);
}
