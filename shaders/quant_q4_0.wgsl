// Q4_0 block on the GPU: 5 words = [d (f16) | 0], 16 bytes of nibbles; value = d * (q - 8).
const WPB: u32 = 5u;
struct Blk { q: array<vec4<f32>, 8>, d: f32, m: f32 }
fn load_block(wb: u32) -> Blk {
    var b: Blk;
    b.d = unpack2x16float(W[wb]).x;
    b.m = -8.0 * b.d;
    for (var i = 0u; i < 4u; i++) {
        let w = W[wb + 1u + i];
        b.q[i] = vec4<f32>(vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u));
        b.q[i + 4u] = vec4<f32>(vec4<u32>(w >> 4u, w >> 12u, w >> 20u, w >> 28u) & vec4<u32>(15u));
    }
    return b;
}
