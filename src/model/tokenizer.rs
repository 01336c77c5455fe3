//! Tokenizer: the `tokenizers` crate, built from tokenizer.json or from GGUF metadata so that a
//! lone .gguf file is enough. Recipe for GGUF "gpt2" vocabularies: BPE from tokens + merges (no byte
//! fallback), the pre-tokenizer that llama.cpp uses for the file's `tokenizer.ggml.pre`, a
//! byte-level decoder, and the control tokens added as special tokens so they match whole.
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, Sequence as NormSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf::GgufFile;
use crate::error::{Error, Result};

/// Everything about text <-> ids a model file carries.
#[derive(Clone)]
pub struct TokenizerInfo {
    /// None when the model came without one (e.g. safetensors without tokenizer.json).
    pub tokenizer: Option<Tokenizer>,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for TokenizerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizerInfo")
            .field("loaded", &self.tokenizer.is_some())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

/// The pre-tokenizer regexes of llama.cpp's `llama3` and `qwen2` (Qwen2, Qwen2.5, Qwen3): the
/// same but for digits, split in runs of up to 3 or one by one.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl TokenizerInfo {
    pub fn none() -> TokenizerInfo {
        TokenizerInfo {
            tokenizer: None,
            bos: None,
            eos: vec![],
            add_bos: false,
            chat_template: None,
        }
    }

    pub fn from_gguf(g: &GgufFile) -> Result<TokenizerInfo> {
        let file = &g.name;
        let id = |k: &str| g.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
        let mut info = TokenizerInfo {
            tokenizer: None,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id").into_iter().collect(),
            add_bos: g
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            chat_template: g
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(String::from),
        };
        if let Some(e) = id("tokenizer.ggml.eot_token_id") {
            if !info.eos.contains(&e) {
                info.eos.push(e);
            }
        }
        let Some(kind) = g.get("tokenizer.ggml.model").and_then(|v| v.as_str()) else {
            return Ok(info);
        };
        if !matches!(kind, "gpt2" | "llama") {
            return Err(Error::Tokenizer(format!(
                "{file}: tokenizer model '{kind}' is not supported (gpt2 and llama are); pass a tokenizer.json instead"
            )));
        }
        let strings = |k: &str| -> Result<Vec<&str>> {
            let a = g
                .get(k)
                .and_then(|v| v.as_array())
                .ok_or_else(|| Error::Tokenizer(format!("{file}: missing {k}")))?;
            a.iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| Error::Tokenizer(format!("{file}: {k} holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match g
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
        {
            Some(a) => a
                .iter()
                .map(|v| v.as_u64().map(|x| x as i64).unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let pre = g
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        // llama.cpp's defaults where the file does not say: BOS for SentencePiece and llama3.
        let bos_default = kind == "llama" || LLAMA3_PRE.contains(&pre);
        info.add_bos = g
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(bos_default);
        let mut t = match kind {
            "gpt2" => {
                let merges = strings("tokenizer.ggml.merges")?;
                byte_level_bpe(file, &tokens, &merges, pre)?
            }
            // "llama" (the only other kind let through above): SentencePiece.
            _ => {
                let scores: Vec<f32> =
                    match g.get("tokenizer.ggml.scores").and_then(|v| v.as_array()) {
                        Some(a) => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
                        None => {
                            return Err(Error::Tokenizer(format!(
                                "{file}: missing tokenizer.ggml.scores"
                            )))
                        }
                    };
                let space_prefix = g
                    .get("tokenizer.ggml.add_space_prefix")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true);
                let unk = id("tokenizer.ggml.unknown_token_id")
                    .or_else(|| types.iter().position(|&ty| ty == 2).map(|i| i as u32));
                sentencepiece_bpe(file, &tokens, &scores, unk, space_prefix)?
            }
        };
        // Control tokens, and those that llama.cpp treats as end of generation (and so as
        // control) whatever type the file gives them, match whole and never merge.
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(s, &ty)| ty == 3 || END_OF_GENERATION.contains(s))
            .map(|(s, _)| AddedToken::from(s.to_string(), true).normalized(false))
            .collect();
        t.add_special_tokens(special).map_err(tok_err)?;
        for (i, s) in tokens.iter().enumerate() {
            if END_OF_GENERATION.contains(s) && !info.eos.contains(&(i as u32)) {
                info.eos.push(i as u32);
            }
        }
        let user: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &ty)| ty == 4)
            .map(|(s, _)| AddedToken::from(s.to_string(), false).normalized(false))
            .collect();
        if !user.is_empty() {
            t.add_tokens(user).map_err(tok_err)?;
        }
        info.tokenizer = Some(t);
        Ok(info)
    }

    /// From tokenizer.json bytes (+ ids from config.json, given by the caller).
    pub fn from_json(name: &str, bytes: &[u8]) -> Result<Tokenizer> {
        Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer(format!("{name}: {e}")))
    }

