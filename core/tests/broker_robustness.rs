//! Bad requests harm no one: oversized, negative, garbage, unknown-API and truncated
//! frames close only their own connection; a newer ApiVersions gets KIP-511's answer;
//! other clients and stored data are unaffected.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::server::ServerProcess;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

fn connect(server: &ServerProcess) -> TcpStream {
    let stream = TcpStream::connect(&server.bootstrap).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

fn send_request<T: Encodable>(stream: &mut TcpStream, api_key: ApiKey, version: i16, correlation_id: i32, body: &T) {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("robustness-test")))
        .encode(&mut buf, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&buf).unwrap();
}

fn read_response(stream: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

/// True once the server has closed the connection (EOF, or reset).
fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

fn api_versions_work(stream: &mut TcpStream, correlation_id: i32) {
    send_request(stream, ApiKey::ApiVersions, 3, correlation_id, &ApiVersionsRequest::default());
    let mut response = read_response(stream).expect("a response");
    let header = ResponseHeader::decode(&mut response, 0).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    let body = ApiVersionsResponse::decode(&mut response, 3).unwrap();
    assert_eq!(body.error_code, 0);
    assert!(body.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
}

#[test]
fn malformed_oversized_and_unknown_requests_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut bystander = connect(&server);
    api_versions_work(&mut bystander, 1);

    // A frame claiming 2 GiB: refused before anything is allocated.
    let mut oversized = connect(&server);
    oversized.write_all(&i32::MAX.to_be_bytes()).unwrap();
    assert!(is_closed(&mut oversized));

    let mut negative = connect(&server);
    negative.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(is_closed(&mut negative));

    // A well-framed request for an API that does not exist.
    let mut unknown = connect(&server);
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(9999);
    frame.put_i16(0);
    frame.put_i32(7);
    frame.put_i16(-1);
    unknown.write_all(&frame).unwrap();
    assert!(is_closed(&mut unknown));

    // A known API whose body is garbage.
    let mut garbage = connect(&server);
    let mut frame = BytesMut::new();
    frame.put_i32(24);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(12);
    frame.put_i32(8);
    frame.put_slice(&[0xff; 16]);
    garbage.write_all(&frame).unwrap();
    assert!(is_closed(&mut garbage));

    // A tiny request whose array claims i32::MAX elements: the codec pre-sizes its Vec from
    // that count (about 150 GB here), which would abort the process without the guard.
    for api_version in [0i16, 1, 4] {
        let mut bomb = connect(&server);
        let mut frame = BytesMut::new();
        frame.put_i32(14);
        frame.put_i16(ApiKey::Metadata as i16);
        frame.put_i16(api_version);
        frame.put_i32(9);
        frame.put_i16(0); // client id ""
        frame.put_i32(i32::MAX); // topics
        bomb.write_all(&frame).unwrap();
        assert!(is_closed(&mut bomb));
    }

    // A frame cut short by a client that goes away.
    let mut truncated = connect(&server);
    truncated.write_all(&100i32.to_be_bytes()).unwrap();
    truncated.write_all(&[1, 2, 3]).unwrap();
    drop(truncated);

    // KIP-511: a newer ApiVersions is answered (as v0) with our ranges and an error.
    let mut newer = connect(&server);
    send_request(&mut newer, ApiKey::ApiVersions, 3, 42, &ApiVersionsRequest::default());
    // Rewrite the version in place: v3's body is what a v99 client would send, near enough.
    let mut raw = BytesMut::new();
    raw.put_i32(0);
    raw.put_i16(ApiKey::ApiVersions as i16);
    raw.put_i16(99);
    raw.put_i32(43);
    raw.put_i16(-1);
    let size = (raw.len() - 4) as i32;
    raw[..4].copy_from_slice(&size.to_be_bytes());
    let mut first = read_response(&mut newer).unwrap();
    assert_eq!(ResponseHeader::decode(&mut first, 0).unwrap().correlation_id, 42);
    newer.write_all(&raw).unwrap();
    let mut response = read_response(&mut newer).expect("KIP-511 answer");
    assert_eq!(response.get_i32(), 43);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(!body.api_keys.is_empty());

    // The bystander never noticed, and new clients are served.
    api_versions_work(&mut bystander, 2);
    let mut fresh = connect(&server);
    send_request(&mut fresh, ApiKey::Metadata, 12, 5, &MetadataRequest::default().with_topics(None));
    let mut response = read_response(&mut fresh).unwrap();
    ResponseHeader::decode(&mut response, 1).unwrap();
    let metadata = MetadataResponse::decode(&mut response, 12).unwrap();
    assert_eq!(metadata.brokers.len(), 1);
    let status = server.stop();
    assert!(status.success(), "the broker still shuts down cleanly: {status}");
}

#[test]
fn many_connections_beyond_the_limit_wait_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("headwater.toml");
    std::fs::write(&config, "\"max.connections\" = 2\n").unwrap();
    // Started with a config file, the way an operator would.
    let data = dir.path().join("data");
    let server = ServerProcess::start_with_config(&data, &config);
    let mut a = connect(&server);
    let mut b = connect(&server);
    api_versions_work(&mut a, 1);
    api_versions_work(&mut b, 2);
    // The third waits for a slot; it is served once one frees up.
    let mut c = connect(&server);
    send_request(&mut c, ApiKey::ApiVersions, 3, 3, &ApiVersionsRequest::default());
    drop(a);
    let response = read_response(&mut c);
    assert!(response.is_some(), "served after a slot freed");
}
