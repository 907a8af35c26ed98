//! Loops compiled once per x86 instruction set and chosen at run time.
//!
//! Prism's release builds target the baseline x86-64 (SSE2), so that a binary runs on any
//! machine; a loop over `f32` then vectorises 4 lanes wide. [`simd_dispatch!`](crate::simd_dispatch)
//! compiles the same `#[inline(always)]` body again for AVX2+FMA and for AVX-512 and calls the
//! widest one the CPU has — how the forward pass's fused kernels, the scoring of runs and the
//! training step's element-wise work reach 8 or 16 lanes.

/// Compiles a slice kernel for the baseline target, AVX2+FMA and AVX-512, and runs the widest
/// one this CPU has. The body is an `#[inline(always)]` function, so each copy is vectorised
/// for its own instruction set.
///
/// ```
/// #[inline(always)]
/// fn scale_body(x: &mut [f32], by: f32) {
///     x.iter_mut().for_each(|v| *v *= by);
/// }
/// prism_core::simd_dispatch! {
///     /// Multiplies every value by `by`.
///     fn scale(x: &mut [f32], by: f32) => scale_body
/// }
/// let mut x = [1.0, 2.0];
/// scale(&mut x, 3.0);
/// assert_eq!(x, [3.0, 6.0]);
/// ```
#[macro_export]
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:ident) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn wide($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `wide` was compiled for.
                    return unsafe { wide($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
