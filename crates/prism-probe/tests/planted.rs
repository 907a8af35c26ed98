//! Planted structure: activations built with a known label direction and a known confound
//! direction, and a dictionary whose decoder rows include them. The probe must find the label
//! direction, the planted feature must rank first as a classifier, and SHIFT must remove the
//! confound feature (and only ablating it helps).

use burn::tensor::{Tensor, TensorData, activation::relu};
use prism_core::{Device, Dictionary, HostTensor};
use prism_probe::{
    FeatureChoice, Probe, ProbeMethod, ShiftConfig, ShiftSets, decoder_cosines, score_features,
    shift, top_classifiers,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

/// A tied ReLU dictionary: `f = ReLU(x · Dᵀ)`, `x̂ = f · D`.
struct Tied {
    rows: Vec<Vec<f32>>,
    device: Device,
}

impl Tied {
    fn matrix(&self) -> Tensor<2> {
        let (m, d) = (self.rows.len(), self.rows[0].len());
        let flat: Vec<f32> = self.rows.concat();
        Tensor::from_data(TensorData::new(flat, [m, d]), &self.device)
    }
}

impl Dictionary for Tied {
    fn d_in(&self) -> usize {
        self.rows[0].len()
    }
    fn d_sae(&self) -> usize {
        self.rows.len()
    }
    fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        relu(x.matmul(self.matrix().transpose()))
    }
    fn decode(&self, f: Tensor<2>) -> Tensor<2> {
        f.matmul(self.matrix())
    }
    fn decoder_directions(&self) -> Tensor<2> {
        self.matrix()
    }
}

