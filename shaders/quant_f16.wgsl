// f16 weights packed two per word (portable: no shader-f16 needed); 16 words per 32 elements.
const WPB: u32 = 16u;
struct Blk { q: array<vec4<f32>, 8>, d: f32, m: f32 }
fn load_block(wb: u32) -> Blk {
    var b: Blk;
    b.d = 1.0;
    b.m = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let lo = unpack2x16float(W[wb + 2u * i]);
        let hi = unpack2x16float(W[wb + 2u * i + 1u]);
        b.q[i] = vec4<f32>(lo, hi);
    }
    return b;
}
