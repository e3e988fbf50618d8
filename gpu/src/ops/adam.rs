//! Adam's per-element update (reference `adam`): the step's scalars are the reference's
//! [`AdamScalars`] (computed on the host, in `f64`, rounded once); every element follows
//! [`AdamScalars::update`].

use crate::args::Args;
use crate::device::Device;
use crate::error::GpuError;
use crate::tensor::GpuTensor;
use protokd_reference::adam::AdamScalars;

/// One Adam update of parameter `p` with gradient `grad` and moments `m`, `v` (all the same
/// shape); returns the new `(p, m, v)`. Per element, as [`AdamScalars::update`]:
/// `g = fma(weight_decay, p, grad)`, `m' = fma(1 - beta1, g - m, m)`,
/// `v' = fma((1 - beta2) * g, g, beta2 * v)`, `denom = sqrt(v') / bc2_sqrt + eps`,
/// `p' = fma(-step_size, m' / denom, p)`.
pub fn adam_update(
    dev: &Device,
    p: &GpuTensor,
    grad: &GpuTensor,
    m: &GpuTensor,
    v: &GpuTensor,
    s: &AdamScalars,
) -> Result<(GpuTensor, GpuTensor, GpuTensor), GpuError> {
    for (name, t) in [("gradient", grad), ("exp_avg", m), ("exp_avg_sq", v)] {
        assert_eq!(
            t.shape, p.shape,
            "adam_update: {name} shape {:?}, parameter {:?}",
            t.shape, p.shape
        );
    }
    let n = p.numel();
    let (p_out, m_out, v_out) = (dev.zeros(n)?, dev.zeros(n)?, dev.zeros(n)?);
    dev.launch(
        "adam_update_elements",
        n,
        &Args::new()
            .buf(&p.buf)
            .buf(&grad.buf)
            .buf(&m.buf)
            .buf(&v.buf)
            .buf(&p_out)
            .buf(&m_out)
            .buf(&v_out)
            .int(n)
            .f32(s.step_size)
            .f32(s.bc2_sqrt)
            .f32(s.one_minus_b1)
            .f32(s.one_minus_b2)
            .f32(s.beta2)
            .f32(s.eps)
            .f32(s.weight_decay),
    )?;
    Ok((
        GpuTensor::from_buffer(&p.shape, p_out),
        GpuTensor::from_buffer(&p.shape, m_out),
        GpuTensor::from_buffer(&p.shape, v_out),
    ))
}
