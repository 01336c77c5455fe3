// Q8_0 block on the GPU: 9 words = [d (f16) | 0], 32 signed bytes; value = d * q.
const WPB: u32 = 9u;
struct Blk { q: array<vec4<f32>, 8>, d: f32, m: f32 }
fn load_block(wb: u32) -> Blk {
    var b: Blk;
    b.d = unpack2x16float(W[wb]).x;
    b.m = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let w = W[wb + 1u + i];
        let s = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w));
        b.q[i] = vec4<f32>(s >> vec4<u32>(24u));
    }
    return b;
}
