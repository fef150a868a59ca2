//! Remote read: request decoding, response encoding (sampled and streamed chunk frames), and
//! conversions between model values and the prost types. Not an ingest hot path, so prost's
//! owned types are used throughout.

use model::{FloatHistogram, Labels, MatchOp, Matcher, Series, Timestamp};
use prost::Message;

use crate::WireError;
use crate::crc32c;
use crate::proto::prompb;

/// Decodes an (uncompressed) `ReadRequest`.
pub fn decode_read_request(body: &[u8]) -> Result<prompb::ReadRequest, WireError> {
    prompb::ReadRequest::decode(body)
        .map_err(|e| WireError::ProstDecode { message: "ReadRequest", reason: e.to_string() })
}

/// Decodes an (uncompressed) `ReadResponse`, as a client of another server's remote read.
pub fn decode_read_response(body: &[u8]) -> Result<prompb::ReadResponse, WireError> {
    prompb::ReadResponse::decode(body)
        .map_err(|e| WireError::ProstDecode { message: "ReadResponse", reason: e.to_string() })
}

/// Encodes a `ReadResponse` as the snappy-compressed body of a `SAMPLES` answer.
pub fn encode_read_response(resp: &prompb::ReadResponse) -> Vec<u8> {
    crate::snappy::compress(&resp.encode_to_vec())
}

/// Appends one frame of a `STREAMED_XOR_CHUNKS` answer: uvarint length, big-endian CRC-32C
/// of the message bytes, the message bytes.
pub fn write_chunked_frame(out: &mut Vec<u8>, msg: &prompb::ChunkedReadResponse) {
    let data = msg.encode_to_vec();
    prost::encoding::encode_varint(data.len() as u64, out);
    out.extend_from_slice(&crc32c::checksum(&data).to_be_bytes());
    out.extend_from_slice(&data);
}

/// Reads one frame from the front of `input`. Returns the message and the bytes consumed, or
/// `None` when `input` does not yet hold a whole frame.
pub fn read_chunked_frame(
    input: &[u8],
    max_frame: usize,
) -> Result<Option<(prompb::ChunkedReadResponse, usize)>, WireError> {
    let mut cursor = input;
    let len = match prost::encoding::decode_varint(&mut cursor) {
        Ok(len) => len,
        // Up to 10 bytes of varint may still be arriving; more than that is garbage.
        Err(_) if input.len() < 10 => return Ok(None),
        Err(e) => {
            return Err(WireError::ProstDecode {
                message: "ChunkedReadResponse frame",
                reason: e.to_string(),
            });
        }
    };
    if len > max_frame as u64 {
        return Err(WireError::ChunkedFrameTooLarge { len, max: max_frame });
    }
    let header = input.len() - cursor.len();
    let len = len as usize;
    if cursor.len() < 4 + len {
        return Ok(None);
    }
    let expected = u32::from_be_bytes([cursor[0], cursor[1], cursor[2], cursor[3]]);
    let data = &cursor[4..4 + len];
    let actual = crc32c::checksum(data);
    if actual != expected {
        return Err(WireError::ChunkedFrameChecksum { expected, actual });
    }
    let msg = prompb::ChunkedReadResponse::decode(data).map_err(|e| WireError::ProstDecode {
        message: "ChunkedReadResponse",
        reason: e.to_string(),
    })?;
    Ok(Some((msg, header + 4 + len)))
}

/// Turns remote read matchers into model matchers (compiling regexes).
pub fn matchers_from_proto(ms: &[prompb::LabelMatcher]) -> Result<Vec<Matcher>, WireError> {
    ms.iter()
        .map(|m| {
            let op = match prompb::label_matcher::Type::try_from(m.r#type) {
                Ok(prompb::label_matcher::Type::Eq) => MatchOp::Equal,
                Ok(prompb::label_matcher::Type::Neq) => MatchOp::NotEqual,
                Ok(prompb::label_matcher::Type::Re) => MatchOp::RegexMatch,
                Ok(prompb::label_matcher::Type::Nre) => MatchOp::RegexNoMatch,
                Err(_) => {
                    return Err(WireError::InvalidMatcher(format!(
                        "unknown matcher type {} for label {:?}",
                        m.r#type, m.name
                    )));
                }
            };
            Matcher::new(op, &m.name, &m.value)
                .map_err(|e| WireError::InvalidMatcher(e.to_string()))
        })
        .collect()
}

pub fn labels_to_proto(labels: &Labels) -> Vec<prompb::Label> {
    labels
        .iter()
        .map(|l| prompb::Label { name: l.name.to_string(), value: l.value.to_string() })
        .collect()
}

