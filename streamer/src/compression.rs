//! Gzip SSE responses that keep encode-once: no compressor per client.
//!
//! A gzip response is one gzip header, then raw-deflate *units*, then (when the response ends)
//! a final empty block and the gzip trailer. Each unit is the output of a fresh compressor
//! (no back-references before it) ending in a sync flush (byte-aligned, never a final block),
//! so any run of units is one valid deflate stream: a window entry is compressed once, by the
//! first gzip client to read it, and every gzip client at any cursor sends the same bytes.
//! Only what is a client's own (the `retry:` preamble, a snapshot, a notice, the tail of an
//! entry it resumes inside) is compressed for it, as a unit of its own. The trailer's CRC-32
//! is combined per client from each unit's CRC and length (O(1) per unit), so the stream a
//! client ends with is a complete, checked gzip file. One gzip member, not one per entry:
//! nothing depends on a browser decoding past a member's end.

use std::cell::RefCell;
use std::sync::OnceLock;

use bytes::{BufMut as _, Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress};

/// The content coding of an SSE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Encoding {
    /// Plain frames.
    #[default]
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
}

impl Encoding {
    /// The coding for a request's `Accept-Encoding` value: gzip when it lists `gzip` (or
    /// `x-gzip`, or failing those `*`) with a non-zero weight; identity otherwise (absent, `q=0`,
    /// `identity`, only codings the streamer does not offer).
    pub(crate) fn negotiate(accept_encoding: Option<&str>) -> Self {
        let Some(accept) = accept_encoding else {
            return Self::Identity;
        };
        let (mut gzip, mut any) = (None, None);
        for item in accept.split(',') {
            let mut params = item.split(';');
            let name = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let weight = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                .next_back()
                .unwrap_or(1.0);
            match name.as_str() {
                "gzip" | "x-gzip" => gzip = Some(weight),
                "*" => any = Some(weight),
                _ => {}
            }
        }
        match gzip.or(any) {
            Some(weight) if weight > 0.0 => Self::Gzip,
            _ => Self::Identity,
        }
    }
}

/// The CRC-32 and length of some plain bytes; runs of them combine in O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Crc {
    value: u32,
    len: u64,
}

impl Crc {
    /// Of `plain`.
    pub(crate) fn of(plain: &[u8]) -> Self {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(plain);
        Self {
            value: hasher.finalize(),
            len: plain.len() as u64,
        }
    }

    /// Of these bytes followed by those of `next`.
    pub(crate) fn then(self, next: Self) -> Self {
        let mut hasher = crc32fast::Hasher::new_with_initial_len(self.value, self.len);
        hasher.combine(&crc32fast::Hasher::new_with_initial_len(
            next.value, next.len,
        ));
        Self {
            value: hasher.finalize(),
            len: self.len + next.len,
        }
    }
}

/// Plain bytes as one self-contained raw-deflate unit, with the CRC of the plain bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    /// The raw deflate, ending in a sync flush.
    pub deflate: Bytes,
    /// Of the plain bytes.
    pub crc: Crc,
}

/// The level of every unit: entries are compressed once per event whatever the clients, so a
/// middle level costs little; measured in `tests/benches/sse_compression.rs`.
const LEVEL: u32 = 6;

impl Unit {
    /// Compresses `plain` with a fresh compressor (a reset one of this thread's: the
    /// compressor's state is large enough that allocating it per entry would show).
    pub(crate) fn of(plain: &[u8]) -> Self {
        thread_local! {
            static COMPRESSOR: RefCell<Compress> =
                RefCell::new(Compress::new(Compression::new(LEVEL), false));
        }
        let deflate = COMPRESSOR.with_borrow_mut(|compressor| {
            compressor.reset();
            // Deflate never grows data by more than a few bytes per 16 KiB block.
            let mut out = Vec::with_capacity(plain.len() + plain.len() / 64 + 64);
            loop {
                let read = compressor.total_in() as usize;
                // Cannot fail: the input is whole and the stream never finished.
                let _ = compressor.compress_vec(&plain[read..], &mut out, FlushCompress::Sync);
                if compressor.total_in() as usize == plain.len() && out.len() < out.capacity() {
                    break;
                }
                out.reserve(out.capacity().max(64));
            }
            out
        });
        Self {
            deflate: Bytes::from(deflate),
            crc: Crc::of(plain),
        }
    }
}

/// The heartbeat comment as a unit, compressed once per process.
pub(crate) fn heartbeat() -> &'static Unit {
    static HEARTBEAT: OnceLock<Unit> = OnceLock::new();
    HEARTBEAT.get_or_init(|| Unit::of(crate::wire::HEARTBEAT))
}

/// The gzip header (RFC 1952): deflate, no name, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// One gzip response's running state: what it has sent so far, for its trailer.
#[derive(Debug, Default)]
pub(crate) struct Gzip {
    crc: Crc,
}

impl Gzip {
    /// The header that opens the response, then `plain` as a unit of its own.
    pub(crate) fn open(&mut self, plain: &[u8]) -> Bytes {
        let unit = Unit::of(plain);
        self.sent(unit.crc);
        let mut out = BytesMut::with_capacity(HEADER.len() + unit.deflate.len());
        out.put_slice(&HEADER);
        out.put_slice(&unit.deflate);
        out.freeze()
    }

    /// `plain` (this client's own bytes) as a unit of its own.
    pub(crate) fn plain(&mut self, plain: &[u8]) -> Bytes {
        let unit = Unit::of(plain);
        self.sent(unit.crc);
        unit.deflate
    }

    /// Records that units of plain bytes with `crc` were sent.
    pub(crate) fn sent(&mut self, crc: Crc) {
        self.crc = self.crc.then(crc);
    }

