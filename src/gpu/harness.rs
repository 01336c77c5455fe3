//! Run one kernel on host data and read every writable binding back: the kernel tests' way to
//! check a single WGSL entry point against the CPU reference.
use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::kernel::{Binding, Kernel, Slot};
use super::shader::Defines;
use super::upload::{weight_texture, Storage, TEX_WIDTH};
use crate::error::{Error, Result};

/// Contents of one binding, in binding order (a Texture binding takes U32 words; so does a
/// StorageTexture binding, as whole rows of TEX_WIDTH texels).
#[derive(Clone)]
pub enum Data {
    F32(Vec<f32>),
    U32(Vec<u32>),
    /// Raw bytes (uniforms).
    Bytes(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::F32(v) => bytemuck::cast_slice(v),
            Data::U32(v) => bytemuck::cast_slice(v),
            Data::Bytes(v) => v,
        }
    }
}

/// Seconds per dispatch of `shader:entry`: buffers made once, `reps` dispatches recorded in
/// one pass and submitted together (best of 9: this VM is noisy), so submission latency is amortised away.
#[allow(clippy::too_many_arguments)]
pub fn time(
    ctx: &GpuContext,
    shader: &str,
    entry: &str,
    defs: &Defines,
    bindings: &[Slot],
    data: &[Data],
    groups: (u32, u32, u32),
    reps: usize,
) -> Result<f64> {
    let (k, _bufs, bind) = prepare(ctx, shader, entry, defs, bindings, data, None)?;
    let mut best = f64::MAX;
    for _ in 0..9 {
        best = best.min(time_once(ctx, &k, &bind, groups, reps)?);
    }
    Ok(best)
}

/// One side of an A/B timing: its defines and workgroups, and optionally a folder of edited
/// shaders to build it from.
#[cfg(not(target_arch = "wasm32"))]
pub struct Variant<'a> {
    pub defs: &'a Defines,
    pub groups: (u32, u32, u32),
    pub shader_dir: Option<&'a str>,
}

/// Like [`time`] for two variants of one kernel (other shader files, or other defines such
/// as a tile) on the same data. The two take turns, round by round, so a slow spell of this
/// noisy VM hits both alike. Returns (best A, best B) over `rounds` rounds.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
pub fn time_ab(
    ctx: &GpuContext,
    shader: &str,
    entry: &str,
    bindings: &[Slot],
    data: &[Data],
    reps: usize,
    rounds: usize,
    variants: [Variant; 2],
) -> Result<(f64, f64)> {
    let build = |v: &Variant| {
        let dir = v.shader_dir.map(std::path::Path::new);
        prepare(ctx, shader, entry, v.defs, bindings, data, dir)
    };
    let (ka, _bufs_a, bind_a) = build(&variants[0])?;
    let (kb, _bufs_b, bind_b) = build(&variants[1])?;
    let (mut a, mut b) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        a = a.min(time_once(ctx, &ka, &bind_a, variants[0].groups, reps)?);
        b = b.min(time_once(ctx, &kb, &bind_b, variants[1].groups, reps)?);
    }
    Ok((a, b))
}

/// Seconds per dispatch over one submission of `reps` dispatches.
fn time_once(
    ctx: &GpuContext,
    k: &Kernel,
    bind: &wgpu::BindGroup,
    groups: (u32, u32, u32),
    reps: usize,
) -> Result<f64> {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut p = enc.begin_compute_pass(&Default::default());
        p.set_pipeline(&k.pipeline);
        p.set_bind_group(0, bind, &[]);
        for _ in 0..reps {
            p.dispatch_workgroups(groups.0, groups.1, groups.2);
        }
    }
    let t = std::time::Instant::now();
    ctx.queue.submit([enc.finish()]);
    ctx.wait()?;
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

/// The kernel, one buffer per binding filled from `data`, and the bind group over them.
fn prepare(
    ctx: &GpuContext,
    shader: &str,
    entry: &str,
    defs: &Defines,
    bindings: &[Slot],
    data: &[Data],
    dir: Option<&std::path::Path>,
) -> Result<(Kernel, Vec<Bound>, wgpu::BindGroup)> {
    if bindings.len() != data.len() {
        return Err(Error::Input(format!(
            "{} bindings but {} buffers",
            bindings.len(),
            data.len()
        )));
    }
    let layout = Kernel::layout_for(&ctx.device, bindings);
    let dir = dir.or(ctx.shader_dir.as_deref());
    let k = Kernel::build(&ctx.device, shader, entry, defs, &layout, bindings, dir)?;
    let bufs = buffers(ctx, bindings, data)?;
    let named: Vec<(&str, wgpu::BindingResource)> = bindings
        .iter()
        .zip(&bufs)
        .map(|(s, b)| (s.name, b.resource()))
        .collect();
    let bind = k.bind(&ctx.device, &named)?;
    Ok((k, bufs, bind))
}

