//! What the training tests share: the engines to run every check on.

use prism_sae::train::EngineChoice;

pub mod synthetic;

/// The wgpu device, or `None` (with the reason printed) where no adapter exists. When
/// `PRISM_REQUIRE_WGPU` is set (CI installs lavapipe and sets it) a missing adapter fails the test.
#[allow(dead_code)] // used by some of the test binaries
pub fn wgpu_device() -> Option<prism_core::Device> {
    match prism_core::device("wgpu") {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os("PRISM_REQUIRE_WGPU").is_some() => panic!("wgpu required: {e}"),
        Err(e) => {
            eprintln!("skipping the wgpu part: {e}");
            None
        }
    }
}

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
