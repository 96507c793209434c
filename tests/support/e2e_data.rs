//! Inputs and checks of the end-to-end scenario, written by hand so the test
//! needs no image or hashing crate: a deterministic PRNG, PNG (palette or
//! grey, zlib stored blocks), GIF (LZW with literal codes only) and JPEG
//! (baseline, grey, one solid colour per 8x8 block: DC coefficients only)
//! encoders, random texts, SHA-256 (FIPS 180-4), the PNG header reader used
//! on the results, and the box rule a thumbnail must follow.
//!
//! The encoders produce valid, if uncompressed or blocky, files: what the
//! worker decodes is a real PNG, GIF or JPEG stream, not a stub.
#![allow(dead_code)]

/// xorshift64*: deterministic inputs from a seed (a failing run can be
/// replayed with the same seed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }
}

// ------------------------------------------------------------------ images

/// An image of `w` x `h` palette indices (0..16), drawn as a few
/// rectangles on a background so that resizing has something to average.
pub fn picture(rng: &mut Rng, w: u32, h: u32) -> Vec<u8> {
    let mut px = vec![rng.range(0, 15) as u8; (w * h) as usize];
    for _ in 0..rng.range(2, 6) {
        let (x0, y0) = (rng.range(0, w - 1), rng.range(0, h - 1));
        let (x1, y1) = (rng.range(x0, w - 1), rng.range(y0, h - 1));
        let c = rng.range(0, 15) as u8;
        for y in y0..=y1 {
            for x in x0..=x1 {
                px[(y * w + x) as usize] = c;
            }
        }
    }
    px
}

/// 16 colours, RGB.
pub fn palette(rng: &mut Rng) -> [u8; 48] {
    let mut p = [0u8; 48];
    for b in p.iter_mut() {
        *b = rng.next() as u8;
    }
    p
}

/// CRC-32 (ISO-HDLC, as PNG chunks use), bitwise.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// A zlib stream of stored (uncompressed) deflate blocks (RFC 1950/1951).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = data.chunks(65535).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len())); // BFINAL, BTYPE=00
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    if data.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32(&typed).to_be_bytes());
}

