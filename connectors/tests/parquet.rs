//! `parquet-sink` against a local folder and a real S3-compatible server (s3s-fs): files
//! roll by record count and by age, name their first offset, hold every record once
//! across graceful restarts, and read back with the parquet crate's reader as typed
//! columns.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use common::{S3Server, create_topic, produce, start_broker, start_connect, start_connect_with_env, wait_for};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Every `.parquet` file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// (partition, offset) → (user, amount) of every row in the files.
fn rows(files: &[PathBuf]) -> Vec<(i32, i64, String, f64)> {
    let mut out = Vec::new();
    for file in files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let schema = batch.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(&names[..5], ["_topic", "_partition", "_offset", "_timestamp", "_key"]);
            let column = |name: &str| batch.column(schema.index_of(name).unwrap()).clone();
            let partitions = column("_partition");
            let offsets = column("_offset");
            let users = column("user");
            let amounts = column("amount");
            for i in 0..batch.num_rows() {
                out.push((
                    partitions.as_primitive::<Int32Type>().value(i),
                    offsets.as_primitive::<Int64Type>().value(i),
                    users.as_string::<i32>().value(i).to_string(),
                    amounts.as_primitive::<Float64Type>().value(i),
                ));
            }
            assert!(column("_timestamp").null_count() == 0);
        }
    }
    out
}

fn payments(range: std::ops::Range<usize>) -> Vec<(String, String)> {
    range.map(|i| (format!("k{i}"), format!(r#"{{"user": "u{}", "amount": {}.5, "n": {i}}}"#, i % 13, i))).collect()
}

fn produce_payments(bootstrap: &str, records: &[(String, String)]) {
    let refs: Vec<(Option<&str>, Option<&str>)> =
        records.iter().map(|(k, v)| (Some(k.as_str()), Some(v.as_str()))).collect();
    produce(bootstrap, "payments", &refs);
}

fn check_exactly_once(found: &[(i32, i64, String, f64)], produced: usize) {
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (partition, offset, _, _) in found {
        by_partition.entry(*partition).or_default().push(*offset);
    }
    let total: usize = by_partition.values().map(Vec::len).sum();
    assert_eq!(total, produced, "every record once");
    for offsets in by_partition.values_mut() {
        offsets.sort_unstable();
        assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>(), "no gaps, no repeats");
    }
}

#[test]
fn files_roll_by_count_and_hold_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    create_topic(&bootstrap, "payments", 2);
    produce_payments(&bootstrap, &payments(0..500));
    let out = dir.path().join("lake");
    let sink = dir.path().join("parquet-sink.toml");
    std::fs::write(
        &sink,
        format!(
            "name = \"payments-lake\"\nconnector.class = \"parquet-sink\"\ntopics = \"payments\"\nurl = \"{}\"\nflush.size = 100\n",
            out.display()
        ),
    )
    .unwrap();
    let mut connect = start_connect(&bootstrap, &[&sink], &[]);
    // Full files appear while it runs; the rest is written when it stops.
    wait_for("full files", Duration::from_secs(60), || (files(&out).len() >= 4).then_some(()));
    assert!(connect.sigterm().success());
    let written = files(&out);
    let names: Vec<String> = written.iter().map(|p| p.strip_prefix(&out).unwrap().display().to_string()).collect();
    assert!(names.contains(&"payments/partition=0/payments+0+00000000000000000000.parquet".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("payments/partition=1/payments+1+00000000000000000100")), "{names:?}");
    let found = rows(&written);
    check_exactly_once(&found, 500);
    let (_, _, user, amount) = &found[0];
    assert!(user.starts_with('u') && amount.fract() == 0.5, "typed columns: {user} {amount}");

    // Restarted, it writes only what came since.
    produce_payments(&bootstrap, &payments(500..700));
    let mut connect = start_connect(&bootstrap, &[&sink], &[]);
    wait_for("the new records' files", Duration::from_secs(60), || (rows(&files(&out)).len() >= 600).then_some(()));
    assert!(connect.sigterm().success());
    check_exactly_once(&rows(&files(&out)), 700);
}

#[test]
fn files_roll_by_age_into_a_real_s3_server() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"), "lake");
    let (_broker, bootstrap) = start_broker(&dir.path().join("broker"));
    create_topic(&bootstrap, "payments", 2);
    produce_payments(&bootstrap, &payments(0..50));
    let sink = dir.path().join("parquet-s3.json");
    std::fs::write(
        &sink,
        serde_json::json!({"name": "payments-s3", "config": {
            "connector.class": "parquet-sink", "topics": "payments", "store.url": "s3://lake/raw/kafka",
            "rotate.interval.ms": "500"}})
        .to_string(),
    )
    .unwrap();
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut connect = start_connect_with_env(&bootstrap, &[&sink], &[], &env);
    // s3s-fs keeps objects as files, so the bucket's folder shows what was uploaded.
    let bucket = dir.path().join("s3").join("lake").join("raw").join("kafka");
    wait_for("files rolled by age, while running", Duration::from_secs(60), || {
        (rows(&files(&bucket)).len() == 50).then_some(())
    });
    produce_payments(&bootstrap, &payments(50..80));
    wait_for("the later records", Duration::from_secs(60), || (rows(&files(&bucket)).len() == 80).then_some(()));
    assert!(connect.sigterm().success());
    check_exactly_once(&rows(&files(&bucket)), 80);
    assert!(files(&bucket).iter().all(|f| f.to_string_lossy().contains("/payments/partition=")));
}
