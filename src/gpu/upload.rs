//! Weights on the GPU: kept in their file's quantisation, repacked into word-aligned blocks
//! (blocks.rs), split by rows into chunks that each fit one storage binding. On CPU adapters
//! the same words go into rgba32uint textures instead (`GpuContext::weight_textures`):
//! lavapipe fetches a 16-byte texel per lane in one gather but loads storage buffers lane by
//! lane, a word at a time (~7x slower).
use wgpu::util::DeviceExt;

use super::blocks::{gpu_words, repack};
use super::context::GpuContext;
use crate::error::{Error, Result};
use crate::model::{DType, Weight};

/// Texels per texture row of a weight texture (the shaders' TEXW). 4096 fits every adapter
/// (WebGPU guarantees 8192), so only the number of rows can run out.
pub const TEX_WIDTH: usize = 4096;

/// Where a chunk's words live.
#[derive(Clone)]
pub enum Storage {
    Buffer(wgpu::Buffer),
    Texture(wgpu::TextureView),
}

impl Storage {
    pub fn resource(&self) -> wgpu::BindingResource<'_> {
        match self {
            Storage::Buffer(b) => b.as_entire_binding(),
            Storage::Texture(v) => wgpu::BindingResource::TextureView(v),
        }
    }
}

/// Most words one weight texture holds on this adapter (two texels stay spare: a block that
/// straddles texels reads up to two past its first).
pub fn texture_capacity_words(ctx: &GpuContext) -> usize {
    texture_words(&ctx.limits)
}

fn texture_words(limits: &wgpu::Limits) -> usize {
    (TEX_WIDTH * limits.max_texture_dimension_2d as usize * 4).saturating_sub(8)
}

/// The most bytes of one piece of a weight tensor on the GPU: a binding, a buffer, and on
/// adapters that keep weights in textures, a texture. Larger tensors are split into pieces of
/// whole rows, so one row must fit.
pub fn weight_piece_bytes(limits: &wgpu::Limits, textures: bool) -> usize {
    let bind = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size) as usize;
    match textures {
        true => bind.min(texture_words(limits) * 4),
        false => bind,
    }
}

/// `words` as an rgba32uint texture TEX_WIDTH texels wide, zero-padded to whole rows.
pub fn weight_texture(ctx: &GpuContext, label: &str, words: &[u32]) -> Result<wgpu::TextureView> {
    let dst = Dst::new(ctx, label, words.len(), true)?;
    let mut rest = words.to_vec();
    dst.finish(ctx, 0, &mut rest);
    Ok(match dst {
        Dst::Texture(t) => t.create_view(&Default::default()),
        Dst::Buffer(_) => unreachable!("Dst::new was asked for a texture"),
    })
}

/// Words per texture row of a weight texture.
const TEX_ROW_WORDS: usize = TEX_WIDTH * 4;

/// How many repacked words are written at a time (`GpuOptions::upload_slab_bytes`). In the
/// browser about 4 MB, so that no more than a slab of them exists beside the file's bytes in the
/// wasm heap, which never shrinks. Natively the file is mapped and a chunk's words are freed at
/// once: one write per chunk (4 MB writes left wgpu's staging ~8 MB larger at the peak on
/// lavapipe).
#[cfg(target_arch = "wasm32")]
pub(super) const DEFAULT_SLAB_WORDS: usize = 1 << 20;
#[cfg(not(target_arch = "wasm32"))]
pub(super) const DEFAULT_SLAB_WORDS: usize = usize::MAX;

/// Where one chunk of a weight goes: a texture (CPU adapters) or a storage buffer, created
/// empty and filled by `write` in order.
enum Dst {
    Texture(wgpu::Texture),
    Buffer(wgpu::Buffer),
}

