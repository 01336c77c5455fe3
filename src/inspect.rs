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
    })
}
