//! Reordering the rows of HF weight matrices into the layouts the transformer uses.

use prism_core::{HostTensor, PrismError, Result};

/// Reorders rows indexed `[outer][a][b][inner]` into `[outer][b][a][inner]` (columns untouched).
/// Works on 1-D tensors (biases) as rows of width one.
///
/// GPT-NeoX's fused QKV rows are `[head][q|k|v][d_head]`; we want `[q|k|v][head][d_head]`
/// (outer 1, a heads, b 3, inner d_head). llama.cpp writes Q/K rows of each head interleaved,
/// `[head][d_head/2][2]`, where HF has `[head][2][d_head/2]` (outer heads, a d_head/2, b 2, inner 1).
///
pub(crate) fn swap_row_groups(
    t: &HostTensor,
    outer: usize,
    a: usize,
    b: usize,
    inner: usize,
) -> Result<HostTensor> {
    let rows = t.shape.first().copied().unwrap_or(0);
    let width: usize = t.shape.iter().skip(1).product();
    if outer * a * b * inner != rows {
        return Err(PrismError::Shape(format!(
            "cannot view {rows} rows as [{outer}][{a}][{b}][{inner}]"
        )));
    }
    let block = inner * width;
    let mut out = Vec::with_capacity(t.data.len());
    for o in 0..outer {
        for j in 0..b {
            for i in 0..a {
                let src = ((o * a + i) * b + j) * block;
                out.extend_from_slice(&t.data[src..src + block]);
            }
        }
    }
    HostTensor::new(t.shape.clone(), out)
}

/// Stacks tensors along their first axis (e.g. q, k, v weights into one fused projection).
pub(crate) fn concat_rows(parts: &[&HostTensor]) -> Result<HostTensor> {
    let tail = parts
        .first()
        .map(|p| p.shape[1..].to_vec())
        .unwrap_or_default();
    if parts.iter().any(|p| p.shape[1..] != tail[..]) {
        return Err(PrismError::Shape(
            "cannot stack tensors whose trailing shapes differ".into(),
        ));
    }
    let rows = parts.iter().map(|p| p.shape[0]).sum();
    let mut shape = vec![rows];
    shape.extend(tail);
    HostTensor::new(
        shape,
        parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapping_row_groups_transposes_the_middle_axes() {
        let t = HostTensor::new(vec![4], vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        // rows [a=2][b=2] → [b][a]
        let r = swap_row_groups(&t, 1, 2, 2, 1).unwrap();
        assert_eq!(r.data, vec![0.0, 2.0, 1.0, 3.0]);
        assert!(swap_row_groups(&t, 1, 3, 2, 1).is_err());
    }
}
