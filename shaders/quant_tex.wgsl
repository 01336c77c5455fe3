// Weights in an rgba32uint texture (binding W): word i is component i % 4 of texel i / 4, and
// TEXW texels make one texture row. CPU adapters (lavapipe) fetch a texel per lane as one
// gather, where a storage-buffer load walks the lanes one 32-bit word at a time: ~7x the rate.
const TEXW: u32 = {{TEXW}}u;
fn texel(t: u32) -> vec4<u32> { return textureLoad(W, vec2<u32>(t % TEXW, t / TEXW), 0); }
// Words o..o+3 of the eight words a ++ b (o < 4): blocks of 5 or 9 words straddle texels.
fn pick4(a: vec4<u32>, b: vec4<u32>, o: u32) -> vec4<u32> {
    let r1 = vec4<u32>(a.yzw, b.x);
    let r2 = vec4<u32>(a.zw, b.xy);
    let r3 = vec4<u32>(a.w, b.xyz);
    return select(select(select(a, r1, o == 1u), r2, o == 2u), r3, o == 3u);
}
fn pick1(a: vec4<u32>, o: u32) -> u32 {
    return select(select(select(a.x, a.y, o == 1u), a.z, o == 2u), a.w, o == 3u);
}
// Words wb..wb+4: the 5-word blocks of Q4_0 and Q4_1 (two fetches).
struct Words5 { w: vec4<u32>, e: u32 }
fn words5(wb: u32) -> Words5 {
    return words5_of(texel(wb / 4u), texel(wb / 4u + 1u), wb);
}
// The same from its two texels a = texel(wb / 4), b = texel(wb / 4 + 1), fetched elsewhere
// (matmul.wgsl's SGW: a subgroup's lanes fetch them for each other).
fn words5_of(a: vec4<u32>, b: vec4<u32>, wb: u32) -> Words5 {
    let o = wb % 4u;
    return Words5(pick4(a, b, o), pick1(b, o));
}
// Words wb..wb+5: the 6-word blocks of Q5_0 and Q5_1. Blocks start at even words (rows hold
// whole blocks), so they take two texels at offset 0 or 2.
struct Words6 { w: vec4<u32>, e: vec2<u32> }
fn words6(wb: u32) -> Words6 {
    let a = texel(wb / 4u);
    let b = texel(wb / 4u + 1u);
    if (wb % 4u == 0u) { return Words6(a, b.xy); }
    return Words6(vec4<u32>(a.zw, b.xy), b.zw);
}
// Words n, n+1 and words n..n+3 at an even n: one texel, or two when n % 4 == 2 (Q4_K's pairs).
fn pair_at(n: u32) -> vec2<u32> {
    let a = texel(n / 4u);
    return select(a.xy, a.zw, n % 4u == 2u);
}
fn quad_at(n: u32) -> vec4<u32> {
    let a = texel(n / 4u);
    if (n % 4u == 0u) { return a; }
    let b = texel(n / 4u + 1u);
    return vec4<u32>(a.zw, b.xy);
}
