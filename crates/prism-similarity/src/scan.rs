//! One pass over a chunk of the cosine matrix on the host: each row's maximum and argmax, each
//! column's maximum and argmax, and each row's `k` largest entries (the greedy matching's
//! candidates) by a partial selection — a sorted array of `k` that a value enters only when it
//! beats the smallest, so a row of 32 768 cosines costs one comparison per entry. Row blocks
//! run on all cores; ties go to the lowest index, as in a sequential scan.

use rayon::prelude::*;

/// What one chunk `[rows, m_b]` yields.
pub(crate) struct ChunkScan {
    pub row_max: Vec<f32>,
    pub row_arg: Vec<u32>,
    pub col_max: Vec<f32>,
    /// Row (within the chunk) of each column's maximum.
    pub col_arg: Vec<usize>,
    /// `(cosine, row within the chunk, column)`: each row's `k` largest.
    pub top: Vec<(f32, usize, u32)>,
}

impl ChunkScan {
    /// Room for `rows` rows of `m_b` columns, no column seen yet.
    fn empty(rows: usize, m_b: usize, k: usize) -> Self {
        Self {
            row_max: Vec::with_capacity(rows),
            row_arg: Vec::with_capacity(rows),
            col_max: vec![f32::NEG_INFINITY; m_b],
            col_arg: vec![0; m_b],
            top: Vec::with_capacity(rows * k),
        }
    }
}

/// Scans `sims` (row-major `[rows, m_b]`), keeping each row's `k` largest entries.
pub(crate) fn scan_chunk(sims: &[f32], m_b: usize, k: usize) -> ChunkScan {
    let rows = sims.len() / m_b;
    let block = rows.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let parts: Vec<ChunkScan> = sims
        .par_chunks(block * m_b)
        .enumerate()
        .map(|(b, part)| scan_rows(part, m_b, k, b * block))
        .collect();
    let mut out = ChunkScan::empty(rows, m_b, k);
    for p in parts {
        out.row_max.extend(p.row_max);
        out.row_arg.extend(p.row_arg);
        out.top.extend(p.top);
        for (j, (v, r)) in p.col_max.into_iter().zip(p.col_arg).enumerate() {
            if v > out.col_max[j] {
                out.col_max[j] = v;
                out.col_arg[j] = r;
            }
        }
    }
    out
}

fn scan_rows(part: &[f32], m_b: usize, k: usize, first_row: usize) -> ChunkScan {
    let rows = part.len() / m_b;
    let mut out = ChunkScan::empty(rows, m_b, k);
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (r, row) in part.chunks_exact(m_b).enumerate() {
        let (mut max, mut arg) = (f32::NEG_INFINITY, 0u32);
        best.clear();
        for (j, (&v, (cmax, carg))) in row
            .iter()
            .zip(out.col_max.iter_mut().zip(out.col_arg.iter_mut()))
            .enumerate()
        {
            if v > max {
                (max, arg) = (v, j as u32);
            }
            if v > *cmax {
                (*cmax, *carg) = (v, first_row + r);
            }
            if k > 0 && (best.len() < k || v > best[k - 1].0) {
                // Insert keeping `best` sorted, largest first (later equal values after).
                let at = best.partition_point(|&(b, _)| b >= v);
                best.insert(at, (v, j as u32));
                best.truncate(k);
            }
        }
        out.row_max.push(max);
        out.row_arg.push(arg);
        out.top
            .extend(best.iter().map(|&(v, j)| (v, first_row + r, j)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a brute force: full sorts of every row and column.
    #[test]
    fn the_scan_equals_sorting_every_row_and_column() {
        let (rows, m_b, k) = (37, 53, 5);
        let mut state = 12345u64;
        let sims: Vec<f32> = (0..rows * m_b)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Few distinct values, so ties are common.
                ((state >> 40) % 17) as f32 / 16.0
            })
            .collect();
        let s = scan_chunk(&sims, m_b, k);
        for r in 0..rows {
            let row = &sims[r * m_b..(r + 1) * m_b];
            let mut order: Vec<usize> = (0..m_b).collect();
            order.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
            assert_eq!(s.row_max[r], row[order[0]]);
            assert_eq!(s.row_arg[r] as usize, order[0]);
            let top: Vec<(f32, usize, u32)> =
                order[..k].iter().map(|&j| (row[j], r, j as u32)).collect();
            assert_eq!(s.top[r * k..(r + 1) * k], top[..]);
        }
        for j in 0..m_b {
            let col: Vec<f32> = (0..rows).map(|r| sims[r * m_b + j]).collect();
            let max = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(s.col_max[j], max);
            assert_eq!(s.col_arg[j], col.iter().position(|&v| v == max).unwrap());
        }
    }
}