/// A PNG: 8-bit palette (`grey = false`) or 8-bit grey (index x 17).
pub fn png(rng: &mut Rng, w: u32, h: u32, grey: bool) -> Vec<u8> {
    let px = picture(rng, w, h);
    let mut raw = Vec::with_capacity(((w + 1) * h) as usize);
    for row in px.chunks(w as usize) {
        raw.push(0); // filter: none
        if grey {
            raw.extend(row.iter().map(|&i| i * 17));
        } else {
            raw.extend_from_slice(row);
        }
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, if grey { 0 } else { 3 }, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    if !grey {
        png_chunk(&mut out, b"PLTE", &palette(rng));
    }
    png_chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// LSB-first bit packer (GIF's LZW order).
struct LsbBits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl LsbBits {
    fn put(&mut self, code: u32, width: u32) {
        self.acc |= code << self.n;
        self.n += width;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A GIF89a with a 16-colour table. The LZW stream holds literal codes
/// only, with a clear code every 12 of them: the decoder's table then never
/// grows past code 29, so the code width stays 5 bits and no dictionary
/// logic is needed here.
pub fn gif(rng: &mut Rng, w: u32, h: u32) -> Vec<u8> {
    let px = picture(rng, w, h);
    const CLEAR: u32 = 16;
    const EOI: u32 = 17;
    let mut bits = LsbBits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    for (i, &p) in px.iter().enumerate() {
        if i.is_multiple_of(12) {
            bits.put(CLEAR, 5);
        }
        bits.put(u32::from(p), 5);
    }
    bits.put(EOI, 5);
    let lzw = bits.finish();

    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&(w as u16).to_le_bytes());
    out.extend_from_slice(&(h as u16).to_le_bytes());
    // Global colour table present, 8 bits of colour resolution, 2^(3+1) entries.
    out.extend_from_slice(&[0xF3, 0, 0]);
    out.extend_from_slice(&palette(rng));
    out.push(0x2C);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(w as u16).to_le_bytes());
    out.extend_from_slice(&(h as u16).to_le_bytes());
    out.push(0); // no local table, not interlaced
    out.push(4); // LZW minimum code size
    for block in lzw.chunks(255) {
        out.push(block.len() as u8);
        out.extend_from_slice(block);
    }
    out.push(0);
    out.push(0x3B);
    out
}

/// MSB-first bit packer with JPEG byte stuffing (an 0xFF data byte is
/// followed by 0x00).
struct JpegBits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl JpegBits {
    fn put(&mut self, code: u32, width: u32) {
        for i in (0..width).rev() {
            self.acc = (self.acc << 1) | ((code >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.byte();
            }
        }
    }
    fn byte(&mut self) {
        let b = self.acc as u8;
        self.out.push(b);
        if b == 0xFF {
            self.out.push(0);
        }
        self.acc = 0;
        self.n = 0;
    }
    fn finish(mut self) -> Vec<u8> {
        // Pad the last byte with 1 bits (ITU T.81 F.1.2.3).
        while self.n != 0 {
            self.put(1, 1);
        }
        self.out
    }
}

/// Canonical Huffman codes from the DHT `counts` (codes per length 1..=16),
/// in symbol order: (code, length).
fn huffman_codes(counts: &[u8; 16]) -> Vec<(u32, u32)> {
    let mut codes = Vec::new();
    let mut code = 0u32;
    for (i, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            codes.push((code, i as u32 + 1));
            code += 1;
        }
        code <<= 1;
    }
    codes
}

/// A baseline JPEG, 8-bit grey, where every 8x8 block is one flat grey
/// (only the DC coefficient is coded; every block's AC part is an EOB).
/// Quantisation is 1 everywhere, so the decoded grey is exact.
pub fn jpeg(rng: &mut Rng, w: u32, h: u32) -> Vec<u8> {
    // ITU T.81 table K.3 (luminance DC): symbols 0..=11 are categories.
    const DC_COUNTS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    // AC: EOB (0x00) as "0" and a never used 0x01 as "10".
    const AC_COUNTS: [u8; 16] = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let dc = huffman_codes(&DC_COUNTS);
    let eob = huffman_codes(&AC_COUNTS)[0];
    let (bw, bh) = (w.div_ceil(8), h.div_ceil(8));
    let greys = picture(rng, bw, bh);

    let mut out = vec![0xFF, 0xD8];
    let mut segment = |marker: u8, body: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
    };
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1u8; 64]);
    segment(0xDB, &dqt);
    let mut sof = vec![8];
    sof.extend_from_slice(&(h as u16).to_be_bytes());
    sof.extend_from_slice(&(w as u16).to_be_bytes());
    sof.extend_from_slice(&[1, 1, 0x11, 0]);
    segment(0xC0, &sof);
    let mut dht = vec![0x00];
    dht.extend_from_slice(&DC_COUNTS);
    dht.extend(0..=11u8);
    dht.push(0x10);
    dht.extend_from_slice(&AC_COUNTS);
    dht.extend_from_slice(&[0x00, 0x01]);
    segment(0xC4, &dht);
    segment(0xDA, &[1, 1, 0x00, 0, 63, 0]);

    let mut bits = JpegBits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    let mut prev = 0i32;
    for &g in &greys {
        // A flat block of level L has DC = 8 * (L - 128) (T.81 A.3.3).
        let level = i32::from(g) * 17;
        let value = 8 * (level - 128);
        let diff = value - prev;
        prev = value;
        let cat = 32 - diff.unsigned_abs().leading_zeros();
        let (code, len) = dc[cat as usize];
        bits.put(code, len);
        if cat > 0 {
            let v = if diff < 0 { diff - 1 } else { diff };
            bits.put((v as u32) & ((1 << cat) - 1), cat);
        }
        bits.put(eob.0, eob.1);
    }
    out.extend_from_slice(&bits.finish());
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// Width and height from a PNG's IHDR; None if it is not a PNG.
pub fn png_size(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < 24 || &data[..8] != b"\x89PNG\r\n\x1a\n" || &data[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    Some((be(16), be(20)))
}

/// Whether `(tw, th)` is a correct thumbnail of `(w, h)` in `(bw, bh)`:
/// inside the box, the original size when it already fits, otherwise
/// touching the box on the tighter side with the other side within half a
/// pixel of the exact aspect ratio (rounded to nearest, at least 1).
pub fn thumbnail_ok((w, h): (u32, u32), (bw, bh): (u32, u32), (tw, th): (u32, u32)) -> bool {
    if w <= bw && h <= bh {
        return (tw, th) == (w, h);
    }
    if tw > bw || th > bh || tw == 0 || th == 0 {
        return false;
    }
    let (w, h, tw, th, bw, bh) = (
        u64::from(w),
        u64::from(h),
        u64::from(tw),
        u64::from(th),
        u64::from(bw),
        u64::from(bh),
    );
    // Rounded to nearest: |2 * side - 2 * exact| <= 1, scaled by the
    // denominator; a side that rounds to 0 is clamped to 1.
    if w * bh >= h * bw {
        // Width is the tighter side: tw = bw, th ~ h * bw / w.
        tw == bw && ((2 * th * w).abs_diff(2 * h * bw) <= w || th == 1 && 2 * h * bw < w)
    } else {
        th == bh && ((2 * tw * h).abs_diff(2 * w * bh) <= h || tw == 1 && 2 * w * bh < h)
    }
}

// -------------------------------------------------------------------- text

/// A random UTF-8 text: words (some non-ASCII), punctuation, spaces, tabs,
/// `\n` and `\r\n` line ends, sometimes no final newline.
pub fn text(rng: &mut Rng) -> String {
    const WORDS: [&str; 24] = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "Tandem",
        "VIP",
        "failover",
        "lease",
        "café",
        "naïve",
        "Ωmega",
        "日本語",
        "straße",
        "don't",
        "x86_64",
        "42",
        "résumé",
        "ünïcödé",
        "job",
        "worker",
    ];
    let mut s = String::new();
    for _ in 0..rng.range(1, 400) {
        s.push_str(WORDS[rng.range(0, WORDS.len() as u32 - 1) as usize]);
        s.push_str(match rng.range(0, 19) {
            0 => "\n",
            1 => "\r\n",
            2 => ", ",
            3 => "\t",
            4 => ".  ",
            _ => " ",
        });
    }
    if rng.range(0, 1) == 0 {
        s.pop();
    }
    s
}

