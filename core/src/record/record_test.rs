//! Batch codec tests: round trips, bad input, and conformance against an independent
//! implementation (the kafka-protocol crate's encoder and decoder).

use bytes::{Bytes, BytesMut};
use kafka_protocol::records as kp;
use proptest::prelude::*;

use super::*;

const LIMIT: usize = 64 << 20;
const CODECS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

#[derive(Debug, Clone)]
struct Owned {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn build(codec: Compression, records: &[Owned]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec).base_offset(100).producer(7, 1, 42);
    for record in records {
        let headers: Vec<(&[u8], Option<&[u8]>)> =
            record.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
        builder.append(NewRecord {
            timestamp: record.timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
        });
    }
    builder.build().unwrap()
}

fn kp_codec(codec: Compression) -> kp::Compression {
    match codec {
        Compression::None => kp::Compression::None,
        Compression::Gzip => kp::Compression::Gzip,
        Compression::Snappy => kp::Compression::Snappy,
        Compression::Lz4 => kp::Compression::Lz4,
        Compression::Zstd => kp::Compression::Zstd,
    }
}

fn owned_record() -> impl Strategy<Value = Owned> {
    (
        0i64..4_000_000_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        proptest::collection::vec(
            (
                "[a-z]{1,8}".prop_map(String::into_bytes),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            ),
            0..3,
        ),
    )
        .prop_map(|(timestamp, key, value, headers)| Owned { timestamp, key, value, headers })
}

fn codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(CODECS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn built_batches_parse_back(codec in codec(), records in proptest::collection::vec(owned_record(), 1..30)) {
        let bytes = build(codec, &records);
        let batch = RecordBatch::parse(&bytes).unwrap();
        prop_assert_eq!(batch.base_offset(), 100);
        prop_assert_eq!(batch.records_count() as usize, records.len());
        prop_assert_eq!(batch.last_offset(), 100 + records.len() as i64 - 1);
        prop_assert_eq!(batch.max_timestamp(), records.iter().map(|r| r.timestamp).max().unwrap());
        prop_assert_eq!(batch.compression().unwrap(), codec);
        prop_assert_eq!((batch.producer_id(), batch.producer_epoch(), batch.base_sequence()), (7, 1, 42));
        let decoded = batch.records(LIMIT).unwrap();
        let decoded: Vec<Record<'_>> = decoded.iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, 100 + i as i64);
            prop_assert_eq!(got.timestamp, want.timestamp);
            prop_assert_eq!(got.key, want.key.as_deref());
            prop_assert_eq!(got.value, want.value.as_deref());
            let headers: Vec<_> = got.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect();
            prop_assert_eq!(&headers, &want.headers);
        }
    }

    /// Our batches decode with an independent implementation, field for field.
    #[test]
    fn kafka_protocol_decodes_our_batches(codec in codec(), records in proptest::collection::vec(owned_record(), 1..20)) {
        let bytes = build(codec, &records);
        let mut buf = Bytes::from(bytes);
        let set = kp::RecordBatchDecoder::decode(&mut buf).unwrap();
        prop_assert_eq!(set.records.len(), records.len());
        for (i, (got, want)) in set.records.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, 100 + i as i64);
            prop_assert_eq!(got.sequence, 42 + i as i32);
            prop_assert_eq!(got.timestamp, want.timestamp);
            prop_assert_eq!(got.key.as_deref(), want.key.as_deref());
            prop_assert_eq!(got.value.as_deref(), want.value.as_deref());
        }
    }

    /// Batches from an independent encoder parse, validate and iterate here.
    #[test]
    fn we_decode_kafka_protocol_batches(codec in codec(), records in proptest::collection::vec(owned_record(), 1..20)) {
        let kp_records: Vec<kp::Record> = records.iter().enumerate().map(|(i, r)| kp::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 3,
            producer_id: 9,
            producer_epoch: 2,
            timestamp_type: kp::TimestampType::Creation,
            offset: 500 + i as i64,
            sequence: 10 + i as i32,
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: Default::default(),
        }).collect();
        let mut buf = BytesMut::new();
        kp::RecordBatchEncoder::encode(&mut buf, &kp_records, &kp::RecordEncodeOptions { version: 2, compression: kp_codec(codec) }).unwrap();
        let batch = RecordBatch::parse(&buf).unwrap();
        prop_assert_eq!(batch.base_offset(), 500);
        prop_assert_eq!(batch.partition_leader_epoch(), 3);
        prop_assert_eq!(batch.producer_id(), 9);
        let decoded = batch.records(LIMIT).unwrap();
        for (got, want) in decoded.iter().zip(&kp_records) {
            let got = got.unwrap();
            prop_assert_eq!(got.offset, want.offset);
            prop_assert_eq!(got.timestamp, want.timestamp);
            prop_assert_eq!(got.key, want.key.as_deref());
            prop_assert_eq!(got.value, want.value.as_deref());
        }
    }

    /// Any single flipped bit after the leader epoch is caught by the CRC or the framing.
    #[test]
    fn a_flipped_bit_is_detected(records in proptest::collection::vec(owned_record(), 1..5), bit in any::<proptest::sample::Index>()) {
        let mut bytes = build(Compression::None, &records);
        let first_checked_bit = 16 * 8; // magic onwards; offset / length / epoch lie outside the CRC
        let bit = first_checked_bit + bit.index(bytes.len() * 8 - first_checked_bit);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(RecordBatch::parse(&bytes).is_err());
    }

    #[test]
    fn the_parser_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for batch in BatchIter::new(&bytes) {
            let Ok(batch) = batch else { break };
            let _ = batch.validate();
            if let Ok(records) = batch.records(1 << 16) {
                for record in records.iter().map_while(Result::ok) {
                    let _ = record.headers.iter().count();
                }
            }
        }
    }
}

