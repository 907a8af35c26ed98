//! The benchmarks allocate as the `prism` CLI does: large freed buffers are kept for reuse
//! (`prism_core::alloc`), instead of mapped afresh and page-faulted in on every pass.

#[global_allocator]
static ALLOCATOR: prism::core::alloc::ReusingAllocator = prism::core::alloc::ReusingAllocator;

/// With `--system-allocator` on the command line, the plain system allocator instead (the
/// baseline for the allocator's share of a benchmark's speed).
#[allow(dead_code)] // not every benchmark offers the switch
pub fn system_if_asked() {
    if std::env::args().any(|a| a == "--system-allocator") {
        prism::core::alloc::ReusingAllocator::set_enabled(false);
        eprintln!("(system allocator)");
    }
}
