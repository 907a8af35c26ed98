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
    /// 4-bit k-quant, 256 weights per super-block with 6-bit sub-block scales and minima.
    Q4K,
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
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
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
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
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
        GgmlType::Q8_0 => {
            for blk in bytes.chunks_exact(bb) {
                let d = half_at(blk, 0);
                out.extend(blk[2..34].iter().map(|&q| (q as i8) as f32 * d));
            }
        }
        GgmlType::Q4K => {
            for blk in bytes.chunks_exact(bb) {
                let d = half_at(blk, 0);
                let dmin = half_at(blk, 2);
                let scales = &blk[4..16];
                let qs = &blk[16..144];
                for chunk in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * chunk, scales);
                    let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
                    let q = &qs[32 * chunk..32 * chunk + 32];
                    let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
                    out.extend(q.iter().map(|v| d1 * (v & 0x0f) as f32 - min1));
                    out.extend(q.iter().map(|v| d2 * (v >> 4) as f32 - min2));
                }
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
