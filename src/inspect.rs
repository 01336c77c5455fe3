//! Router weights of every token at every layer (what `tide inspect` and the browser's
//! inspection page show), read from the decoder's per-layer hooks.
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::tokenizer::TokenizerInfo;

/// The shape `tide inspect --json` prints: weights[token][layer][slot], slot K = NULL.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    pub model: String,
    pub tokens: Vec<u32>,
    pub pieces: Vec<String>,
    pub k: usize,
    pub layers: usize,
    pub weights: Vec<Vec<Vec<f32>>>,
    /// How often each token was seen in training (tide.token_counts), when the model has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_counts: Option<Vec<u64>>,
    /// Each token's training-frequency decile over the whole vocabulary (0 = rarest; `tide
    /// eval`'s definition, docs/format.md), when the model has counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_deciles: Option<Vec<u8>>,
}

impl Inspection {
    /// Add the tokens' training counts and frequency deciles from the model's `counts`.
    pub fn with_counts(mut self, counts: Option<&[u64]>) -> Self {
        if let Some(c) = counts {
            let dec = crate::frequency::deciles(c);
            let at = |t: u32| t as usize;
            self.token_counts = Some(
                self.tokens
                    .iter()
                    .map(|&t| c.get(at(t)).copied().unwrap_or(0))
                    .collect(),
            );
            self.token_deciles = Some(
                self.tokens
                    .iter()
                    .map(|&t| dec.get(at(t)).copied().unwrap_or(0))
                    .collect(),
            );
        }
        self
    }
}

/// The tokens of `text` to inspect, refused when the model has no router or the text none.
pub fn tokens_to_inspect(
    tok: &TokenizerInfo,
    k: usize,
    name: &str,
    text: &str,
) -> Result<Vec<u32>> {
    if k == 0 {
        return Err(Error::Input(format!(
            "{name}: the model has no TIDE memory (K = 0): there are no router weights to inspect"
        )));
    }
    let ids = tok.encode(text, true)?;
    if ids.is_empty() {
        return Err(Error::Input("the text is empty: nothing to inspect".into()));
    }
    Ok(ids)
}

/// Run `ids` from the start and collect the router weights of every position.
pub async fn inspect(
    engine: &mut Engine,
    tok: &TokenizerInfo,
    name: &str,
    ids: &[u32],
    ctx_len: usize,
) -> Result<Inspection> {
    if ids.len() > ctx_len {
        return Err(Error::Input(format!(
            "the text has {} tokens but the context holds {ctx_len}; shorten it",
            ids.len()
        )));
    }
    let k = engine.memory_k();
    let layers = engine.layers();
    engine.reset();
    let (_, w) = engine.feed_all_async(ids).await?;
    engine.reset();
    let pieces = ids
        .iter()
        .map(|&i| tok.decode(&[i]).unwrap_or_default())
        .collect();
    let weights = w
        .chunks_exact(layers * (k + 1))
        .map(|t| t.chunks_exact(k + 1).map(|s| s.to_vec()).collect())
        .collect();
    Ok(Inspection {
        model: name.to_string(),
        tokens: ids.to_vec(),
        pieces,
        k,
        layers,
        weights,
        token_counts: None,
        token_deciles: None,
    })
}
