//! protokd-reference: the specification (filled in below).
pub mod layers;
pub mod mathfn;
pub mod reduce;
pub mod tensor;
pub use tensor::Tensor;
