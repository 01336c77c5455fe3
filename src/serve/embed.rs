//! Embeddings: a text's last hidden states (after the output norm, what the LM head reads)
//! pooled into one vector, L2-normalised, as llama.cpp's embeddings are made; and the body of
//! /v1/embeddings' reply.
use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::tokenizer::TokenizerInfo;
use crate::openai::EmbedInput;
use crate::Engine;

/// How a sequence's hidden states become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over every token.
    Mean,
    /// The last token's (a causal model's summary of the whole text).
    Last,
}

/// Pool `hidden` ([n, dim]) and normalise to unit length (a zero vector stays zero).
pub fn pool(hidden: &[f32], dim: usize, pooling: Pooling) -> Vec<f32> {
    let rows = hidden.chunks_exact(dim);
    let n = rows.len().max(1) as f32;
    let mut v = match pooling {
        Pooling::Last => rows.last().map_or(vec![0.0; dim], <[f32]>::to_vec),
        Pooling::Mean => {
            let mut s = vec![0f32; dim];
            for r in rows {
                s.iter_mut().zip(r).for_each(|(s, x)| *s += x);
            }
            s.iter_mut().for_each(|x| *x /= n);
            s
        }
    };
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// An input's token ids (text with the BOS the model adds), checked against the vocabulary
/// and the context.
pub fn input_ids(
    input: &EmbedInput,
    i: usize,
    tok: &TokenizerInfo,
    vocab: usize,
    ctx_len: usize,
) -> Result<Vec<u32>> {
    let ids = match input {
        EmbedInput::Text(t) => tok.encode(t, true)?,
        EmbedInput::Ids(ids) => ids.clone(),
    };
    if ids.is_empty() {
        return Err(Error::Input(format!("input[{i}] has no tokens")));
    }
    if let Some(t) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::Input(format!(
            "input[{i}]: token id {t} is outside the vocabulary of {vocab}"
        )));
    }
    if ids.len() > ctx_len {
        return Err(Error::Input(format!(
            "input[{i}] has {} tokens but the context holds {ctx_len}",
            ids.len()
        )));
    }
    Ok(ids)
}

/// Embed `ids` in the engine's current slot (started over).
pub async fn embed(engine: &mut Engine, ids: &[u32], pooling: Pooling) -> Result<Vec<f32>> {
    engine.reset();
    let h = engine.feed_hidden_async(ids).await?;
    let dim = h.len() / ids.len().max(1);
    Ok(pool(&h, dim, pooling))
}

/// The reply of /v1/embeddings.
pub fn embeddings_body(model: &str, vectors: &[Vec<f32>], base64: bool, tokens: usize) -> Value {
    let data: Vec<Value> = (vectors.iter().enumerate())
        .map(|(i, v)| {
            let e = match base64 {
                true => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                false => json!(v),
            };
            json!({"object": "embedding", "index": i, "embedding": e})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_and_normalisation() {
        let h = [3.0, 0.0, 0.0, 4.0]; // two tokens of width 2
        let m = pool(&h, 2, Pooling::Mean); // mean (1.5, 2) has length 2.5
        assert!(
            (m[0] - 0.6).abs() < 1e-6 && (m[1] - 0.8).abs() < 1e-6,
            "{m:?}"
        );
        assert_eq!(pool(&h, 2, Pooling::Last), vec![0.0, 1.0]);
        assert_eq!(pool(&[0.0, 0.0], 2, Pooling::Mean), vec![0.0, 0.0]);
        let b = embeddings_body("m", &[vec![1.0, -2.0]], true, 3);
        // 1.0 and -2.0 as little-endian f32: 00 00 80 3f, 00 00 00 c0.
        assert_eq!(b["data"][0]["embedding"], "AACAPwAAAMA=");
        assert_eq!(b["usage"]["prompt_tokens"], 3);
    }
}