impl Dst {
    /// A texture when `texture` (the kernel tests ask for one on any adapter), else a buffer.
    fn new(ctx: &GpuContext, label: &str, words: usize, texture: bool) -> Result<Dst> {
        if !texture {
            return Ok(Dst::Buffer(ctx.device.create_buffer(
                &wgpu::BufferDescriptor {
                    label: Some(label),
                    size: (words * 4) as u64,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                },
            )));
        }
        if words > texture_capacity_words(ctx) {
            return Err(Error::Gpu(format!(
                "{label}: {} bytes exceed one weight texture on this adapter",
                words * 4
            )));
        }
        // Two texels stay spare: a block that straddles texels reads up to two past its first.
        let rows = (words + 8).div_ceil(TEX_ROW_WORDS);
        let usage = wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST;
        Ok(Dst::Texture(ctx.device.create_texture(&u32x4_texture(
            label, TEX_WIDTH, rows, usage,
        ))))
    }

    /// How many of `n` pending words can be written now: all of them to a buffer, whole
    /// texture rows to a texture.
    fn ready(&self, n: usize) -> usize {
        match self {
            Dst::Buffer(_) => n,
            Dst::Texture(_) => n / TEX_ROW_WORDS * TEX_ROW_WORDS,
        }
    }

    /// Write `words` at word `at` (for a texture, both whole rows).
    fn write(&self, ctx: &GpuContext, at: usize, words: &[u32]) {
        if words.is_empty() {
            return;
        }
        match self {
            Dst::Buffer(b) => {
                ctx.queue
                    .write_buffer(b, (at * 4) as u64, bytemuck::cast_slice(words))
            }
            Dst::Texture(t) => ctx.queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture: t,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: (at / TEX_ROW_WORDS) as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                bytemuck::cast_slice(words),
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some((TEX_ROW_WORDS * 4) as u32),
                    rows_per_image: None,
                },
                wgpu::Extent3d {
                    width: TEX_WIDTH as u32,
                    height: (words.len() / TEX_ROW_WORDS) as u32,
                    depth_or_array_layers: 1,
                },
            ),
        }
    }

    /// Write what is ready of `pending` at word `at`; drop it from `pending`; the new `at`.
    fn flush(&self, ctx: &GpuContext, at: usize, pending: &mut Vec<u32>) -> usize {
        let n = self.ready(pending.len());
        self.write(ctx, at, &pending[..n]);
        pending.drain(..n);
        at + n
    }

    /// Write the rest: a texture's last rows zero-padded to the texture's end.
    fn finish(&self, ctx: &GpuContext, at: usize, pending: &mut Vec<u32>) {
        if let Dst::Texture(t) = self {
            let end = t.height() as usize * TEX_ROW_WORDS;
            pending.resize(end - at, 0);
        }
        self.flush(ctx, at, pending);
    }

    fn storage(self) -> Storage {
        match self {
            Dst::Texture(t) => Storage::Texture(t.create_view(&Default::default())),
            Dst::Buffer(b) => Storage::Buffer(b),
        }
    }
}

/// A 2D rgba32uint texture of `width` texels by `rows` (the layout of every texture here).
fn u32x4_texture(
    label: &str,
    width: usize,
    rows: usize,
    usage: wgpu::TextureUsages,
) -> wgpu::TextureDescriptor<'_> {
    wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: width as u32,
            height: rows as u32,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Uint,
        usage,
        view_formats: &[],
    }
}

/// A texture of `rows` rows of `cols` f32 (cols / 4 texels each): the row mirrors of buffers
/// (activations, memory rows) that copies fill, or with `written` a storage texture that
/// kernels write (the K/V cache) on CPU adapters. None where it does not fit the adapter's
/// texture size or cols is not a whole number of texels.
pub fn row_texture(
    ctx: &GpuContext,
    label: &str,
    cols: usize,
    rows: usize,
    written: bool,
) -> Option<wgpu::Texture> {
    let usage = if written {
        wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING
    } else {
        wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST
    };
    rows_fit(ctx, cols, rows).then(|| {
        let desc = u32x4_texture(label, cols / 4, rows, usage);
        if written {
            if let Some(tex) = unfilled_texture(ctx, &desc) {
                return tex;
            }
        }
        ctx.device.create_texture(&desc)
    })
}