/// A native histogram as a float `prompb::Histogram` (absolute bucket counts).
pub fn histogram_to_proto(t: Timestamp, h: &FloatHistogram) -> prompb::Histogram {
    let spans = |s: &[model::Span]| {
        s.iter().map(|s| prompb::BucketSpan { offset: s.offset, length: s.length }).collect()
    };
    prompb::Histogram {
        count: Some(prompb::histogram::Count::CountFloat(h.count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(prompb::histogram::ZeroCount::ZeroCountFloat(h.zero_count)),
        negative_spans: spans(&h.negative_spans),
        negative_deltas: vec![],
        negative_counts: h.negative_buckets.clone(),
        positive_spans: spans(&h.positive_spans),
        positive_deltas: vec![],
        positive_counts: h.positive_buckets.clone(),
        reset_hint: i32::from(h.counter_reset_hint),
        timestamp: t,
        custom_values: h.custom_values.clone(),
    }
}

/// A queried series as a `prompb::TimeSeries` of a `SAMPLES` answer.
pub fn series_to_proto(s: &Series) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: labels_to_proto(&s.labels),
        samples: s.samples.iter().map(|x| prompb::Sample { value: x.v, timestamp: x.t }).collect(),
        exemplars: vec![],
        histograms: s.histograms.iter().map(|h| histogram_to_proto(h.t, &h.h)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use model::{HistogramSample, Interner, Sample, Span};

    use super::*;
    use crate::{DecodeLimits, decode_write_v1};

    #[test]
    fn chunked_frames_round_trip_and_check() {
        let msg = prompb::ChunkedReadResponse {
            chunked_series: vec![prompb::ChunkedSeries {
                labels: vec![prompb::Label { name: "__name__".into(), value: "up".into() }],
                chunks: vec![prompb::Chunk {
                    min_time_ms: 1,
                    max_time_ms: 2,
                    r#type: prompb::chunk::Encoding::Xor as i32,
                    data: vec![1, 2, 3],
                }],
            }],
            query_index: 3,
        };
        let mut out = Vec::new();
        write_chunked_frame(&mut out, &msg);
        write_chunked_frame(&mut out, &msg);
        let (got, used) = read_chunked_frame(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(got, msg);
        assert_eq!(used * 2, out.len());
        // Every strict prefix of a frame asks for more bytes.
        for cut in 0..used {
            assert_eq!(read_chunked_frame(&out[..cut], 1 << 20), Ok(None), "cut at {cut}");
        }
        assert!(matches!(
            read_chunked_frame(&out, 4),
            Err(WireError::ChunkedFrameTooLarge { max: 4, .. })
        ));
        let mut bad = out.clone();
        bad[used - 1] ^= 1;
        assert!(matches!(
            read_chunked_frame(&bad, 1 << 20),
            Err(WireError::ChunkedFrameChecksum { .. })
        ));
    }

    #[test]
    fn matchers() {
        let m = |t, n: &str, v: &str| prompb::LabelMatcher {
            r#type: t,
            name: n.into(),
            value: v.into(),
        };
        let got = matchers_from_proto(&[
            m(0, "a", "1"),
            m(1, "b", "2"),
            m(2, "c", "x.*"),
            m(3, "d", "y"),
        ])
        .unwrap();
        let ops: Vec<_> = got.iter().map(|m| m.op).collect();
        assert_eq!(
            ops,
            [MatchOp::Equal, MatchOp::NotEqual, MatchOp::RegexMatch, MatchOp::RegexNoMatch]
        );
        assert_eq!(
            matchers_from_proto(&[m(7, "a", "1")]).unwrap_err().to_string(),
            "invalid remote read matcher: unknown matcher type 7 for label \"a\""
        );
        assert!(matches!(
            matchers_from_proto(&[m(2, "a", "(")]),
            Err(WireError::InvalidMatcher(_))
        ));
    }

    /// A series encoded for remote read and decoded by the remote write walker comes back equal.
    #[test]
    fn series_round_trip_through_the_walker() {
        let h = FloatHistogram {
            counter_reset_hint: 1,
            schema: 2,
            zero_threshold: 0.001,
            zero_count: 1.0,
            count: 6.0,
            sum: 9.5,
            positive_spans: vec![Span { offset: -1, length: 2 }],
            positive_buckets: vec![2.0, 3.0],
            ..Default::default()
        };
        let s = Series {
            labels: Labels::from_pairs([("__name__", "m"), ("a", "b")]).unwrap(),
            samples: vec![Sample { t: 1, v: 2.5 }],
            histograms: vec![HistogramSample { t: 5, h: Box::new(h.clone()) }],
        };
        let req = prompb::WriteRequest { timeseries: vec![series_to_proto(&s)], metadata: vec![] };
        let d = decode_write_v1(&req.encode_to_vec(), &Interner::new(), &DecodeLimits::default())
            .unwrap();
        let w = &d.batch.series[0];
        assert_eq!(w.labels, s.labels);
        assert_eq!(w.samples.as_slice(), s.samples.as_slice());
        assert_eq!(w.histograms, vec![(5, h)]);
        let body = encode_read_response(&prompb::ReadResponse {
            results: vec![prompb::QueryResult { timeseries: req.timeseries.clone() }],
        });
        let back = decode_read_response(&crate::snappy::decompress_capped(&body, 1 << 20).unwrap())
            .unwrap();
        assert_eq!(back.results[0].timeseries, req.timeseries);
        assert!(decode_read_request(&[0xff]).is_err());
    }
}
