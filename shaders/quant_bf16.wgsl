// bf16 weights packed two per word: a bf16 is the top half of an f32.
const WPB: u32 = 16u;
struct Blk { q: array<vec4<f32>, 8>, d: f32, m: f32 }
fn bf16x2(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
fn load_block(wb: u32) -> Blk {
    var b: Blk;
    b.d = 1.0;
    b.m = 0.0;
    for (var i = 0u; i < 8u; i++) {
        b.q[i] = vec4<f32>(bf16x2(W[wb + 2u * i]), bf16x2(W[wb + 2u * i + 1u]));
    }
    return b;
}
