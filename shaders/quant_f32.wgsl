// f32 weights, one per word; 32 words per block.
const WPB: u32 = 32u;
struct Blk { q: array<vec4<f32>, 8>, d: f32, m: f32 }
fn load_block(wb: u32) -> Blk {
    var b: Blk;
    b.d = 1.0;
    b.m = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let o = wb + 4u * i;
        b.q[i] = vec4<f32>(bitcast<f32>(W[o]), bitcast<f32>(W[o + 1u]), bitcast<f32>(W[o + 2u]), bitcast<f32>(W[o + 3u]));
    }
    return b;
}
