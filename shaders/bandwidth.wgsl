// Device copy bandwidth probe for the roofline figure: each invocation copies 4 vec4s.
@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> B: array<vec4<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (gid.y * nwg.x * 64u + gid.x) * 4u;
    let n = arrayLength(&A);
    for (var k = 0u; k < 4u; k++) {
        if (i + k < n) { B[i + k] = A[i + k]; }
    }
}
