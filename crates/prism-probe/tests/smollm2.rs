//! Real model, real data: statement activations from SmolLM2 (batched, right-padded) against
//! HF `transformers` run one statement at a time (fixtures/probes); and the city datasets built
//! from GeoNames' real city list. Needs `prism fetch smollm2` and `prism fetch cities`; skipped
//! with a message where an asset is absent (CI fetches them).

use prism_core::HookPoint;
use prism_models::Model;
use prism_probe::{
    LabelledDataset, Pooling, city_statements, geonames_cities, statement_activations,
};

use prism_testkit::{asset, fixtures};

#[test]
fn last_token_activations_match_transformers() {
    let Some(path) = asset("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2") else {
        return;
    };
    let model = Model::load(&path, &prism_core::device("cpu").unwrap()).unwrap();
    let fixture = fixtures().join("probes");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("reference.json")).unwrap())
            .unwrap();
    let want = &prism_core::read_safetensors(&fixture.join("acts.safetensors")).unwrap()["acts"];
    let layer = reference["layer"].as_u64().unwrap() as usize;
    // Statements of different lengths in one batch: padding must not leak into the last token.
    let texts: Vec<&str> = reference["texts"].as_array().unwrap()[..24]
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let hook = HookPoint::ResidPost(layer);
    let mut lengths: Vec<usize> = texts
        .iter()
        .map(|t| model.encode(t).unwrap().len())
        .collect();
    lengths.dedup();
    assert!(lengths.len() > 1, "the batch should mix lengths");
    let got = statement_activations(
        &model,
        &texts,
        &[hook],
        Pooling::LastToken,
        &Default::default(),
        8,
        |_, _| {},
    )
    .unwrap()
    .remove(&hook)
    .unwrap();
    let d = got.shape[1];
    for (i, row) in got.data.chunks(d).enumerate() {
        let reference = &want.data[i * d..(i + 1) * d];
        let scale = reference.iter().fold(0f32, |a, b| a.max(b.abs()));
        let diff = row
            .iter()
            .zip(reference)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(
            diff <= 2e-3 * scale,
            "statement {i}: max |Δ| {diff} (scale {scale})"
        );
    }
}

#[test]
fn city_datasets_from_geonames_split_by_city_and_balance_labels() {
    let Some(cities) = asset("geonames-cities15000.json", "cities") else {
        return;
    };
    let Some(countries) = asset("geonames-countries.json", "geonames") else {
        return;
    };
    let list = geonames_cities(&cities, &countries, 500_000).unwrap();
    assert!(list.len() > 500, "{} large cities", list.len());
    assert!(list.windows(2).all(|w| w[0].population >= w[1].population));
    let names: std::collections::BTreeSet<&str> = list.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), list.len(), "one row per city name");
    for negated in [false, true] {
        let d = city_statements(&list, negated, 0).unwrap();
        assert_eq!(
            d,
            city_statements(&list, negated, 0).unwrap(),
            "deterministic with a seed"
        );
        let trues = d.labels().iter().filter(|&&l| l).count();
        assert_eq!(trues * 2, d.len(), "labels balanced");
        let split = d.split(0.25, Some("city"), 1).unwrap();
        let city = d.column("city").unwrap();
        let train: std::collections::BTreeSet<&str> =
            split.train.iter().map(|&i| city[i]).collect();
        assert!(
            split.test.iter().all(|&i| !train.contains(city[i])),
            "a city in both splits"
        );
        let share = split.test.len() as f64 / d.len() as f64;
        assert!((0.2..0.3).contains(&share), "test share {share}");
        // The file round-trips through the CSV layout.
        let back = LabelledDataset::from_csv_str(&d.name, &d.to_csv_string().unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