fn buffers(ctx: &GpuContext, bindings: &[Slot], data: &[Data]) -> Result<Vec<Bound>> {
    bindings
        .iter()
        .zip(data)
        .map(|(&Slot { kind, .. }, d)| {
            if kind == Binding::Texture {
                let words: &[u32] = bytemuck::cast_slice(d.bytes());
                return Ok(Bound::Kept(Storage::Texture(weight_texture(
                    ctx, "weights", words,
                )?)));
            }
            if kind == Binding::StorageTexture {
                let t = written_texture(ctx, d.bytes())?;
                let v = t.create_view(&Default::default());
                return Ok(Bound::Written(t, v));
            }
            let mut bytes = d.bytes().to_vec();
            bytes.resize(bytes.len().max(16).div_ceil(4) * 4, 0);
            let usage = match kind {
                Binding::Uniform => wgpu::BufferUsages::UNIFORM,
                _ => wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            };
            Ok(Bound::Kept(Storage::Buffer(ctx.device.create_buffer_init(
                &wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: &bytes,
                    usage,
                },
            ))))
        })
        .collect()
}

/// Dispatch `shader:entry` once with `groups` workgroups; returns the final contents of each
/// ReadWrite or StorageTexture binding (in binding order) as raw 32-bit words. Blocking: see `run_async`.
#[cfg(not(target_arch = "wasm32"))]
pub fn run(
    ctx: &GpuContext,
    shader: &str,
    entry: &str,
    defs: &Defines,
    bindings: &[Slot],
    data: &[Data],
    groups: (u32, u32, u32),
) -> Result<Vec<Vec<u32>>> {
    pollster::block_on(run_async(ctx, shader, entry, defs, bindings, data, groups))
}

/// `run`, awaiting the readback (the browser's way: no blocking poll).
pub async fn run_async(
    ctx: &GpuContext,
    shader: &str,
    entry: &str,
    defs: &Defines,
    bindings: &[Slot],
    data: &[Data],
    groups: (u32, u32, u32),
) -> Result<Vec<Vec<u32>>> {
    let (k, bufs, bind) = prepare(ctx, shader, entry, defs, bindings, data, None)?;
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut p = enc.begin_compute_pass(&Default::default());
        p.set_pipeline(&k.pipeline);
        p.set_bind_group(0, &bind, &[]);
        p.dispatch_workgroups(groups.0, groups.1, groups.2);
    }
    let mut reads = Vec::new();
    for (b, &Slot { kind, .. }) in bufs.iter().zip(bindings) {
        let size = match (kind, b) {
            (Binding::ReadWrite, Bound::Kept(Storage::Buffer(b))) => b.size(),
            (Binding::StorageTexture, Bound::Written(t, _)) => texture_bytes(t),
            _ => continue,
        };
        let r = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        match b {
            Bound::Written(t, _) => enc.copy_texture_to_buffer(
                t.as_image_copy(),
                wgpu::TexelCopyBufferInfo {
                    buffer: &r,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(t.width() * 16),
                        rows_per_image: None,
                    },
                },
                t.size(),
            ),
            Bound::Kept(Storage::Buffer(b)) => enc.copy_buffer_to_buffer(b, 0, &r, 0, size),
            Bound::Kept(Storage::Texture(_)) => {}
        }
        reads.push(r);
    }
    ctx.queue.submit([enc.finish()]);
    let mut done = Vec::new();
    for r in &reads {
        let (tx, rx) = futures_channel::oneshot::channel();
        r.slice(..).map_async(wgpu::MapMode::Read, move |m| {
            let _ = tx.send(m);
        });
        done.push(rx);
    }
    ctx.drive()?;
    let mut out = Vec::new();
    for (r, rx) in reads.iter().zip(done) {
        rx.await
            .map_err(|_| Error::Gpu("readback: the map was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("readback: {e}")))?;
        let v = r
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("readback: {e}")))?;
        out.push(bytemuck::cast_slice(&v).to_vec());
    }
    Ok(out)
}

/// What one binding of a harness run holds: a buffer or texture it reads, or a storage
/// texture it writes (kept whole, for the readback).
enum Bound {
    Kept(Storage),
    Written(wgpu::Texture, wgpu::TextureView),
}

impl Bound {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        match self {
            Bound::Kept(s) => s.resource(),
            Bound::Written(_, v) => wgpu::BindingResource::TextureView(v),
        }
    }
}

/// A storage texture TEX_WIDTH texels wide holding `bytes` (whole rows), that the kernel
/// writes and the harness reads back.
fn written_texture(ctx: &GpuContext, bytes: &[u8]) -> Result<wgpu::Texture> {
    let row = TEX_WIDTH * 16;
    if bytes.is_empty() || bytes.len() % row != 0 {
        return Err(Error::Input(format!(
            "a storage texture takes whole rows of {row} bytes, not {}",
            bytes.len()
        )));
    }
    Ok(ctx.device.create_texture_with_data(
        &ctx.queue,
        &wgpu::TextureDescriptor {
            label: Some("written"),
            size: wgpu::Extent3d {
                width: TEX_WIDTH as u32,
                height: (bytes.len() / row) as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Uint,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        },
        wgpu::util::TextureDataOrder::LayerMajor,
        bytes,
    ))
}

fn texture_bytes(t: &wgpu::Texture) -> u64 {
    t.width() as u64 * 16 * t.height() as u64
}