    /// What ends the response: a final empty block (fixed Huffman, end of block only), then
    /// the CRC-32 and the length modulo 2^32 of everything sent, little-endian.
    pub(crate) fn trailer(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(10);
        out.put_slice(&[0x03, 0x00]);
        out.put_u32_le(self.crc.value);
        out.put_u32_le(self.crc.len as u32);
        out.freeze()
    }
}

/// What a client is sent at once, built in order from its own plain frames and the window's
/// reads: with gzip each run of its own frames becomes a unit; a single read is passed on
/// without a copy either way.
#[derive(Debug)]
pub(crate) struct Out<'a> {
    gzip: Option<&'a mut Gzip>,
    /// The client's own frames not yet added (gzip: not yet compressed).
    plain: BytesMut,
    /// The first read, while it is all there is.
    whole: Option<Bytes>,
    /// What is ready to send after the first read.
    joined: BytesMut,
}

impl<'a> Out<'a> {
    /// An empty delivery, encoded with `gzip` if given.
    pub(crate) fn new(gzip: Option<&'a mut Gzip>) -> Self {
        Self {
            gzip,
            plain: BytesMut::new(),
            whole: None,
            joined: BytesMut::new(),
        }
    }

    /// The coding the window's reads must be in.
    pub(crate) fn encoding(&self) -> Encoding {
        if self.gzip.is_some() {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// Nothing to send yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.whole.is_none() && self.joined.is_empty()
    }

    /// Adds the client's own frames.
    pub(crate) fn extend_from_slice(&mut self, plain: &[u8]) {
        self.plain.extend_from_slice(plain);
    }

    /// Adds a read from the window (in [`Self::encoding`]; `crc`: of its plain bytes).
    pub(crate) fn read(&mut self, bytes: Bytes, crc: Crc) {
        self.flush();
        if let Some(gzip) = self.gzip.as_deref_mut() {
            gzip.sent(crc);
        }
        if self.joined.is_empty() && self.whole.is_none() {
            self.whole = Some(bytes);
        } else {
            self.join();
            self.joined.extend_from_slice(&bytes);
        }
    }

    /// The bytes to send.
    pub(crate) fn freeze(mut self) -> Bytes {
        self.flush();
        match self.whole.take() {
            Some(whole) if self.joined.is_empty() => whole,
            _ => {
                self.join();
                self.joined.freeze()
            }
        }
    }

    /// Moves the client's pending frames into the output (compressed with gzip).
    fn flush(&mut self) {
        if self.plain.is_empty() {
            return;
        }
        self.join();
        let plain = self.plain.split();
        match self.gzip.as_deref_mut() {
            Some(gzip) => self.joined.extend_from_slice(&gzip.plain(&plain)),
            None => self.joined.extend_from_slice(&plain),
        }
    }

    /// Copies the single read into the output once something follows it.
    fn join(&mut self) {
        if let Some(whole) = self.whole.take() {
            self.joined.extend_from_slice(&whole);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Read as _;

    use super::*;

    /// The plain bytes of a whole gzip stream.
    pub(crate) fn gunzip(gzip: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(gzip)
            .read_to_end(&mut plain)
            .expect("a valid gzip stream");
        plain
    }

    #[test]
    fn accept_encoding_is_negotiated_by_weight() {
        let cases = [
            (None, Encoding::Identity),
            (Some(""), Encoding::Identity),
            (Some("gzip"), Encoding::Gzip),
            (Some("gzip, deflate, br, zstd"), Encoding::Gzip),
            (Some("GZIP;q=0.5"), Encoding::Gzip),
            (Some("x-gzip"), Encoding::Gzip),
            (Some("gzip;q=0"), Encoding::Identity),
            (Some("gzip; q=0.000"), Encoding::Identity),
            (Some("identity"), Encoding::Identity),
            (Some("br, deflate"), Encoding::Identity),
            (Some("*"), Encoding::Gzip),
            (Some("*;q=0"), Encoding::Identity),
            (Some("gzip;q=0, *"), Encoding::Identity),
            (Some("gzip;q=bad"), Encoding::Identity),
        ];
        for (accept, expected) in cases {
            assert_eq!(Encoding::negotiate(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn units_compressed_apart_concatenate_into_one_checked_gzip_stream() {
        let long = vec![b'x'; 70_000];
        let pieces: [&[u8]; 4] = [b"retry: 1000\n\n", b"", &long, b"id: 1-2\n\n"];
        let mut gzip = Gzip::default();
        let mut stream = gzip.open(pieces[0]).to_vec();
        for piece in &pieces[1..] {
            let unit = Unit::of(piece);
            gzip.sent(unit.crc);
            stream.extend_from_slice(&unit.deflate);
        }
        stream.extend_from_slice(&gzip.trailer());

        assert_eq!(gunzip(&stream), pieces.concat());
    }

    #[test]
    fn crcs_combine_as_the_crc_of_the_concatenation() {
        let (a, b) = (b"event: delta\n".as_slice(), b"data: {}\n\n".as_slice());
        assert_eq!(Crc::of(a).then(Crc::of(b)), Crc::of(&[a, b].concat()));
        assert_eq!(Crc::default().then(Crc::of(a)), Crc::of(a));
    }

    #[test]
    fn a_single_read_is_passed_on_without_a_copy() {
        let read = Bytes::from_static(b"id: 1\n\n");
        let mut out = Out::new(None);
        out.read(read.clone(), Crc::default());

        let sent = out.freeze();

        assert_eq!(sent.as_ptr(), read.as_ptr());
    }
}