    pub fn get(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::Tokenizer("this model has no tokenizer (add tokenizer.json next to it)".into())
        })
    }

    /// Text to ids, special tokens matched whole, BOS prepended when the model asks for it.
    pub fn encode(&self, text: &str, with_bos: bool) -> Result<Vec<u32>> {
        let enc = self.get()?.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if with_bos && self.add_bos {
            if let Some(b) = self.bos {
                ids.push(b);
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.get()?.decode(ids, false).map_err(tok_err)
    }

    pub fn piece(&self, id: u32) -> String {
        self.decode(&[id]).unwrap_or_default()
    }
}

/// `tokenizer.ggml.pre` names that llama.cpp runs as Llama 3's pre-tokenizer.
const LLAMA3_PRE: &[&str] = &["llama3", "llama-v3", "llama-bpe"];

/// Token texts llama.cpp ends generation at (and treats as control tokens) in any vocabulary.
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
    "<EOT>",
];

/// A GGUF "gpt2" vocabulary: BPE from tokens + merges (no byte fallback), the pre-tokenizer
/// llama.cpp uses for `pre`, and a byte-level decoder.
fn byte_level_bpe(file: &str, tokens: &[&str], merges: &[&str], pre: &str) -> Result<Tokenizer> {
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| Error::Tokenizer(format!("{file}: merge '{m}' has no space")))?;
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<Result<_>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    // Llama 3: a pre-tokenized word that is itself a token is taken whole, merges or not.
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(LLAMA3_PRE.contains(&pre))
        .build()
        .map_err(|e| Error::Tokenizer(format!("{file}: building BPE: {e}")))?;
    let byte_level =
        |regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, regex));
    let regex_split = |regex: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(
            SplitPattern::Regex(regex.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(tok_err)?;
        Ok(PreTokenizerWrapper::Split(split))
    };
    let pre_tok = match pre {
        "smollm" => Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level(true)]),
        "gpt2" | "default" | "gpt-2" => Sequence::new(vec![byte_level(true)]),
        "qwen2" => Sequence::new(vec![regex_split(QWEN2_SPLIT)?, byte_level(false)]),
        p if LLAMA3_PRE.contains(&p) => Sequence::new(vec![regex_split(LLAMA3_SPLIT)?, byte_level(false)]),
        other => {
            return Err(Error::Tokenizer(format!(
                "{file}: pre-tokenizer '{other}' is not supported yet (smollm, gpt2, llama3, qwen2 are); pass a tokenizer.json instead"
            )))
        }
    };
    let mut t = Tokenizer::new(bpe);
    t.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre_tok)));
    t.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(t)
}

/// A GGUF "llama" (SentencePiece) vocabulary, as llama.cpp tokenizes it: spaces become U+2581
/// with one prepended (`space_prefix`), then the adjacent pair whose joined text is the
/// highest-scored token merges first, and characters with no token fall back to <0xXX> bytes.
/// That is BPE with every such pair as a merge, ranked by the joined token's score.
fn sentencepiece_bpe(
    file: &str,
    tokens: &[&str],
    scores: &[f32],
    unk: Option<u32>,
    space_prefix: bool,
) -> Result<Tokenizer> {
    if scores.len() != tokens.len() {
        return Err(Error::Tokenizer(format!(
            "{file}: {} scores for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let mut merges: Vec<(f32, u32, String, String)> = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        for (cut, _) in tok.char_indices().skip(1) {
            let (a, b) = tok.split_at(cut);
            if vocab.contains_key(a) && vocab.contains_key(b) {
                merges.push((scores[id], id as u32, a.to_string(), b.to_string()));
            }
        }
    }
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let merges = merges.into_iter().map(|(_, _, a, b)| (a, b)).collect();
    let mut b = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(u) = unk.and_then(|u| tokens.get(u as usize)) {
        b = b.unk_token(u.to_string());
    }
    let bpe = b
        .build()
        .map_err(|e| Error::Tokenizer(format!("{file}: building SentencePiece BPE: {e}")))?;
    let mut norm = vec![];
    if space_prefix {
        norm.push(NormalizerWrapper::Prepend(Prepend::new("\u{2581}".into())));
    }
    norm.push(NormalizerWrapper::Replace(
        Replace::new(" ", "\u{2581}").map_err(tok_err)?,
    ));
    let mut t = Tokenizer::new(bpe);
    t.with_normalizer(Some(NormalizerWrapper::Sequence(NormSequence::new(norm))))
        .map_err(tok_err)?;
    t.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(vec![
        DecoderWrapper::Replace(Replace::new("\u{2581}", " ").map_err(tok_err)?),
        DecoderWrapper::ByteFallback(ByteFallback::default()),
        DecoderWrapper::Fuse(Fuse::default()),
    ]))));
    Ok(t)
}
