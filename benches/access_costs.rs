//! What one memory access or multiply-add costs on the adapter wgpu finds, per 8 lanes (one SIMD
//! row of a CPU driver): texel fetches, storage loads and uniform loads, each with every lane
//! at the same address ("same") or at its own ("own"), against 32 f32 multiply-adds. The
//! figures behind the CPU-adapter kernels' design (docs/benchmarks.md). Prints one JSON object.
//! Run: cargo bench --bench access_costs
use tide_gpu::gpu::harness::{time, Data};
use tide_gpu::gpu::{slot, Binding, Defines, GpuContext, GpuOptions, TEX_WIDTH};

fn main() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("no GPU adapter");
    let (n, groups) = (4096u32, 64u32);
    let bindings = [
        slot(0, "T", Binding::Texture),
        slot(1, "S", Binding::Read),
        slot(2, "U", Binding::Uniform),
        slot(3, "O", Binding::ReadWrite),
    ];
    let data = [
        Data::U32(vec![1; TEX_WIDTH * 4 * 8]),
        Data::U32(vec![1; 4096]),
        Data::U32(vec![1; 1024]),
        Data::U32(vec![0; 4 * 8 * groups as usize]),
    ];
    let lane_iterations = (groups * 8 * n) as f64;
    let mut rows = Vec::new();
    let kinds = [
        ("NONE", "empty loop"),
        ("FMA", "32 f32 multiply-adds"),
        ("TEX_SAME", "texel fetch, same texel"),
        ("TEX_OWN", "texel fetch, own texel"),
        ("STORAGE_SAME", "storage vec4 load, same address"),
        ("STORAGE_OWN", "storage vec4 load, own address"),
        ("UNIFORM_SAME", "uniform vec4 load, same index"),
        ("UNIFORM_OWN", "uniform vec4 load, own index"),
        ("UNIFORM_CONST", "uniform vec4 load, constant index"),
    ];
    for (flag, what) in kinds {
        let defs = Defines::new().set("N", n).flag(flag, true);
        let t = time(
            &ctx,
            "access_costs",
            "main",
            &defs,
            &bindings,
            &data,
            (groups, 1, 1),
            5,
        )
        .expect("kernel failed");
        // Adapter time per 8 lane-iterations (one SIMD row), in ns.
        let ns = t / lane_iterations * 8.0 * 1e9;
        eprintln!("{what:>34}: {ns:8.2} ns per 8 lanes");
        rows.push(serde_json::json!({"op": what, "ns_per_8_lanes": ns}));
    }
    println!(
        "{}",
        serde_json::json!({ "adapter": ctx.describe(), "access_costs": rows })
    );
}