#[test]
fn assign_offset_keeps_the_crc_valid() {
    let records = [Owned { timestamp: 1, key: Some(b"k".to_vec()), value: Some(b"v".to_vec()), headers: vec![] }];
    let mut bytes = build(Compression::Zstd, &records);
    assign_offset(&mut bytes, 1234, 5);
    let batch = RecordBatch::parse(&bytes).unwrap();
    assert_eq!(batch.base_offset(), 1234);
    assert_eq!(batch.partition_leader_epoch(), 5);
    let records = batch.records(LIMIT).unwrap();
    assert_eq!(records.iter().next().unwrap().unwrap().offset, 1234);
}

#[test]
fn bad_input_gives_typed_errors() {
    let records = [Owned { timestamp: 1, key: None, value: Some(b"hello".to_vec()), headers: vec![] }];
    let good = build(Compression::None, &records);

    let mut wrong_crc = good.clone();
    *wrong_crc.last_mut().unwrap() ^= 0xff;
    assert!(matches!(RecordBatch::parse(&wrong_crc), Err(RecordError::CorruptBatch { .. })));

    let mut wrong_magic = good.clone();
    wrong_magic[16] = 1;
    assert!(matches!(RecordBatch::parse(&wrong_magic), Err(RecordError::InvalidMagic { magic: 1 })));

    let mut too_long = good.clone();
    too_long[8..12].copy_from_slice(&(good.len() as i32).to_be_bytes());
    assert!(matches!(RecordBatch::parse(&too_long), Err(RecordError::Truncated { .. })));

    let mut too_short = good.clone();
    too_short[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(matches!(RecordBatch::parse(&too_short), Err(RecordError::InvalidLength { length: 10 })));

    assert!(matches!(RecordBatch::parse(&good[..5]), Err(RecordError::Truncated { .. })));

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(RecordBatch::parse(&trailing), Err(RecordError::TrailingBytes { count: 1 })));

    let mut bad_codec = BatchBuilder::new(Compression::None);
    bad_codec.append(NewRecord { timestamp: 1, value: Some(b"x"), ..Default::default() });
    let mut bad_codec = bad_codec.build().unwrap();
    bad_codec[22] |= 0x07;
    let crc = crc32c::crc32c(&bad_codec[21..]);
    bad_codec[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(RecordBatch::parse(&bad_codec), Err(RecordError::UnsupportedCompression { id: 7 })));
}

#[test]
fn batch_iteration_stops_at_the_first_bad_batch() {
    let records = [Owned { timestamp: 1, key: None, value: Some(b"a".to_vec()), headers: vec![] }];
    let one = build(Compression::None, &records);
    let mut buf = one.clone();
    buf.extend_from_slice(&one);
    buf.extend_from_slice(&one[..20]);
    let results: Vec<_> = BatchIter::new(&buf).collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(matches!(results[2], Err(RecordError::Truncated { .. })));
}
