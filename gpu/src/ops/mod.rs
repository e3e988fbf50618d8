//! The reference's operations on device tensors, one module per reference module. Each function
//! launches the kernels of `gpu/kernels` and gives the reference function of the same name's
//! bits (the orders are those of the reference's docs).

pub mod adam;
pub mod batchnorm;
pub mod conv;
pub mod elementwise;
pub mod losses;
pub mod proto;
