// What one operation costs on this adapter, per 8 lanes (`cargo bench --bench access_costs`):
// each lane loops N times over one kind of access, or over 32 f32 multiply-adds. The kernels'
// design follows these figures (on lavapipe a storage load costs ~8 texel fetches).
@group(0) @binding(0) var T: texture_2d<u32>;
@group(0) @binding(1) var<storage, read> S: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> U: array<vec4<u32>, 256>;
@group(0) @binding(3) var<storage, read_write> O: array<vec4<u32>>;

const N: u32 = {{N}}u;

@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let lane = gid.x;
    var a = vec4<u32>(lane);
    var f0 = vec4<f32>(f32(lane));
    var f1 = f0 + 1.0; var f2 = f0 + 2.0; var f3 = f0 + 3.0;
    var f4 = f0 + 4.0; var f5 = f0 + 5.0; var f6 = f0 + 6.0; var f7 = f0 + 7.0;
    let m = vec4<f32>(0.999);
    for (var i = 0u; i < N; i++) {
#if FMA
        // 8 independent vec4 chains: 32 multiply-adds per lane.
        f0 = f0 * m + f1; f1 = f1 * m + f2; f2 = f2 * m + f3; f3 = f3 * m + f4;
        f4 = f4 * m + f5; f5 = f5 * m + f6; f6 = f6 * m + f7; f7 = f7 * m + f0;
#endif
#if TEX_SAME
        a += textureLoad(T, vec2<u32>(i & 63u, (i >> 6u) & 7u), 0);
#endif
#if TEX_OWN
        a += textureLoad(T, vec2<u32>((i + lane * 7u) & 63u, lane & 7u), 0);
#endif
#if STORAGE_SAME
        a += S[i & 1023u];
#endif
#if STORAGE_OWN
        a += S[(i + lane * 37u) & 1023u];
#endif
#if UNIFORM_SAME
        a += U[i & 255u];
#endif
#if UNIFORM_OWN
        a += U[(i + lane * 37u) & 255u];
#endif
#if UNIFORM_CONST
        a += U[5];
#endif
    }
    O[lane] = a + bitcast<vec4<u32>>(f0 + f1 + f2 + f3 + f4 + f5 + f6 + f7);
}
