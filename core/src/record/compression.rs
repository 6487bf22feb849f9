//! The compression codecs of Kafka's record batches (attributes bits 0-2).
//!
//! The broker never recompresses what a producer sent; these are for readers that need
//! records (compaction, timestamp lookup, tiering, SQL) and for building batches.
//! Every decompression is bounded so a small batch cannot expand without limit.

use std::io::{Read, Write};

use super::RecordError;

/// A batch's compression codec, with Kafka's attribute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Attribute bits that hold the codec.
pub(crate) const COMPRESSION_MASK: i16 = 0x07;

/// The 16-byte header of the xerial snappy framing that the Java client writes:
/// magic `\x82SNAPPY\0`, version 1, minimum compatible version 1.
const XERIAL_HEADER: [u8; 16] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
/// The Java client's xerial block size; also bounds each block we write.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

impl Compression {
    /// The codec named by a batch's attributes.
    ///
    /// # Errors
    /// [`RecordError::UnsupportedCompression`] for codec ids 5-7.
    pub fn from_attributes(attributes: i16) -> Result<Self, RecordError> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            id => Err(RecordError::UnsupportedCompression { id: id as u8 }),
        }
    }

    /// Kafka's id for the codec (the attribute bits).
    pub fn id(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// Parses Kafka's name for a codec.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::None, Self::Gzip, Self::Snappy, Self::Lz4, Self::Zstd].into_iter().find(|codec| codec.name() == name)
    }

    /// Compresses `input` as Kafka clients expect to read it.
    ///
    /// # Errors
    /// [`RecordError::Compression`] if the codec fails.
    pub fn compress(self, input: &[u8]) -> Result<Vec<u8>, RecordError> {
        let failed = |source: std::io::Error| RecordError::Compression { codec: self.name(), source };
        match self {
            Self::None => Ok(input.to_vec()),
            Self::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(input).map_err(failed)?;
                encoder.finish().map_err(failed)
            }
            Self::Snappy => {
                // The xerial framing is what the Java client writes; every client reads it.
                let mut out = Vec::with_capacity(XERIAL_HEADER.len() + input.len());
                out.extend_from_slice(&XERIAL_HEADER);
                let mut encoder = snap::raw::Encoder::new();
                for block in input.chunks(XERIAL_BLOCK_BYTES) {
                    let compressed =
                        encoder.compress_vec(block).map_err(|error| failed(std::io::Error::other(error)))?;
                    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                    out.extend_from_slice(&compressed);
                }
                Ok(out)
            }
            Self::Lz4 => {
                // Kafka's LZ4 is the standard frame format with independent 64 KiB blocks
                // (what KafkaLZ4BlockOutputStream writes and reads).
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
                encoder.write_all(input).map_err(failed)?;
                encoder.finish().map_err(|error| failed(std::io::Error::other(error)))
            }
            Self::Zstd => zstd::bulk::compress(input, 3).map_err(failed),
        }
    }

    /// Decompresses `input`, refusing output past `max_bytes`.
    ///
    /// # Errors
    /// [`RecordError::Compression`] for a corrupt stream, and
    /// [`RecordError::DecompressedTooLarge`] past `max_bytes`.
    pub fn decompress(self, input: &[u8], max_bytes: usize) -> Result<Vec<u8>, RecordError> {
        let failed = |source: std::io::Error| RecordError::Compression { codec: self.name(), source };
        let mut out = Vec::new();
        match self {
            Self::None => out.extend_from_slice(input),
            Self::Gzip => read_bounded(flate2::read::GzDecoder::new(input), max_bytes, &mut out).map_err(failed)?,
            Self::Lz4 => {
                read_bounded(lz4_flex::frame::FrameDecoder::new(input), max_bytes, &mut out).map_err(failed)?
            }
            Self::Zstd => {
                read_bounded(zstd::stream::read::Decoder::with_buffer(input).map_err(failed)?, max_bytes, &mut out)
                    .map_err(failed)?
            }
            Self::Snappy => decompress_snappy(input, max_bytes, &mut out).map_err(failed)?,
        }
        if out.len() > max_bytes {
            return Err(RecordError::DecompressedTooLarge { max_bytes });
        }
        Ok(out)
    }
}

fn read_bounded(reader: impl Read, max_bytes: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    // One byte past the limit is enough to know the limit was passed.
    reader.take(max_bytes as u64 + 1).read_to_end(out)?;
    Ok(())
}

fn decompress_snappy(input: &[u8], max_bytes: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut decoder = snap::raw::Decoder::new();
    let mut decode_block = |block: &[u8], out: &mut Vec<u8>| -> std::io::Result<()> {
        let len = snap::raw::decompress_len(block).map_err(std::io::Error::other)?;
        if out.len() + len > max_bytes + 1 {
            return Err(invalid("snappy block expands past the limit"));
        }
        let start = out.len();
        out.resize(start + len, 0);
        decoder.decompress(block, &mut out[start..]).map_err(std::io::Error::other)?;
        Ok(())
    };
    // librdkafka writes raw snappy; the Java client writes xerial frames. Read both.
    if input.len() >= 8 && input[..8] == XERIAL_HEADER[..8] {
        let mut rest = input.get(XERIAL_HEADER.len()..).ok_or_else(|| invalid("truncated xerial header"))?;
        while !rest.is_empty() {
            let len_bytes: [u8; 4] =
                rest.get(..4).ok_or_else(|| invalid("truncated xerial block"))?.try_into().expect("4 bytes");
            let len = u32::from_be_bytes(len_bytes) as usize;
            let block = rest.get(4..4 + len).ok_or_else(|| invalid("xerial block runs past the input"))?;
            decode_block(block, out)?;
            rest = &rest[4 + len..];
        }
        Ok(())
    } else {
        decode_block(input, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    #[test]
    fn every_codec_round_trips() {
        let input: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in ALL {
            let compressed = codec.compress(&input).unwrap();
            assert_eq!(codec.decompress(&compressed, input.len()).unwrap(), input, "{codec:?}");
            assert_eq!(Compression::from_attributes(codec.id()).unwrap(), codec);
            assert_eq!(Compression::from_name(codec.name()), Some(codec));
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let input = vec![0u8; 1 << 20];
        for codec in ALL {
            let compressed = codec.compress(&input).unwrap();
            let error = codec.decompress(&compressed, 1000).unwrap_err();
            assert!(
                matches!(error, RecordError::DecompressedTooLarge { .. } | RecordError::Compression { .. }),
                "{codec:?}: {error}"
            );
        }
    }

    #[test]
    fn raw_snappy_is_read_too() {
        let input = b"librdkafka writes raw snappy blocks".repeat(100);
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        assert_eq!(Compression::Snappy.decompress(&raw, 1 << 20).unwrap(), input);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff];
        for codec in ALL[1..].iter() {
            assert!(codec.decompress(&garbage, 1 << 20).is_err(), "{codec:?}");
        }
        assert!(Compression::from_attributes(5).is_err());
    }
}
