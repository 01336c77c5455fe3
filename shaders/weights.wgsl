// Binding 1 of every kernel that decodes weight blocks: storage words, or an rgba32uint texture
// (TEX, the layout CPU adapters get; see quant_tex).
#if TEX
@group(0) @binding(1) var W: texture_2d<u32>;
#else
@group(0) @binding(1) var<storage, read> W: array<u32>;
#endif
