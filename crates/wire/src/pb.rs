//! A minimal protobuf reader over borrowed bytes: varints, fixed-width values, length-delimited
//! fields and the skipping of unknown fields of every wire type. No allocation, no panics.

use crate::WireError;

pub(crate) const VARINT: u8 = 0;
pub(crate) const I64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const SGROUP: u8 = 3;
pub(crate) const EGROUP: u8 = 4;
pub(crate) const I32: u8 = 5;

/// How deep groups may nest inside an unknown field before we call the input hostile.
const MAX_GROUP_DEPTH: usize = 64;

/// A cursor over one message's bytes. `base` is the offset of `buf` in the whole request, so
/// errors point at absolute byte offsets.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize, message: &'static str) -> Self {
        Reader { buf, pos: 0, base, message }
    }

    #[inline]
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The message's bytes, its absolute offset, and the cursor's position in it.
    pub(crate) fn buf(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn base(&self) -> usize {
        self.base
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Absolute offset of the cursor.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    #[cold]
    pub(crate) fn err(&self, problem: impl Into<String>) -> WireError {
        WireError::MalformedProtobuf {
            message: self.message,
            offset: self.offset(),
            problem: problem.into(),
        }
    }

    /// A varint; one-byte ones (keys, short lengths) without a loop.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Result<u64, WireError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// Reads a field key: (field number, wire type).
    #[inline(always)]
    pub(crate) fn key(&mut self) -> Result<(u32, u8), WireError> {
        let k = self.varint()?;
        let wt = (k & 7) as u8;
        let field = k >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) || wt > I32 {
            return Err(self.bad_key(field, wt));
        }
        Ok((field as u32, wt))
    }

    #[cold]
    fn bad_key(&self, field: u64, wt: u8) -> WireError {
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            self.err(format!("invalid field number {field}"))
        } else {
            self.err(format!("invalid wire type {wt} for field {field}"))
        }
    }

    /// The common length-delimited field in one step: if the next bytes are the one-byte key
    /// `key` and a one-byte length whose payload is all there, consumes the field and returns
    /// where its payload starts in [`Reader::buf`]. Otherwise consumes nothing (the general
    /// path then reads, or rejects, the same bytes).
    #[inline(always)]
    pub(crate) fn short_field(&mut self, key: u8) -> Option<usize> {
        match self.buf.get(self.pos..self.pos + 2) {
            Some(&[k, len]) if k == key && len < 0x80 => {
                let start = self.pos + 2;
                let end = start + usize::from(len);
                if end > self.buf.len() {
                    return None;
                }
                self.pos = end;
                Some(start)
            }
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn fixed64(&mut self) -> Result<u64, WireError> {
        let Some(b) = self.buf.get(self.pos..self.pos + 8) else {
            return Err(self.err("truncated 64-bit value"));
        };
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn fixed32(&mut self) -> Result<u32, WireError> {
        let Some(b) = self.buf.get(self.pos..self.pos + 4) else {
            return Err(self.err("truncated 32-bit value"));
        };
        self.pos += 4;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }

    pub(crate) fn double(&mut self) -> Result<f64, WireError> {
        self.fixed64().map(f64::from_bits)
    }

    /// A length-delimited payload; returns it with its absolute offset.
    #[inline(always)]
    pub(crate) fn bytes(&mut self) -> Result<(&'a [u8], usize), WireError> {
        let len = self.varint()?;
        let start = self.pos;
        let remaining = self.buf.len() - start;
        if len > remaining as u64 {
            return Err(self.past_end(len, remaining));
        }
        self.pos = start + len as usize;
        Ok((&self.buf[start..self.pos], self.base + start))
    }

    #[cold]
    fn past_end(&self, len: u64, remaining: usize) -> WireError {
        self.err(format!("length {len} runs past the end ({remaining} bytes left)"))
    }

    /// A nested message as a new reader.
    #[inline]
    pub(crate) fn message(&mut self, message: &'static str) -> Result<Reader<'a>, WireError> {
        let (b, off) = self.bytes()?;
        Ok(Reader::new(b, off, message))
    }

    /// Fails unless `wt` is the wire type field `field` must have.
    #[inline]
    pub(crate) fn expect(&self, field: u32, wt: u8, want: u8) -> Result<(), WireError> {
        if wt == want {
            Ok(())
        } else {
            Err(self.err(format!("field {field} has wire type {wt}, expected {want}")))
        }
    }

    /// Skips the value of an unknown field whose key was just read.
    pub(crate) fn skip(&mut self, field: u32, wt: u8) -> Result<(), WireError> {
        self.skip_depth(field, wt, 0)
    }

    fn skip_depth(&mut self, field: u32, wt: u8, depth: usize) -> Result<(), WireError> {
        match wt {
            VARINT => self.varint().map(drop),
            I64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            I32 => self.fixed32().map(drop),
            SGROUP => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(self.err("groups nested too deeply"));
                }
                loop {
                    if self.at_end() {
                        return Err(self.err(format!("group {field} is not closed")));
                    }
                    let (f, w) = self.key()?;
                    if w == EGROUP {
                        if f != field {
                            return Err(self.err(format!("group {field} closed by end of {f}")));
                        }
                        return Ok(());
                    }
                    self.skip_depth(f, w, depth + 1)?;
                }
            }
            _ => Err(self.err(format!("unexpected end of group {field}"))),
        }
    }

    /// Reads one repeated scalar field occurrence, packed (LEN) or not, calling `each` per
    /// element. `unpacked` is the element's own wire type.
    pub(crate) fn repeated<T>(
        &mut self,
        field: u32,
        wt: u8,
        unpacked: u8,
        mut read: impl FnMut(&mut Reader<'a>) -> Result<T, WireError>,
        mut each: impl FnMut(T),
    ) -> Result<(), WireError> {
        if wt == LEN {
            let mut inner = self.message(self.message)?;
            while !inner.at_end() {
                each(read(&mut inner)?);
            }
            Ok(())
        } else {
            self.expect(field, wt, unpacked)?;
            each(read(self)?);
            Ok(())
        }
    }
}

/// Zigzag-decodes a `sint32` varint (protobuf truncates to 32 bits first).
pub(crate) fn zigzag32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// Zigzag-decodes a `sint64` varint.
pub(crate) fn zigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_skip(bytes: &[u8], expected: Result<usize, &str>) {
        let mut r = Reader::new(bytes, 0, "Test");
        let got = r.key().and_then(|(f, w)| r.skip(f, w)).map(|()| r.pos);
        match (got, expected) {
            (Ok(p), Ok(e)) => assert_eq!(p, e),
            (Err(WireError::MalformedProtobuf { problem, .. }), Err(e)) => {
                assert!(problem.contains(e), "{problem:?} does not contain {e:?}")
            }
            (g, e) => panic!("got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn skips_every_wire_type() {
        check_skip(&[0x08, 0x96, 0x01], Ok(3)); // varint
        check_skip(&[0x09, 1, 2, 3, 4, 5, 6, 7, 8], Ok(9)); // i64
        check_skip(&[0x12, 2, b'h', b'i'], Ok(4)); // len
        check_skip(&[0x15, 1, 2, 3, 4], Ok(5)); // i32
        // group 1 { field 2 varint 5; group 3 {} } end 1
        check_skip(&[0x0b, 0x10, 5, 0x1b, 0x1c, 0x0c], Ok(6));
        check_skip(&[0x0b, 0x10, 5], Err("group 1 is not closed"));
        check_skip(&[0x0b, 0x14], Err("group 1 closed by end of 2"));
        check_skip(&[0x0c], Err("unexpected end of group 1"));
        check_skip(&[0x0e], Err("invalid wire type 6"));
        check_skip(&[0x00], Err("invalid field number 0"));
        check_skip(&[0x12, 5, b'h'], Err("length 5 runs past the end"));
        check_skip(&[0x08, 0x80], Err("truncated varint"));
        check_skip(
            &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            Err("overflows"),
        );
        check_skip(&[0x09, 1, 2], Err("truncated 64-bit"));
        let deep: Vec<u8> = std::iter::repeat_n(0x0b, 100).collect();
        check_skip(&deep, Err("nested too deeply"));
    }

    #[test]
    fn zigzag() {
        assert_eq!(zigzag32(0), 0);
        assert_eq!(zigzag32(1), -1);
        assert_eq!(zigzag32(2), 1);
        assert_eq!(zigzag32(0xffff_fffe), i32::MAX);
        assert_eq!(zigzag32(0xffff_ffff), i32::MIN);
        assert_eq!(zigzag64(u64::MAX), i64::MIN);
        assert_eq!(zigzag64(3), -2);
    }
}
