//! Structured mutations of valid seed files.
//!
//! Without coverage feedback, a fuzzer finds bugs by making the changes that real corruption and
//! hostile files make: flipped bits, truncation, counts and lengths inflated to absurd values,
//! chunks duplicated or spliced from another file, invalid UTF-8, numbers in JSON and CSV
//! replaced by extremes. Each input is 1–4 such changes stacked on one seed.

use rand::Rng;
use rand::rngs::StdRng;

/// Integers that break length and count checks when written into a binary header.
const INTERESTING_U64: [u64; 12] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 60,
    i64::MAX as u64,
    u64::MAX,
];

/// Replacements for numbers in text formats.
const INTERESTING_NUMBERS: [&str; 14] = [
    "0",
    "-1",
    "1",
    "3",
    "65537",
    "4294967296",
    "1000000000000",
    "18446744073709551615",
    "99999999999999999999999",
    "1e308",
    "-1e308",
    "0.5",
    "NaN",
    "null",
];

/// Bytes that are not valid UTF-8 in any position, or that split a multi-byte character.
const BAD_UTF8: [&[u8]; 4] = [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80"];

/// Whether a seed is mutated as bytes only, or also token-wise as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A binary format (GGUF, safetensors, pickle/zip).
    Binary,
    /// A text format (JSON, JSONL, CSV, plain text).
    Text,
}

/// One mutated input: `seed` with 1–4 changes; `other` is a second seed for splicing.
///
/// ```
/// use prism_fuzz::mutate::{mutate, Format};
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let seed = br#"{"hidden_size": 64, "num_hidden_layers": 2}"#;
/// let inputs: Vec<Vec<u8>> = (0..100).map(|_| mutate(seed, seed, Format::Text, 1 << 20, &mut rng)).collect();
/// assert!(inputs.iter().any(|m| m.as_slice() != seed.as_slice()));
/// assert!(inputs.iter().all(|m| m.len() <= 1 << 20));
/// ```
pub fn mutate(
    seed: &[u8],
    other: &[u8],
    format: Format,
    max_len: usize,
    rng: &mut StdRng,
) -> Vec<u8> {
    let mut b = seed.to_vec();
    let n = 1 + rng.random_range(0..4);
    for _ in 0..n {
        let choice = match format {
            Format::Binary => rng.random_range(0..9),
            Format::Text => rng.random_range(0..13),
        };
        match choice {
            0 => flip_bit(&mut b, rng),
            1 => set_byte(&mut b, rng),
            2 => write_integer(&mut b, rng),
            3 => nudge_integer(&mut b, rng),
            4 => truncate(&mut b, rng),
            5 => delete_chunk(&mut b, rng),
            6 => duplicate_chunk(&mut b, rng),
            7 => splice(&mut b, other, rng),
            8 => insert_bytes(&mut b, rng),
            9 | 10 => replace_number(&mut b, rng),
            11 => insert_bad_utf8(&mut b, rng),
            _ => duplicate_line(&mut b, rng),
        }
        b.truncate(max_len);
    }
    b
}

fn pos(b: &[u8], rng: &mut StdRng) -> usize {
    if b.is_empty() {
        0
    } else {
        rng.random_range(0..b.len())
    }
}

fn flip_bit(b: &mut [u8], rng: &mut StdRng) {
    if !b.is_empty() {
        let i = pos(b, rng);
        b[i] ^= 1 << rng.random_range(0..8);
    }
}

fn set_byte(b: &mut [u8], rng: &mut StdRng) {
    if !b.is_empty() {
        let i = pos(b, rng);
        b[i] = [0u8, 0xff, 0x7f, 0x80, 1, b'"', b'{', b'\n', b','][rng.random_range(0..9)];
    }
}

