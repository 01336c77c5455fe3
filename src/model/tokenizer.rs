//! Tokenizer: the `tokenizers` crate, built from tokenizer.json or from GGUF metadata so that a
//! lone .gguf file is enough. Recipe for GGUF "gpt2" vocabularies: BPE from tokens + merges (no byte
//! fallback), the pre-tokenizer that llama.cpp uses for the file's `tokenizer.ggml.pre`, a
//! byte-level decoder, and the control tokens added as special tokens so they match whole.
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
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
        if kind != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "{file}: tokenizer model '{kind}' is not supported yet (only byte-level BPE 'gpt2'); pass a tokenizer.json instead"
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
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                let (a, b) = m
                    .split_once(' ')
                    .ok_or_else(|| Error::Tokenizer(format!("{file}: merge '{m}' has no space")))?;
                Ok((a.to_string(), b.to_string()))
            })
            .collect::<Result<_>>()?;
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
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::Tokenizer(format!("{file}: building BPE: {e}")))?;
        let pre = g
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let byte_level =
            |regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, regex));
        let pre_tok = match pre {
            "smollm" => Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level(true)]),
            "gpt2" | "default" | "gpt-2" => Sequence::new(vec![byte_level(true)]),
            "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "qwen2" => {
                let regex = if pre == "qwen2" { QWEN2_SPLIT } else { LLAMA3_SPLIT };
                let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(tok_err)?;
                Sequence::new(vec![PreTokenizerWrapper::Split(split), byte_level(false)])
            }
            other => {
                return Err(Error::Tokenizer(format!(
                    "{file}: pre-tokenizer '{other}' is not supported yet (smollm, gpt2, llama3, qwen2 are); pass a tokenizer.json instead"
                )))
            }
        };
        let mut t = Tokenizer::new(bpe);
        t.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre_tok)));
        t.with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &ty)| ty == 3)
            .map(|(s, _)| AddedToken::from(s.to_string(), true).normalized(false))
            .collect();
        t.add_special_tokens(special).map_err(tok_err)?;
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