/// The statistics the text worker must answer: (lines, words, characters,
/// bytes, sha256 hex), by the rules of worker/src/kinds/text.rs.
pub fn text_stats(t: &str) -> (u64, u64, u64, u64, String) {
    (
        t.lines().count() as u64,
        t.split_whitespace().count() as u64,
        t.chars().count() as u64,
        t.len() as u64,
        hex(&sha256(t.as_bytes())),
    )
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ----------------------------------------------------------------- SHA-256

/// floor(root(p) * 2^32) mod 2^32 for root = square (n = 2) or cube (n = 3)
/// root, by integer search: exact, unlike floats. These are SHA-256's
/// initial values and round constants (FIPS 180-4 §4.2.2, §5.3.3).
fn frac_root(p: u128, n: u32) -> u32 {
    let target = p << (32 * n);
    let (mut lo, mut hi) = (0u128, 1u128 << 40);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if mid.pow(n) <= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo as u32
}

fn primes(n: usize) -> Vec<u128> {
    let mut v = Vec::new();
    let mut c = 2u128;
    while v.len() < n {
        if (2..c)
            .take_while(|d| d * d <= c)
            .all(|d| !c.is_multiple_of(d))
        {
            v.push(c);
        }
        c += 1;
    }
    v
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let ps = primes(64);
    let k: Vec<u32> = ps.iter().map(|&p| frac_root(p, 3)).collect();
    let mut h: Vec<u32> = ps[..8].iter().map(|&p| frac_root(p, 2)).collect();
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[4 * i..4 * i + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] =
            [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]];
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(k[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
