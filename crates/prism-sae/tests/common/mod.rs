//! What the training tests share: the engines to run every check on.

use prism_sae::train::EngineChoice;

pub mod synthetic;

pub use prism_testkit::wgpu_device;

/// The host kernels and burn on `flex`, each with a name for messages. (burn on `wgpu` runs
/// the same code; on Mesa's software Vulkan every new kernel takes seconds to compile, so one
/// test covers it: `burn_engine_trains_like_the_host_engine`.)
#[allow(dead_code)] // used by some of the test binaries
pub fn engines() -> Vec<(&'static str, EngineChoice)> {
    vec![
        ("host", EngineChoice::Host),
        ("burn/flex", EngineChoice::burn_on("cpu").unwrap()),
    ]
}

/// The largest absolute difference between two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `dict` against a reference file's `x`, `codes_{name}` and `{output}_{name}`: the same active
/// features, codes within 1e-5, and `forward(x)` within 1e-5.
#[allow(dead_code)] // used by some of the test binaries
pub fn check_against_reference(
    dict: &impl prism_core::Dictionary,
    reference: &std::path::Path,
    name: &str,
    output: &str,
) {
    use prism_core::HostTensor;
    let device = prism_core::device("cpu").unwrap();
    let refs = prism_core::read_safetensors(reference).unwrap();
    let x = refs["x"].to_burn::<2>(&device).unwrap();
    let f = HostTensor::from_burn(dict.encode(x.clone())).unwrap();
    let want = &refs[&format!("codes_{name}")];
    let nz = |v: &[f32]| v.iter().map(|&a| a != 0.0).collect::<Vec<_>>();
    assert_eq!(
        nz(&f.data),
        nz(&want.data),
        "{name}: active features differ"
    );
    assert!(max_diff(&f.data, &want.data) < 1e-5, "{name}: codes differ");
    let out = HostTensor::from_burn(dict.forward(x)).unwrap();
    let diff = max_diff(&out.data, &refs[&format!("{output}_{name}")].data);
    assert!(diff < 1e-5, "{name}: {output} differs by {diff}");
}