/// A storage texture without wgpu's zero fill, on Vulkan CPU adapters (lavapipe), where device
/// memory is host memory: the fill writes every page, so a 2048-token K/V cache would be
/// resident from the first step; unfilled, a page becomes resident when a position in it is
/// first written (as a CPU runtime's malloc'd cache does). Sound only for textures whose
/// kernels never read a texel before writing it: attention reads positions 0..=pos0 + n_tok - 1,
/// all written by the step's QKV pass first. None where this does not apply (other backends
/// and device types, the web): the caller creates the texture the usual way.
#[cfg(any(
    windows,
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd"
))]
fn unfilled_texture(ctx: &GpuContext, desc: &wgpu::TextureDescriptor) -> Option<wgpu::Texture> {
    use wgpu::hal::{api::Vulkan, Device as _};
    use wgpu::wgt::TextureUses;
    if ctx.info.backend != wgpu::Backend::Vulkan || ctx.info.device_type != wgpu::DeviceType::Cpu {
        return None;
    }
    // wgpu's own mapping of TextureUsages to the driver's, for the usages these textures have.
    let mut uses = TextureUses::empty();
    let usage = desc.usage;
    uses.set(
        TextureUses::RESOURCE,
        usage.contains(wgpu::TextureUsages::TEXTURE_BINDING),
    );
    uses.set(
        TextureUses::COPY_DST,
        usage.contains(wgpu::TextureUsages::COPY_DST),
    );
    if usage.contains(wgpu::TextureUsages::STORAGE_BINDING) {
        uses |= TextureUses::STORAGE_READ_ONLY | TextureUses::STORAGE_WRITE_ONLY;
    }
    let hal_desc = wgpu::hal::TextureDescriptor {
        label: desc.label,
        size: desc.size,
        mip_level_count: desc.mip_level_count,
        sample_count: desc.sample_count,
        dimension: desc.dimension,
        format: desc.format,
        usage: uses,
        memory_flags: wgpu::hal::MemoryFlags::empty(),
        view_formats: Vec::new(),
    };
    // SAFETY: the hal texture is made on this device from a descriptor matching `desc`, and is
    // handed to wgpu at once in its initial (undefined) state. wgpu then treats its contents as
    // initialised; the kernels that use it write every texel they later read (see above).
    unsafe {
        let hal_device = ctx.device.as_hal::<Vulkan>()?;
        let raw = hal_device.create_texture(&hal_desc).ok()?;
        Some(
            ctx.device
                .create_texture_from_hal::<Vulkan>(raw, desc, TextureUses::UNINITIALIZED),
        )
    }
}

#[cfg(not(any(
    windows,
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd"
)))]
fn unfilled_texture(_: &GpuContext, _: &wgpu::TextureDescriptor) -> Option<wgpu::Texture> {
    None
}

/// A constant matrix [data.len() / cols, cols] of f32 in the same layout as `row_texture`
/// (a TIDE router's W_r on CPU adapters). None where it does not fit.
pub fn matrix_texture(
    ctx: &GpuContext,
    label: &str,
    cols: usize,
    data: &[f32],
) -> Option<wgpu::Texture> {
    let rows = data.len() / cols.max(1);
    (rows_fit(ctx, cols, rows) && rows * cols == data.len()).then(|| {
        ctx.device.create_texture_with_data(
            &ctx.queue,
            &u32x4_texture(label, cols / 4, rows, wgpu::TextureUsages::TEXTURE_BINDING),
            wgpu::util::TextureDataOrder::LayerMajor,
            bytemuck::cast_slice(data),
        )
    })
}

