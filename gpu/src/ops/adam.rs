//! Adam's per-element update (reference `adam`): the step's scalars are the reference's
//! [`AdamScalars`] (computed on the host, in `f64`, rounded once); every element follows
//! [`AdamScalars::update`].

use crate::args::AdamUpdateElementsArgs;
use crate::device::Device;
use crate::error::GpuError;
use crate::kernels;
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
        kernels::ADAM_UPDATE_ELEMENTS,
        n,
        &AdamUpdateElementsArgs {
            param: p.buf.ptr(),
            grad: grad.buf.ptr(),
            m: m.buf.ptr(),
            v: v.buf.ptr(),
            p_out: p_out.ptr(),
            m_out: m_out.ptr(),
            v_out: v_out.ptr(),
            n: n as i64,
            step_size: s.step_size,
            bc2_sqrt: s.bc2_sqrt,
            one_minus_b1: s.one_minus_b1,
            one_minus_b2: s.one_minus_b2,
            beta2: s.beta2,
            eps: s.eps,
            weight_decay: s.weight_decay,
        },
    )?;
    Ok((
        GpuTensor::from_buffer(&p.shape, p_out),
        GpuTensor::from_buffer(&p.shape, m_out),
        GpuTensor::from_buffer(&p.shape, v_out),
    ))
}
