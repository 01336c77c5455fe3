//! Device probes for benchmarks: copy bandwidth (the roofline's denominator) and the fixed cost
//! of a dispatch, both timed with the kernel harness.
use super::context::GpuContext;
use super::harness::{time, Data};
use super::kernel::{slot, Binding, Slot};
use super::shader::Defines;
use crate::error::Result;

const BINDINGS: [Slot; 2] = [
    slot(0, "A", Binding::Read),
    slot(1, "B", Binding::ReadWrite),
];

/// Read+write bandwidth of a storage-to-storage copy kernel over `bytes`, in GB/s
/// (bytes read + bytes written, per second), best of the harness's repeats.
pub fn copy_bandwidth(ctx: &GpuContext, bytes: usize, reps: usize) -> Result<f64> {
    let words = bytes / 64 * 16;
    let data = [Data::U32(vec![1; words]), Data::U32(vec![0; words])];
    let groups = (words as u32 / 16).div_ceil(64); // 4 x vec4<u32> per invocation
    let (gx, gy) = if groups > 65535 {
        (65535, groups.div_ceil(65535))
    } else {
        (groups, 1)
    };
    let t = time(
        ctx,
        "bandwidth",
        "main",
        &Defines::new(),
        &BINDINGS,
        &data,
        (gx, gy, 1),
        reps.max(1),
    )?;
    Ok(2.0 * (words * 4) as f64 / t / 1e9)
}

/// Microseconds per dispatch of a kernel with (almost) nothing to do, `n` in one submission.
pub fn dispatch_cost_us(ctx: &GpuContext, n: usize) -> Result<f64> {
    let data = [Data::U32(vec![0; 16]), Data::U32(vec![0; 16])];
    Ok(time(
        ctx,
        "bandwidth",
        "main",
        &Defines::new(),
        &BINDINGS,
        &data,
        (1, 1, 1),
        n,
    )? * 1e6)
}