/// Whether rows of `cols` f32 make whole texels and `rows` of them fit one texture.
fn rows_fit(ctx: &GpuContext, cols: usize, rows: usize) -> bool {
    let max = ctx.limits.max_texture_dimension_2d as usize;
    cols % 4 == 0 && cols > 0 && cols / 4 <= max && rows > 0 && rows <= max
}

pub struct Chunk {
    pub storage: Storage,
    pub row0: usize,
    pub rows: usize,
}

/// A matrix [rows, cols] on the GPU, possibly in several row chunks.
pub struct GpuTensor {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub chunks: Vec<Chunk>,
}

impl GpuTensor {
    /// Upload the concatenation (by rows) of `parts`, which must share dtype and row length.
    pub fn upload(ctx: &GpuContext, name: &str, parts: &[&Weight]) -> Result<GpuTensor> {
        let dtype = parts[0].dtype();
        let cols = parts[0].cols();
        if parts.iter().any(|p| p.dtype() != dtype || p.cols() != cols) {
            return Err(Error::Gpu(format!(
                "{name}: concatenated parts differ in type or width"
            )));
        }
        if cols % 32 != 0 {
            return Err(Error::Gpu(format!(
                "{name}: row length {cols} is not a multiple of 32, which the GPU kernels need"
            )));
        }
        let rows: usize = parts.iter().map(|p| p.rows()).sum();
        let (wpb, _) = gpu_words(dtype);
        let row_words = cols / 32 * wpb;
        let row_bytes = row_words * 4;
        // Textures are split like buffers (so `GpuOptions::max_binding` tests both), and
        // also at the texture's own capacity.
        let max_bind = weight_piece_bytes(&ctx.limits, ctx.weight_textures);
        let rows_per_chunk = (max_bind / row_bytes).min(rows);
        if rows_per_chunk == 0 {
            return Err(Error::Gpu(format!(
                "{name}: one row ({row_bytes} bytes) exceeds the adapter's storage binding limit of {max_bind} bytes"
            )));
        }
        let slab_rows = (ctx.upload_slab_words / row_words).max(1);
        let mut chunks = Vec::new();
        let mut row0 = 0;
        let mut words: Vec<u32> = Vec::new();
        while row0 < rows {
            let n = rows_per_chunk.min(rows - row0);
            if ctx.dry {
                // The chunk's shape alone, on a placeholder its bind groups can name.
                let dst = Dst::new(ctx, name, 8, ctx.weight_textures)?;
                chunks.push(Chunk {
                    storage: dst.storage(),
                    row0,
                    rows: n,
                });
                row0 += n;
                continue;
            }
            let dst = Dst::new(ctx, name, n * row_words, ctx.weight_textures)?;
            let mut at = 0;
            words.clear();
            let mut r = row0;
            while r < row0 + n {
                let m = slab_rows.min(row0 + n - r);
                // Gather rows [r, r + m) across the parts.
                let mut base = 0;
                for p in parts {
                    let (a, b) = (r.max(base), (r + m).min(base + p.rows()));
                    if a < b {
                        // Only the slab's rows: a read-through file is never held whole.
                        repack(dtype, &p.row_bytes(a - base..b - base), &mut words);
                    }
                    base += p.rows();
                }
                at = dst.flush(ctx, at, &mut words);
                r += m;
            }
            dst.finish(ctx, at, &mut words);
            chunks.push(Chunk {
                storage: dst.storage(),
                row0,
                rows: n,
            });
            row0 += n;
        }
        for p in parts.iter().filter(|_| !ctx.dry) {
            p.release();
        }
        // wgpu holds each written texture's staging copy until a submission completes: flush
        // now, so that staging never holds more than one tensor.
        ctx.queue.submit([]);
        ctx.drive()?;
        Ok(GpuTensor {
            name: name.to_string(),
            dtype,
            rows,
            cols,
            chunks,
        })
    }

    pub fn bytes(&self) -> usize {
        self.rows * self.cols / 32 * gpu_words(self.dtype).0 * 4
    }
}
