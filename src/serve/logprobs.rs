//! Log-probabilities of the chosen tokens and their most likely alternatives, as the
//! OpenAI API reports them.
use crate::model::tokenizer::TokenizerInfo;

/// One token's log-probability (natural log, of the model's distribution before sampling) and
/// the most likely alternatives at its step.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// Log-softmax of `logits` at `token`, and the `n` most likely tokens with theirs.
pub fn token_logprob(tok: &TokenizerInfo, logits: &[f32], token: u32, n: usize) -> TokenLogprob {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let piece = |t: u32| tok.decode(&[t]).unwrap_or_default();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let n = n.min(order.len());
    if n > 0 {
        order.select_nth_unstable_by(n - 1, |a, b| {
            logits[*b as usize].total_cmp(&logits[*a as usize])
        });
    }
    let mut top: Vec<u32> = order[..n].to_vec();
    top.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    TokenLogprob {
        token: piece(token),
        logprob: logits[token as usize] - lse,
        top: top
            .into_iter()
            .map(|t| (piece(t), logits[t as usize] - lse))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_and_the_most_likely_alternatives() {
        let tok = TokenizerInfo::none();
        // Equal logits: each token has probability 1/4.
        let l = token_logprob(&tok, &[3.0; 4], 2, 2);
        assert!((l.logprob - (0.25f32).ln()).abs() < 1e-6);
        assert_eq!(l.top.len(), 2);
        // A formula: softmax([0, ln 3]) = [1/4, 3/4]; the alternatives most likely first.
        let l = token_logprob(&tok, &[0.0, 3f32.ln()], 0, 5);
        assert!((l.logprob - (0.25f32).ln()).abs() < 1e-6);
        let p: Vec<f32> = l.top.iter().map(|(_, p)| p.exp()).collect();
        assert!(
            (p[0] - 0.75).abs() < 1e-6 && (p[1] - 0.25).abs() < 1e-6,
            "{p:?}"
        );
    }
}
