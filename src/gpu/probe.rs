//! Device probes for benchmarks: copy bandwidth (the roofline's denominator) and the fixed cost
//! of a dispatch.
use std::time::Instant;

use super::context::GpuContext;
use super::shader::{Binding, Defines, Kernel};
use crate::error::Result;

fn timed(ctx: &GpuContext, enc: wgpu::CommandEncoder) -> Result<f64> {
    let t = Instant::now();
    ctx.queue.submit([enc.finish()]);
    ctx.wait()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Read+write bandwidth of a storage-to-storage copy kernel over `bytes`, in GB/s
/// (bytes read + bytes written, per second), best of `reps`.
pub fn copy_bandwidth(ctx: &GpuContext, bytes: usize, reps: usize) -> Result<f64> {
    let bindings = [(0, Binding::Read), (1, Binding::ReadWrite)];
    let layout = Kernel::layout_for(&ctx.device, &bindings);
    let k = Kernel::build(
        &ctx.device,
        "bandwidth",
        "main",
        &Defines::new(),
        &layout,
        &bindings,
    )?;
    let bytes = bytes / 64 * 64;
    let mk = |label| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let (a, b) = (mk("bw-a"), mk("bw-b"));
    let bind = k.bind(&ctx.device, &[a.as_entire_binding(), b.as_entire_binding()]);
    let invocations = (bytes / 64) as u32; // 4 x vec4<u32> each
    let groups = invocations.div_ceil(64);
    let (gx, gy) = if groups > 65535 {
        (65535, groups.div_ceil(65535))
    } else {
        (groups, 1)
    };
    let mut best = f64::MAX;
    for _ in 0..reps.max(1) + 1 {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut p = enc.begin_compute_pass(&Default::default());
            p.set_pipeline(&k.pipeline);
            p.set_bind_group(0, &bind, &[]);
            p.dispatch_workgroups(gx, gy, 1);
        }
        best = best.min(timed(ctx, enc)?);
    }
    Ok(2.0 * bytes as f64 / best / 1e9)
}

/// Microseconds per dispatch of a kernel that does nothing, `n` dispatches in one submission.
pub fn dispatch_cost_us(ctx: &GpuContext, n: usize) -> Result<f64> {
    dispatch_cost_sized_us(ctx, n, 64)
}

/// Like `dispatch_cost_us`, with the bound buffers `size` bytes each.
pub fn dispatch_cost_sized_us(ctx: &GpuContext, n: usize, size: u64) -> Result<f64> {
    let bindings = [(0, Binding::Read), (1, Binding::ReadWrite)];
    let layout = Kernel::layout_for(&ctx.device, &bindings);
    let k = Kernel::build(
        &ctx.device,
        "bandwidth",
        "main",
        &Defines::new(),
        &layout,
        &bindings,
    )?;
    let mk = || {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let (a, b) = (mk(), mk());
    let bind = k.bind(&ctx.device, &[a.as_entire_binding(), b.as_entire_binding()]);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut p = enc.begin_compute_pass(&Default::default());
            p.set_pipeline(&k.pipeline);
            p.set_bind_group(0, &bind, &[]);
            for _ in 0..n {
                p.dispatch_workgroups(1, 1, 1);
            }
        }
        best = best.min(timed(ctx, enc)?);
    }
    Ok(best * 1e6 / n as f64)
}
