// Per-step parameters shared by every kernel of one submission.
struct Step {
    pos0: u32,     // position of the first token of this batch
    n_tok: u32,    // tokens in this batch
    n_pen: u32,    // repetition-penalty ids in use
    penalty: f32,  // repetition penalty (1 = none)
}
