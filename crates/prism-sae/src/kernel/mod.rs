//! Dedicated CPU kernels for dictionary training: dense GEMM where the work is dense (the
//! encoder), sparse loops where codes are sparse (decoding and every gradient through codes).

mod sparse;

pub use prism_core::dense::{View, matmul};
pub use sparse::{
    Csr, DENSE_ABOVE, KernelMode, axpy, decode_into, dot, entry_dots, transpose_times_into,
};
