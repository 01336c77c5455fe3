// bf16 weights packed two per word: a bf16 is the top half of an f32.
const WPB: u32 = 16u;
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
fn b4(wb: u32) -> vec4<f32> {
    let a = W[wb];
    let b = W[wb + 1u];
    return bitcast<vec4<f32>>(vec4<u32>(a << 16u, a & 0xffff0000u, b << 16u, b & 0xffff0000u));
}
fn load_block(wb: u32) -> Blk {
    return Blk(b4(wb), b4(wb + 2u), b4(wb + 4u), b4(wb + 6u), b4(wb + 8u), b4(wb + 10u), b4(wb + 12u), b4(wb + 14u), 1.0, 0.0);
}