/// Overwrites 1, 2, 4 or 8 bytes (little-endian, like GGUF and safetensors) with an extreme
/// integer — the "count that claims 2^60 elements".
fn write_integer(b: &mut [u8], rng: &mut StdRng) {
    let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
    if b.len() < width {
        return;
    }
    let i = rng.random_range(0..=b.len() - width);
    let v = INTERESTING_U64[rng.random_range(0..INTERESTING_U64.len())];
    b[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

/// Adds a small signed delta to an aligned little-endian u32 or u64: off-by-one offsets and
/// lengths, which stay plausible and so get past the first checks.
fn nudge_integer(b: &mut [u8], rng: &mut StdRng) {
    let width = if rng.random_bool(0.5) { 4 } else { 8 };
    if b.len() < width {
        return;
    }
    let i = rng.random_range(0..=(b.len() - width) / width) * width;
    let mut a = [0u8; 8];
    a[..width].copy_from_slice(&b[i..i + width]);
    let delta = rng.random_range(-16i64..=16);
    let v = u64::from_le_bytes(a).wrapping_add(delta as u64);
    b[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

fn truncate(b: &mut Vec<u8>, rng: &mut StdRng) {
    let at = pos(b, rng);
    b.truncate(at);
}

fn chunk(b: &[u8], rng: &mut StdRng) -> (usize, usize) {
    let start = pos(b, rng);
    let max = (b.len() - start.min(b.len())).min(4096);
    let len = if max == 0 {
        0
    } else {
        rng.random_range(1..=max)
    };
    (start, len)
}

fn delete_chunk(b: &mut Vec<u8>, rng: &mut StdRng) {
    let (s, l) = chunk(b, rng);
    b.drain(s..s + l);
}

fn duplicate_chunk(b: &mut Vec<u8>, rng: &mut StdRng) {
    let (s, l) = chunk(b, rng);
    let piece = b[s..s + l].to_vec();
    let times = 1 + rng.random_range(0..8);
    let at = pos(b, rng);
    let insert: Vec<u8> = piece
        .iter()
        .copied()
        .cycle()
        .take(piece.len() * times)
        .collect();
    b.splice(at..at, insert);
}

/// This seed's head, the other seed's tail (same format, so the structure stays recognisable).
fn splice(b: &mut Vec<u8>, other: &[u8], rng: &mut StdRng) {
    let head = pos(b, rng);
    let tail = pos(other, rng);
    b.truncate(head);
    b.extend_from_slice(&other[tail.min(other.len())..]);
}

fn insert_bytes(b: &mut Vec<u8>, rng: &mut StdRng) {
    let at = pos(b, rng);
    let n = rng.random_range(1..32);
    let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
    b.splice(at..at, bytes);
}

/// Replaces a run of ASCII digits (a count, a size, an index, a label) by an extreme number.
fn replace_number(b: &mut Vec<u8>, rng: &mut StdRng) {
    let digits: Vec<usize> = (0..b.len()).filter(|&i| b[i].is_ascii_digit()).collect();
    if digits.is_empty() {
        return;
    }
    let mut s = digits[rng.random_range(0..digits.len())];
    while s > 0 && (b[s - 1].is_ascii_digit() || b[s - 1] == b'.' || b[s - 1] == b'-') {
        s -= 1;
    }
    let mut e = s;
    while e < b.len() && (b[e].is_ascii_digit() || b[e] == b'.' || b[e] == b'e' || b[e] == b'-') {
        e += 1;
    }
    let with = INTERESTING_NUMBERS[rng.random_range(0..INTERESTING_NUMBERS.len())];
    b.splice(s..e, with.bytes());
}

fn insert_bad_utf8(b: &mut Vec<u8>, rng: &mut StdRng) {
    let at = pos(b, rng);
    let bad = BAD_UTF8[rng.random_range(0..BAD_UTF8.len())];
    b.splice(at..at, bad.iter().copied());
}

/// Repeats one line many times (a huge CSV, a JSONL file of thousands of identical records) or
/// makes it very long.
fn duplicate_line(b: &mut Vec<u8>, rng: &mut StdRng) {
    let starts: Vec<usize> = std::iter::once(0)
        .chain((0..b.len()).filter(|&i| b[i] == b'\n').map(|i| i + 1))
        .filter(|&i| i < b.len())
        .collect();
    if starts.is_empty() {
        return;
    }
    let s = starts[rng.random_range(0..starts.len())];
    let e = b[s..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| s + p + 1);
    let line = b[s..e].to_vec();
    let times = [2usize, 8, 64][rng.random_range(0..3)];
    let insert: Vec<u8> = if rng.random_bool(0.5) {
        line.iter()
            .copied()
            .cycle()
            .take(line.len() * times)
            .collect()
    } else {
        // One very long line: the same line without its newlines, repeated.
        let body: Vec<u8> = line.iter().copied().filter(|&c| c != b'\n').collect();
        body.iter()
            .copied()
            .cycle()
            .take(body.len() * times)
            .collect()
    };
    b.splice(e..e, insert);
}
