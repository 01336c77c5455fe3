//! On a Vulkan CPU adapter (lavapipe) device memory is host memory, so what the GPU holds shows
//! in the process's resident set. The K/V cache textures are made without wgpu's zero fill
//! (gpu::row_texture with `written`): their pages become resident only where a kernel writes,
//! as a CPU runtime's cache does, instead of all at the first step. Measured with
//! /proc/self/statm around the first use of a 64 MB texture of each kind; the texture wgpu
//! fills is the control that shows the measurement sees a whole texture.
//! The CPU reference keeps matrices in their stored type, dequantising a row at a time.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;

use tide_gpu::cpu::CpuModel;
use tide_gpu::gpu::{row_texture, GpuContext, GpuOptions};
use tide_gpu::model;

const COLS: usize = 2048; // f32 per row: 8 KB
const ROWS: usize = 8192; // 64 MB in all

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// One dispatch that uses `tex` once: a storage write of texel (0, 0), or a read of it.
fn use_once(ctx: &GpuContext, tex: &wgpu::Texture, write: bool) {
    let (decl, body) = if write {
        (
            "@group(0) @binding(0) var t: texture_storage_2d<rgba32uint, write>;",
            "textureStore(t, vec2<u32>(0u, 0u), vec4<u32>(1u));",
        )
    } else {
        (
            "@group(0) @binding(0) var t: texture_2d<u32>;
             @group(0) @binding(1) var<storage, read_write> out: array<u32>;",
            "out[0] = textureLoad(t, vec2<u32>(0u, 0u), 0).x;",
        )
    };
    let src = format!("{decl}\n@compute @workgroup_size(1) fn main() {{ {body} }}");
    let module = ctx
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
    let pipeline = ctx
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
    let out = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let view = tex.create_view(&Default::default());
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::TextureView(&view),
    }];
    if !write {
        entries.push(wgpu::BindGroupEntry {
            binding: 1,
            resource: out.as_entire_binding(),
        });
    }
    let bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    ctx.queue.submit([enc.finish()]);
    ctx.wait().expect("dispatch");
}

#[test]
fn kernel_written_textures_are_resident_only_where_written() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("adapter");
    if !common::lavapipe_or_skip(
        &ctx,
        "kernel_written_textures_are_resident_only_where_written",
    ) {
        return;
    }
    let size = COLS * ROWS * 4;
    // Warm up: pipelines and wgpu's own zero buffer, so that neither counts below.
    let small = row_texture(&ctx, "warm-up", COLS, 4, true).unwrap();
    use_once(&ctx, &small, true);
    let small = row_texture(&ctx, "warm-up", COLS, 4, false).unwrap();
    use_once(&ctx, &small, false);

    let kv = row_texture(&ctx, "k-cache", COLS, ROWS, true).expect("texture fits");
    let before = resident_bytes();
    use_once(&ctx, &kv, true);
    let written = resident_bytes().saturating_sub(before);

    let filled = row_texture(&ctx, "filled", COLS, ROWS, false).expect("texture fits");
    let before = resident_bytes();
    use_once(&ctx, &filled, false);
    let zero_filled = resident_bytes().saturating_sub(before);

    eprintln!(
        "{size} B textures: +{written} B resident after one write, +{zero_filled} B after wgpu's fill"
    );
    assert!(
        zero_filled >= size * 9 / 10,
        "the control texture should become resident as wgpu zero-fills it: +{zero_filled} B of {size}"
    );
    assert!(
        written <= size / 16,
        "a written-once K/V texture became resident: +{written} B of {size}"
    );
}

/// Llama-3.2-1B's shapes (two layers, synthetic Q4_K_M-mix weights held in memory): its f32
/// matrices would take 1.3 GB, the 128256 x 2048 embedding alone 1.05 GB. The reference used to
/// make exactly that copy; now its model and a 3-token step add next to nothing.
#[test]
fn cpu_reference_holds_no_f32_copy_of_the_weights() {
    let m = model::load(Path::new("synthetic:llama-3.2-1b-l2")).unwrap();
    let mut mats = vec![&m.token_embd];
    for l in &m.layers {
        mats.extend(l.matrices());
    }
    let f32_bytes: usize = mats.iter().map(|w| w.rows() * w.cols() * 4).sum();
    let before = resident_bytes();
    let cpu = std::sync::Arc::new(CpuModel::new(&m));
    let mut s = cpu.session(16);
    let logits = s.feed(&[1, 2, 3]).unwrap();
    assert!(logits.iter().all(|x| x.is_finite()));
    let grown = resident_bytes().saturating_sub(before);
    eprintln!("f32 matrices would be {f32_bytes} B; the reference grew by {grown} B");
    assert!(
        grown < f32_bytes / 20,
        "the CPU reference grew by {grown} B, against {f32_bytes} B of f32 matrices"
    );
}
