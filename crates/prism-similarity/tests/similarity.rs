//! Mean max cosine similarity and matching on dictionaries with known relations.

use burn::tensor::{Device, Tensor, TensorData};
use prism_similarity::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, StandardNormal};

fn random(rows: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rows * d)
        .map(|_| Distribution::<f32>::sample(&StandardNormal, &mut rng))
        .collect()
}

fn tensor(v: &[f32], rows: usize, d: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [rows, d]), device)
}

/// A random orthogonal d×d matrix (Gram–Schmidt on Gaussian columns).
fn rotation(d: usize, seed: u64) -> Vec<f32> {
    let g = random(d, d, seed);
    let mut q: Vec<Vec<f64>> = Vec::new();
    for i in 0..d {
        let mut v: Vec<f64> = g[i * d..(i + 1) * d].iter().map(|&x| x as f64).collect();
        for u in &q {
            let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
        }
        let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.into_iter().map(|a| a / n).collect());
    }
    q.into_iter().flatten().map(|x| x as f32).collect()
}

fn matmul(a: &[f32], rows: usize, r: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * d];
    for i in 0..rows {
        for k in 0..d {
            let x = a[i * d + k];
            for j in 0..d {
                out[i * d + j] += x * r[k * d + j];
            }
        }
    }
    out
}

