//! Dequantisation of GGUF (ggml) tensor blocks to f32.

use half::{bf16, f16};

/// The ggml tensor types Prism can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit, 32 weights per block, scale only: `w = (q − 8)·d`.
    Q4_0,
    /// 4-bit, 32 weights per block, scale and minimum: `w = q·d + m`.
    Q4_1,
    /// 8-bit, 32 weights per block: `w = q·d`.
    Q8_0,
    /// 5-bit, 32 weights per block, scale only: `w = (q − 16)·d`, the fifth bits in a `u32`.
    Q5_0,
    /// 5-bit, 32 weights per block, scale and minimum: `w = q·d + m`.
    Q5_1,
    /// 4-bit k-quant, 256 weights per super-block with 6-bit sub-block scales and minima.
    Q4K,
    /// 5-bit k-quant: Q4_K's layout plus a fifth bit per weight.
    Q5K,
    /// 6-bit k-quant, 256 weights per super-block in 16 sub-blocks with 8-bit scales:
    /// `w = d·s·(q − 32)`.
    Q6K,
}

impl GgmlType {
    /// Maps a GGUF type id to a type Prism reads; `None` for the others.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            30 => GgmlType::BF16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            _ => return None,
        })
    }

    /// `(weights per block, bytes per block)`.
    pub fn block_layout(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
        }
    }
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantises `n` weights stored as `ty` in `bytes` (which must hold exactly the blocks for `n`).
///
/// The caller checks sizes; this function assumes `bytes.len() == n / block * block_bytes`.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    let (_, bb) = ty.block_layout();
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(|c| half_at(c, 0))),
        GgmlType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            for blk in bytes.chunks_exact(bb) {
                let d = half_at(blk, 0);
                let (m, qs) = if ty == GgmlType::Q4_1 {
                    (half_at(blk, 2), &blk[4..20])
                } else {
                    (-8.0 * d, &blk[2..18])
                };
                // Low nibbles are weights 0..16, high nibbles 16..32.
                out.extend(qs.iter().map(|q| (q & 0x0f) as f32 * d + m));
                out.extend(qs.iter().map(|q| (q >> 4) as f32 * d + m));
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            for blk in bytes.chunks_exact(bb) {
                let d = half_at(blk, 0);
                let (m, rest) = if ty == GgmlType::Q5_1 {
                    (half_at(blk, 2), &blk[4..])
                } else {
                    (-16.0 * d, &blk[2..])
                };
                // Weight j's fifth bit is bit j of `high`; its low four bits are the low nibble of
                // byte j (j < 16) or the high nibble of byte j − 16.
                let high = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..20];
                let fifth = |j: usize| (((high >> j) & 1) as u8) << 4;
                out.extend((0..16).map(|j| ((qs[j] & 0x0f) | fifth(j)) as f32 * d + m));
                out.extend((0..16).map(|j| ((qs[j] >> 4) | fifth(j + 16)) as f32 * d + m));
            }
        }
        GgmlType::Q8_0 => {
            for blk in bytes.chunks_exact(bb) {
                let d = half_at(blk, 0);
                out.extend(blk[2..34].iter().map(|&q| (q as i8) as f32 * d));
            }
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            for blk in bytes.chunks_exact(bb) {
                let d = half_at(blk, 0);
                let dmin = half_at(blk, 2);
                let scales = &blk[4..16];
                // Q5_K: 32 bytes whose bit s of byte i is the fifth bit of weight i of
                // sub-block s; then the nibbles as in Q4_K.
                let (high, qs) = if ty == GgmlType::Q5K {
                    (Some(&blk[16..48]), &blk[48..176])
                } else {
                    (None, &blk[16..144])
                };
                let fifth = |sub: usize, i: usize| high.map_or(0, |h| ((h[i] >> sub) & 1) << 4);
                for chunk in 0..4 {
                    let q = &qs[32 * chunk..32 * chunk + 32];
                    for (sub, nibble) in [(2 * chunk, 0), (2 * chunk + 1, 4)] {
                        let (sc, m) = scale_min_k4(sub, scales);
                        let (scale, min) = (d * sc as f32, dmin * m as f32);
                        out.extend(q.iter().enumerate().map(|(i, v)| {
                            scale * (((v >> nibble) & 0x0f) | fifth(sub, i)) as f32 - min
                        }));
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for blk in bytes.chunks_exact(bb) {
                let (low, high, scales) = (&blk[..128], &blk[128..192], &blk[192..208]);
                let d = half_at(blk, 208);
                // Each half of 128 weights: low nibbles from 64 bytes (weights r and r + 64 share
                // byte r), the top two bits from 32 bytes (weights r, r + 32, r + 64, r + 96
                // share byte r).
                out.extend((0..256).map(|w| {
                    let (h, r) = (w / 128, w % 128);
                    let lo = (low[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
                    let hi = (high[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
                    let q = (lo | (hi << 4)) as i32 - 32;
                    d * (scales[w / 16] as i8) as f32 * q as f32
                }));
            }
        }
    }
    out
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) packed in a Q4_K super-block's 12 bytes.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_block_by_hand() {
        // d = 0.5, m = -1.0; byte j = (hi << 4) | lo with lo = j, hi = 15 - j.
        let mut blk = Vec::new();
        blk.extend(f16::from_f32(0.5).to_le_bytes());
        blk.extend(f16::from_f32(-1.0).to_le_bytes());
        blk.extend((0..16u8).map(|j| ((15 - j) << 4) | j));
        let w = dequantize(GgmlType::Q4_1, &blk, 32);
        assert_eq!(w[0], -1.0);
        assert_eq!(w[3], 0.5);
        assert_eq!(w[16], 15.0 * 0.5 - 1.0);
        assert_eq!(w[31], -1.0);
    }

    #[test]
    fn q8_0_block_by_hand() {
        let mut blk = Vec::new();
        blk.extend(f16::from_f32(0.25).to_le_bytes());
        blk.extend((0..32i32).map(|i| (i - 16) as i8 as u8));
        let w = dequantize(GgmlType::Q8_0, &blk, 32);
        assert_eq!(w[0], -4.0);
        assert_eq!(w[31], 15.0 * 0.25);
    }
}