/// `d` orthonormal vectors (Gram–Schmidt of Gaussian ones).
fn orthonormal(n: usize, d: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f64>> = Vec::new();
    while out.len() < n {
        let mut v: Vec<f64> = (0..d).map(|_| StandardNormal.sample(rng)).collect();
        for u in &out {
            let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        out.push(v.iter().map(|a| a / norm).collect());
    }
    out.into_iter()
        .map(|v| v.into_iter().map(|a| a as f32).collect())
        .collect()
}

/// Rows `label·a·u + confound·b·c + noise` with ±1 signs.
fn rows(
    labels: &[bool],
    confound: &[bool],
    (u, a): (&[f32], f32),
    (c, b): (&[f32], f32),
    noise: f32,
    rng: &mut StdRng,
) -> HostTensor {
    let d = u.len();
    let sign = |v: bool| if v { 1.0 } else { -1.0 };
    let mut data = Vec::with_capacity(labels.len() * d);
    for (&l, &k) in labels.iter().zip(confound) {
        for j in 0..d {
            let e: f32 = StandardNormal.sample(rng);
            data.push(sign(l) * a * u[j] + sign(k) * b * c[j] + noise * e);
        }
    }
    HostTensor::new(vec![labels.len(), d], data).unwrap()
}

#[test]
fn probe_recovers_a_planted_direction_and_its_feature_ranks_first() {
    let mut rng = StdRng::seed_from_u64(1);
    let (n, d) = (4000, 32);
    let basis = orthonormal(20, d, &mut rng);
    let labels: Vec<bool> = (0..n).map(|_| rng.random()).collect();
    let unrelated: Vec<bool> = (0..n).map(|_| rng.random()).collect();
    let x = rows(
        &labels,
        &unrelated,
        (&basis[0], 2.0),
        (&basis[1], 0.0),
        1.0,
        &mut rng,
    );
    let planted: Vec<f64> = basis[0].iter().map(|&v| v as f64).collect();
    for method in [
        ProbeMethod::MassMean,
        ProbeMethod::MassMeanIid,
        ProbeMethod::Logistic {
            c: 0.1,
            bias: false,
        },
    ] {
        let p = Probe::fit(method, &x, &labels).unwrap();
        let cos: f64 = p.direction().iter().zip(&planted).map(|(a, b)| a * b).sum();
        assert!(
            cos > 0.99,
            "{}: cosine with the planted direction {cos}",
            method.name()
        );
        assert!(p.evaluate(&x, &labels).unwrap().accuracy > 0.95);
    }
    // A dictionary with the planted direction as feature 7 among unrelated directions.
    let mut dict_rows: Vec<Vec<f32>> = basis[1..20].to_vec();
    dict_rows.insert(7, basis[0].clone());
    let dict = Tied {
        rows: dict_rows,
        device: Default::default(),
    };
    let scores = score_features(&dict, &x, &labels, 256).unwrap();
    let top = top_classifiers(&scores, 3);
    assert_eq!(top[0].feature, 7, "{top:?}");
    assert!(top[0].separation.auroc > 0.9 && top[1].separation.auroc < 0.6);
    // The probe reads feature 7: its decoder direction has the largest cosine.
    let p = Probe::fit(ProbeMethod::MassMean, &x, &labels).unwrap();
    let cos = decoder_cosines(&dict, &p.direction()).unwrap();
    let best = (0..cos.len())
        .max_by(|&a, &b| cos[a].abs().total_cmp(&cos[b].abs()))
        .unwrap();
    assert_eq!(best, 7);
}

#[test]
fn shift_removes_a_planted_confound_and_random_ablations_do_not() {
    let mut rng = StdRng::seed_from_u64(2);
    let (n, d, m) = (1600, 24, 24);
    let basis = orthonormal(m / 2, d, &mut rng);
    // Label along basis[0] (weak), confound along basis[1] (strong).
    let labels: Vec<bool> = (0..n).map(|_| rng.random()).collect();
    let confound: Vec<bool> = (0..n).map(|_| rng.random()).collect();
    let x = rows(
        &labels,
        &confound,
        (&basis[0], 1.0),
        (&basis[1], 3.0),
        0.3,
        &mut rng,
    );
    // Features come in ± pairs so ReLU codes reconstruct every basis direction: 2i is +basis[i],
    // 2i + 1 is −basis[i]. The confound is carried by features 2 and 3.
    let dict_rows: Vec<Vec<f32>> = basis
        .iter()
        .flat_map(|v| [v.clone(), v.iter().map(|a| -a).collect()])
        .collect();
    let dict = Tied {
        rows: dict_rows,
        device: Default::default(),
    };
    let csv: String = std::iter::once("statement,label,group,confound\n".to_string())
        .chain((0..n).map(|i| {
            format!(
                "s{i},{},{},{}\n",
                u8::from(labels[i]),
                i,
                u8::from(confound[i])
            )
        }))
        .collect();
    let dataset = prism_probe::LabelledDataset::from_csv_str("planted", &csv).unwrap();
    let sets = ShiftSets::from_dataset(&dataset, "confound", "1", Some("group"), 3).unwrap();
    assert!(sets.ambiguous.iter().all(|&i| labels[i] == confound[i]));
    // Ablation on the host: zeroing features subtracts their part of the reconstruction.
    let codes = prism_probe::sparse_codes(&dict, &x, 512).unwrap();
    let ablate = |features: &[usize]| {
        let mut data = x.data.clone();
        for &f in features {
            for &(r, v) in &codes[f] {
                let row = &mut data[r as usize * d..(r as usize + 1) * d];
                row.iter_mut()
                    .zip(&dict.rows[f])
                    .for_each(|(a, b)| *a -= v * b);
            }
        }
        Ok(HostTensor::new(vec![n, d], data).unwrap())
    };
    let choice = FeatureChoice::Auto {
        candidates: 8,
        k: 4,
        margin: 0.2,
    };
    let method = ProbeMethod::Logistic {
        c: 1.0,
        bias: false,
    };
    let config = ShiftConfig::new(method, choice).with_baseline(5, 9);
    let report = shift(&sets, &x, &dict, &x, &config, ablate).unwrap();
    let acc = |i: usize| report.rows[i].label_accuracy;
    assert_eq!(
        report
            .ablated
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [2, 3].into()
    );
    assert!(
        acc(0) < 0.65,
        "the ambiguous probe follows the confound: {:?}",
        report.rows
    );
    assert!(
        acc(1) > 0.95,
        "ablating the confound features recovers the label: {:?}",
        report.rows
    );
    assert!(report.rows[1].confound_accuracy < 0.65);
    assert!(
        acc(2) < 0.7,
        "random ablations do not help: {:?}",
        report.rows
    );
    assert!(acc(3) > 0.95, "skyline: {:?}", report.rows);
    // A list given by the user is ablated as given.
    let config = ShiftConfig::new(method, FeatureChoice::Given(vec![2, 3]));
    let given = shift(&sets, &x, &dict, &x, &config, ablate).unwrap();
    assert_eq!(given.ablated, vec![2, 3]);
    assert!(given.rows[1].label_accuracy > 0.95);
}