/// Mean over rows of `a` of the largest cosine with a row of `b`, and those maxima, in f64.
fn brute_force_mmcs(a: &[f32], b: &[f32], rows: usize, d: usize) -> (f64, Vec<f64>) {
    let unit = |v: &[f32]| -> Vec<f64> {
        let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        v.iter().map(|x| *x as f64 / n).collect()
    };
    let (ua, ub): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (
        a.chunks(d).map(unit).collect(),
        b.chunks(d).map(unit).collect(),
    );
    let maxima: Vec<f64> = ua
        .iter()
        .map(|x| {
            ub.iter()
                .map(|y| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    (maxima.iter().sum::<f64>() / rows as f64, maxima)
}

fn check_relations(device: &Device, tol: f64) {
    let (m, d) = (96, 64);
    let a = random(m, d, 1);
    // Itself: 1 both ways, the identity matching.
    let s = compare_directions(
        tensor(&a, m, d, device),
        tensor(&a, m, d, device),
        &Default::default(),
    )
    .unwrap();
    assert!(
        (s.mmcs_a_to_b - 1.0).abs() < tol && (s.mmcs_b_to_a - 1.0).abs() < tol,
        "{} {}",
        s.mmcs_a_to_b,
        s.mmcs_b_to_a
    );
    let matching = s.matching.unwrap();
    assert_eq!(
        matching.pairs,
        (0..m as u32).map(|i| (i, i)).collect::<Vec<_>>()
    );
    // A permuted (and rescaled) copy: 1 both ways, and the matching recovers the permutation.
    let mut perm: Vec<usize> = (0..m).collect();
    perm.shuffle(&mut StdRng::seed_from_u64(5));
    let b: Vec<f32> = perm
        .iter()
        .flat_map(|&p| a[p * d..(p + 1) * d].iter().map(|x| 3.0 * x))
        .collect();
    for method in [MatchingMethod::Hungarian, MatchingMethod::Greedy] {
        let opts = SimilarityOptions {
            matching: method,
            chunk: 17,
            ..Default::default()
        };
        let s =
            compare_directions(tensor(&a, m, d, device), tensor(&b, m, d, device), &opts).unwrap();
        assert!((s.mmcs_a_to_b - 1.0).abs() < tol && (s.mmcs_b_to_a - 1.0).abs() < tol);
        let got = s.matching.unwrap();
        for &(ai, bi) in &got.pairs {
            assert_eq!(
                perm[bi as usize], ai as usize,
                "{method:?}: feature {ai} matched to {bi}"
            );
        }
        assert_eq!(got.pairs.len(), m);
        assert!((got.mean_cos - 1.0).abs() < tol);
    }
    // A random rotation of itself: far from 1.
    let r = rotation(d, 9);
    let rotated = matmul(&a, m, &r, d);
    let s = compare_directions(
        tensor(&a, m, d, device),
        tensor(&rotated, m, d, device),
        &Default::default(),
    )
    .unwrap();
    // Against every cosine computed by brute force in f64: MMCS both ways and each feature's
    // maximum (so a wrong normalisation, axis or chunk boundary shows).
    let (want_ab, max_a) = brute_force_mmcs(&a, &rotated, m, d);
    let (want_ba, _) = brute_force_mmcs(&rotated, &a, m, d);
    assert!(
        (s.mmcs_a_to_b - want_ab).abs() < tol && (s.mmcs_b_to_a - want_ba).abs() < tol,
        "rotated: {} {} vs brute force {want_ab} {want_ba}",
        s.mmcs_a_to_b,
        s.mmcs_b_to_a
    );
    for (i, (got, want)) in s.max_cos_a.iter().zip(&max_a).enumerate() {
        assert!(
            (*got as f64 - want).abs() < 10.0 * tol,
            "feature {i}: {got} vs {want}"
        );
    }
    assert!(
        want_ab < 0.9,
        "a random rotation should move directions: {want_ab}"
    );
    assert!(
        s.matched_mean_cos().unwrap() < s.mmcs_a_to_b,
        "a one-to-one matching cannot beat the free maximum"
    );
}

#[test]
fn identity_permutation_and_rotation_on_cpu() {
    check_relations(&prism_core::device("cpu").unwrap(), 1e-5);
}

#[test]
fn identity_permutation_and_rotation_on_wgpu() {
    if let Some(device) = prism_testkit::wgpu_device() {
        check_relations(&device, 1e-4);
    }
}

#[test]
fn different_sizes_are_asymmetric_and_chunking_changes_nothing() {
    let device = prism_core::device("cpu").unwrap();
    let d = 32;
    let small = random(40, d, 2);
    let mut big = random(120, d, 3);
    big[..40 * d].copy_from_slice(&small); // B contains A
    let run = |chunk| {
        let opts = SimilarityOptions {
            chunk,
            ..Default::default()
        };
        compare_directions(
            tensor(&small, 40, d, &device),
            tensor(&big, 120, d, &device),
            &opts,
        )
        .unwrap()
    };
    let (s1, s7) = (run(1024), run(7));
    assert!(
        (s1.mmcs_a_to_b - 1.0).abs() < 1e-5,
        "every feature of A is in B"
    );
    assert!(
        s1.mmcs_b_to_a < 0.9,
        "most of B is not in A: {}",
        s1.mmcs_b_to_a
    );
    assert_eq!(s1.max_cos_a, s7.max_cos_a);
    assert_eq!(s1.best_a_for_b, s7.best_a_for_b);
    assert_eq!(s1.max_cos_b, s7.max_cos_b);
    // By hand: mmcs is the mean of the per-feature maxima.
    let mean = s1.max_cos_b.iter().map(|&x| x as f64).sum::<f64>() / 120.0;
    assert!((mean - s1.mmcs_b_to_a).abs() < 1e-12);
    // The exact matching pairs A's features with their copies.
    let m = s1.matching.unwrap();
    assert_eq!(m.method, "hungarian");
    assert_eq!(m.pairs, (0..40u32).map(|i| (i, i)).collect::<Vec<_>>());
    // Mismatched widths are an error.
    assert!(
        compare_directions(
            tensor(&small, 40, d, &device),
            tensor(&small[..40 * 16], 40, 16, &device),
            &Default::default()
        )
        .is_err()
    );
}

#[test]
fn hungarian_beats_greedy_where_greedy_is_fooled() {
    // Greedy takes (0,0)=0.9 first and is left with (1,1)=0.1; the best total is 0.8+0.8.
    let cos = [0.9, 0.8, 0.8, 0.1];
    let h = hungarian_matching(&cos, 2, 2);
    assert_eq!(h.pairs, vec![(0, 1), (1, 0)]);
    assert!((h.mean_cos - 0.8).abs() < 1e-6);
    let g = greedy_matching(
        vec![(0.9, 0, 0), (0.8, 0, 1), (0.8, 1, 0), (0.1, 1, 1)],
        2,
        2,
    );
    assert_eq!(g.pairs, vec![(0, 0), (1, 1)]);
    // Rectangular: 2 rows, 3 columns and 3 rows, 2 columns.
    let h = hungarian_matching(&[0.1, 0.9, 0.2, 0.95, 0.3, 0.1], 2, 3);
    assert_eq!(h.pairs, vec![(0, 1), (1, 0)]);
    let h = hungarian_matching(&[0.1, 0.9, 0.95, 0.3, 0.2, 0.1], 3, 2);
    assert_eq!(h.pairs, vec![(0, 1), (1, 0)]);
}

/// Nearest features against sorting every cosine computed by hand in f64, with and without the
/// feature itself left out, in chunks of any size.
#[test]
fn nearest_directions_equal_a_full_sort() {
    let device = prism_core::device("cpu").unwrap();
    let (d, m, k) = (16, 50, 4);
    let w = random(m, d, 9);
    let rows = [3usize, 17, 49];
    let a: Vec<f32> = rows
        .iter()
        .flat_map(|&r| w[r * d..(r + 1) * d].to_vec())
        .collect();
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let cos = |i: usize, j: usize| {
        let (x, y) = (&w[i * d..(i + 1) * d], &w[j * d..(j + 1) * d]);
        x.iter()
            .zip(y)
            .map(|(&p, &q)| p as f64 * q as f64)
            .sum::<f64>()
            / (norm(x) * norm(y))
    };
    for chunk in [1, 2, 1024] {
        for own in [None, Some(&rows[..])] {
            let near = nearest_directions(
                tensor(&a, 3, d, &device),
                tensor(&w, m, d, &device),
                k,
                own,
                chunk,
            )
            .unwrap();
            for (list, &r) in near.iter().zip(&rows) {
                let mut order: Vec<usize> = (0..m).filter(|&j| own.is_none() || j != r).collect();
                order.sort_by(|&x, &y| cos(r, y).total_cmp(&cos(r, x)));
                let got: Vec<usize> = list.iter().map(|p| p.0 as usize).collect();
                assert_eq!(got, order[..k], "row {r}, own {own:?}, chunk {chunk}");
                for &(j, c) in list {
                    assert!((c as f64 - cos(r, j as usize)).abs() < 1e-5);
                }
            }
        }
    }
    assert!(
        nearest_directions(
            tensor(&a, 3, d, &device),
            tensor(&w, m, d, &device),
            2,
            Some(&[0]),
            8
        )
        .is_err()
    );
}
