// Q8_0 block on the GPU: 9 words = [d (f16) | 0], 32 signed bytes; value = d * q.
const WPB: u32 = 9u;
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
fn i8x4(w: u32) -> vec4<f32> {
    let s = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w));
    return vec4<f32>(s >> vec4<u32>(24u));
}
fn load_block(wb: u32) -> Blk {
    let d = unpack2x16float(W[wb]).x;
    return Blk(i8x4(W[wb + 1u]), i8x4(W[wb + 2u]), i8x4(W[wb + 3u]), i8x4(W[wb + 4u]),
               i8x4(W[wb + 5u]), i8x4(W[wb + 6u]), i8x4(W[wb + 7u]), i8x4(W[wb + 8u]), d, 0.0);
}
