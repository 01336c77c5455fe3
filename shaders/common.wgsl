// Most tokens of a step that each belong to their own sequence (continuous batching).
const MAX_SEQS: u32 = 16u;

// Per-step parameters shared by every kernel of one submission.
struct Step {
    pos0: u32,     // position of the first token of this batch
    n_tok: u32,    // tokens in this batch
    n_pen: u32,    // repetition-penalty ids in use
    penalty: f32,  // repetition penalty (1 = none)
    kv0: u32,      // K/V cache row of position 0 of this batch's sequence (its slot)
    seqs: u32,     // 1: token t is the next of its own sequence, at tok[t] (0: one sequence)
    _pad0: u32,
    _pad1: u32,
    // Per token when seqs = 1: (position, K/V cache row of its sequence's position 0, 0, 0).
    tok: array<vec4<u32>, MAX_SEQS>,
}

// Position of token t of the step.
fn tok_pos(t: u32) -> u32 {
    if (step.seqs != 0u) { return step.tok[t].x; }
    return step.pos0 + t;
}

// K/V cache row holding position 0 of token t's sequence.
fn tok_row0(t: u32) -> u32 {
    if (step.seqs != 0u) { return step.tok[t].y; }
    return step.kv0;
}
