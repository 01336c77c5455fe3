//! A quick start on CPU adapters. matvec_rows' unrolled form is the fastest one-token kernel
//! there, but llvmpipe compiles it slowly, at its first dispatch: SmolLM2's three take 5-7 s
//! each, most of a cold start (`tide kernels --compile-times`). Its loop form compiles in
//! ~0.1 s and gives the same bits (tests/kernels.rs checks), but decodes ~35% slower. So a
//! decoder starts on the loop forms and compiles the unrolled ones once it has run
//! UPGRADE_AFTER_STEPS single-token steps (a long generation, a chat, a server), or when a
//! benchmark asks (`GpuDecoder::finish_compiles`). The choice never changes a result, only
//! when the faster kernels start. (A background thread does not help: lavapipe compiles on
//! its queue, at the first dispatch.)
use super::pipelines::KernelKey;
use crate::gpu::Defines;

/// Single-token steps after which the deferred fast forms are compiled: short runs never pay
/// for them; long ones pay once (seconds on a cold shader cache, well under one on a warm).
pub const UPGRADE_AFTER_STEPS: usize = 64;

/// The defines to compile now in place of `key`'s when its own form is slow to compile.
pub(super) fn quick_twin(key: &KernelKey) -> Option<Defines> {
    let (shader, _, defs) = key;
    (shader == "matvec_rows" && !defs.0.contains_key("LOOP"))
        .then(|| defs.clone().flag("LOOP", true))
}
