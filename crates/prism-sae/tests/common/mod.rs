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
