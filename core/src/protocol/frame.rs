//! Kafka's framing: a big-endian `i32` size, then that many bytes.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection failed")]
    Io(#[from] std::io::Error),
    #[error("frame of {size} bytes is larger than socket.request.max.bytes {max}")]
    TooLarge { size: i32, max: usize },
    #[error("negative frame size {size}")]
    Negative { size: i32 },
}

/// Reads one frame into `buf` (reused between frames). `Ok(None)` when the peer closed
/// the connection between frames. The claimed size is checked against `max_bytes`
/// before anything is allocated for it.
///
/// # Errors
/// [`FrameError`] for an oversized or negative size, or a connection that fails or
/// closes inside a frame.
///
/// # Cancel safety
/// Not cancel-safe: a frame partly read is lost if the future is dropped.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
    buf: &mut BytesMut,
) -> Result<Option<Bytes>, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 {
        return Err(FrameError::Negative { size });
    }
    if size as usize > max_bytes {
        return Err(FrameError::TooLarge { size, max: max_bytes });
    }
    let size = size as usize;
    buf.clear();
    // Read into spare capacity: zeroing a buffer that is about to be overwritten costs as
    // much as the read itself for large produce requests.
    buf.reserve(size);
    while buf.len() < size {
        let wanted = (size - buf.len()) as u64;
        if (&mut *reader).take(wanted).read_buf(buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(Some(buf.split().freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_bounded_before_allocation() {
        let mut buf = BytesMut::new();
        let mut input: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c', 0x7f, 0xff, 0xff, 0xff];
        assert_eq!(read_frame(&mut input, 100, &mut buf).await.unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert!(matches!(read_frame(&mut input, 100, &mut buf).await, Err(FrameError::TooLarge { .. })));
        assert!(buf.capacity() < 1000, "nothing allocated for the claimed size");
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(read_frame(&mut negative, 100, &mut buf).await, Err(FrameError::Negative { size: -2 })));
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 100, &mut buf).await.unwrap().is_none());
        let mut torn: &[u8] = &[0, 0, 0, 9, 1, 2];
        assert!(matches!(read_frame(&mut torn, 100, &mut buf).await, Err(FrameError::Io(_))));
    }
}
