//! Structured output: a JSON schema (or "any JSON object") becomes a token mask at every step,
//! computed by llguidance (a maintained constraint engine) over the model's vocabulary as
//! bytes. The scheduler masks the logits (or filters the GPU's top-k candidates) with it and
//! feeds each chosen token back.
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::tokenizer::TokenizerInfo;
pub use crate::openai::Format;

/// The model's vocabulary as llguidance reads it, and the factory of its parsers: made once
/// per model, at the first request that needs it.
pub struct Grammar {
    factory: Arc<ParserFactory>,
}

/// A request's constraint: where its output is in the grammar.
pub struct Constraint {
    matcher: Matcher,
}

impl Grammar {
    /// The grammar engine for `tok`'s vocabulary in a model of `vocab` logits (ids past the
    /// tokenizer's are never allowed).
    pub fn new(tok: &TokenizerInfo, vocab: usize) -> Result<Grammar> {
        let t = tok.get()?;
        let json: Value = serde_json::from_str(
            &t.to_string(false)
                .map_err(|e| Error::Tokenizer(format!("the tokenizer as JSON: {e}")))?,
        )
        .map_err(|e| Error::Tokenizer(format!("the tokenizer as JSON: {e}")))?;
        let odd = (json["model"]["vocab"].as_object().into_iter().flatten())
            .find(|(k, _)| k.starts_with("<0x") && k.len() != 6);
        if let Some((k, _)) = odd {
            return Err(Error::Tokenizer(format!(
                "structured output: the token {k:?} looks like a byte token but is not one"
            )));
        }
        let mut words = llguidance::token_bytes_from_tokenizer_json(&json)
            .map_err(|e| Error::Tokenizer(format!("structured output: {e}")))?;
        if words.len() > vocab {
            return Err(Error::Tokenizer(format!(
                "structured output: the tokenizer has {} tokens, the model {vocab} logits",
                words.len()
            )));
        }
        // Ids the tokenizer lacks (a padded vocabulary): special, so never allowed in text.
        for (i, w) in words.iter_mut().enumerate() {
            if w.is_empty() {
                *w = [
                    &[TokTrie::SPECIAL_TOKEN_MARKER][..],
                    format!("<unused{i}>").as_bytes(),
                ]
                .concat();
            }
        }
        while words.len() < vocab {
            let i = words.len();
            words.push(
                [
                    &[TokTrie::SPECIAL_TOKEN_MARKER][..],
                    format!("<unused{i}>").as_bytes(),
                ]
                .concat(),
            );
        }
        let eos = *tok.eos.first().ok_or_else(|| {
            Error::Tokenizer("structured output needs an end-of-sequence token".into())
        })?;
        let info = TokRxInfo::new(vocab as u32, eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)));
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| Error::Tokenizer(format!("structured output: {e}")))?;
        factory.quiet();
        Ok(Grammar {
            factory: Arc::new(factory),
        })
    }

    /// The constraint of `format`; an error names what the schema has that is not supported.
    pub fn constrain(&self, format: &Format) -> std::result::Result<Constraint, String> {
        let mut schema = match format {
            Format::JsonObject => json!({"type": "object"}),
            Format::JsonSchema(s) => s.clone(),
        };
        set_layout(&mut schema);
        self.matcher(TopLevelGrammar::from_json_schema(schema))
            .map_err(|e| format!("the JSON schema cannot be used: {e}"))
    }

    /// The constraint of a Lark grammar (llguidance's dialect: forced tool calls,
    /// `serve::tools`); an error names what cannot be used.
    pub fn constrain_lark(&self, lark: &str) -> std::result::Result<Constraint, String> {
        self.matcher(TopLevelGrammar::from_lark(lark.to_string()))
            .map_err(|e| format!("the tools' parameters cannot be used: {e}"))
    }

    fn matcher(&self, g: TopLevelGrammar) -> std::result::Result<Constraint, String> {
        let parser = self.factory.create_parser(g).map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(e);
        }
        Ok(Constraint { matcher })
    }
}

impl Constraint {
    /// The tokens allowed next (only the end-of-sequence token once the value is complete).
    pub fn mask(&mut self) -> Result<SimpleVob> {
        self.matcher
            .compute_mask_or_eos()
            .map_err(|e| Error::Input(format!("structured output: {e}")))
    }

    /// `token` was chosen (from the mask). Once the value is complete (the mask held only the
    /// end of sequence), there is nothing more to follow.
    pub fn accept(&mut self, token: u32) -> Result<()> {
        if self.matcher.is_stopped() {
            return Ok(());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| Error::Input(format!("structured output: {e}")))
    }
}

/// Lay out JSON by `schema` with one space after ',' and ':' and none elsewhere (unless it
/// says otherwise): a small model allowed any whitespace between values can emit newlines
/// until max_tokens.
pub fn set_layout(schema: &mut Value) {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert(json!({
            "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "
        }));
    }
}

/// `logits` with every token the mask refuses at minus infinity.
pub fn apply(mask: &SimpleVob, logits: &mut [f32]) {
    for (t, l) in logits.iter_mut().enumerate() {
        if !mask.is_allowed(t as u32) {
            *l = f32::NEG_INFINITY;
        }
    }
}
