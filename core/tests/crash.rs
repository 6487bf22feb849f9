//! Durability against real process death: a child process appends with flush-on-ack
//! and reports each acknowledged batch; the parent SIGKILLs it at random moments, reopens
//! the log and checks that every acknowledged batch is there, byte for byte, and that no
//! partial batch is visible.
//!
//! The child is this same test binary, re-run with `--ignored --exact` on
//! `crash_child_appends_until_killed` and told where to write by environment variables.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use headwater_core::log::LogConfig;
use headwater_core::record::{BatchBuilder, BatchIter, Compression, NewRecord};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIR_VAR: &str = "HEADWATER_CRASH_DIR";
const SEED_VAR: &str = "HEADWATER_CRASH_SEED";
const ROUNDS: usize = 24;

fn config() -> LogConfig {
    // Small segments so rolls, sealed segments and recovery checkpoints happen mid-run.
    LogConfig { segment_bytes: 64 * 1024, index_interval_bytes: 1024, ..LogConfig::default() }
}

/// `(first_offset, last_offset, crc32c of the batch from its magic byte on)`.
type Ack = (i64, i64, u32);

#[test]
#[ignore = "child process of every_acknowledged_batch_survives_sigkill"]
fn crash_child_appends_until_killed() {
    let dir = std::env::var(DIR_VAR).expect("run by the crash test");
    let seed: u64 = std::env::var(SEED_VAR).expect("seed").parse().expect("seed");
    let mut rng = StdRng::seed_from_u64(seed);
    let t = open_log_system_clock(std::path::Path::new(&dir), config());
    let mut stdout = std::io::stdout().lock();
    // An idempotent producer per child: sequences count records, not batches.
    let mut sequence = 0i32;
    for i in 0u64.. {
        let codec = [Compression::None, Compression::Lz4, Compression::Zstd][rng.random_range(0..3)];
        let count = rng.random_range(1..8);
        let mut builder = BatchBuilder::new(codec).producer((seed & i64::MAX as u64) as i64, 0, sequence);
        sequence += count as i32;
        let values: Vec<Vec<u8>> = (0..count)
            .map(|r| format!("{seed}-{i}-{r}-{}", "x".repeat(rng.random_range(0..6000))).into_bytes())
            .collect();
        for value in &values {
            builder.append(NewRecord { timestamp: i as i64, key: Some(b"k"), value: Some(value), headers: &[] });
        }
        let bytes = builder.build().expect("build");
        let digest = crc32c::crc32c(&bytes[16..]);
        let info = t.log.append(&bytes, 0).expect("append");
        t.log.wait_flushed_blocking(info.last_offset + 1).expect("flush");
        // Acknowledged only once this line is out.
        writeln!(stdout, "ACK {} {} {digest}", info.first_offset, info.last_offset).expect("stdout");
        stdout.flush().expect("stdout");
    }
}

#[test]
fn every_acknowledged_batch_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var(SEED_VAR).ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("crash test seed {seed} (set {SEED_VAR} to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked: Vec<Ack> = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child_appends_until_killed", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, dir.path())
            .env(SEED_VAR, (seed + round as u64).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let round_acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
        let reader = {
            let stdout = child.stdout.take().unwrap();
            let round_acks = Arc::clone(&round_acks);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let Some(rest) = line.strip_prefix("ACK ") else { continue };
                    let fields: Vec<&str> = rest.split(' ').collect();
                    if let [first, last, digest] = fields[..] {
                        round_acks.lock().unwrap().push((
                            first.parse().unwrap(),
                            last.parse().unwrap(),
                            digest.parse().unwrap(),
                        ));
                    }
                }
            })
        };
        // Wait for the child to be appending, then kill it at a random moment.
        let deadline = Instant::now() + Duration::from_secs(60);
        while round_acks.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "child made no progress in round {round}");
            assert!(child.try_wait().unwrap().is_none(), "child exited early in round {round}");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(round_acks.lock().unwrap().iter().copied());
        eprintln!("round {round}: {} batches acknowledged so far", acked.len());

        // Reopen as the next process would, and check everything acknowledged so far.
        let t = open_log_system_clock(dir.path(), config());
        let max_acked = acked.iter().map(|a| a.1).max().unwrap();
        assert!(
            t.log.log_end() > max_acked,
            "round {round}: log end {} lost acked offset {max_acked}",
            t.log.log_end()
        );
        for &(first, last, digest) in &acked {
            let read = t.log.read(first, None, 1).unwrap();
            let batch = first_batch(&read.records);
            assert_eq!((batch.base_offset(), batch.last_offset()), (first, last), "round {round}");
            assert_eq!(crc32c::crc32c(&batch.as_bytes()[16..]), digest, "round {round}: batch at {first} changed");
        }
        // No partial batch anywhere: every batch whole and valid, offsets contiguous.
        let mut offset = t.log.log_start();
        while offset < t.log.log_end() {
            let read = t.log.read(offset, None, 1 << 20).unwrap();
            for batch in BatchIter::new(&read.records) {
                let batch = batch.unwrap();
                batch.validate().unwrap();
                assert_eq!(batch.base_offset(), offset, "round {round}: gap or overlap");
                offset = batch.next_offset();
            }
        }
        t.log.close().unwrap();
    }
    assert!(acked.len() >= ROUNDS, "only {} acknowledged batches", acked.len());
}
