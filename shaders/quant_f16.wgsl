// f16 weights packed two per word (portable: no shader-f16 needed); 16 words per 32 elements.
const WPB: u32 = 16u;
struct Blk { q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>, q7: vec4<f32>, d: f32, m: f32 }
fn h4(wb: u32) -> vec4<f32> { return vec4<f32>(unpack2x16float(W[wb]), unpack2x16float(W[wb + 1u])); }
fn load_block(wb: u32) -> Blk {
    return Blk(h4(wb), h4(wb + 2u), h4(wb + 4u), h4(wb + 6u), h4(wb + 8u), h4(wb + 10u), h4(wb + 12u), h4(wb + 14u), 1.0, 0.0);
}
