//! One error type for the library: every variant names the file, tensor or argument at fault.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not what it claims to be (bad magic, truncated, inconsistent header).
    #[error("{file}: {msg}")]
    Format { file: String, msg: String },
    #[error("{file}: tensor '{tensor}' has unsupported tensor type {ty}")]
    UnsupportedType {
        file: String,
        tensor: String,
        ty: String,
    },
    #[error("{file}: missing tensor '{tensor}'")]
    MissingTensor { file: String, tensor: String },
    #[error("{file}: tensor '{tensor}' has shape {got:?}, expected {expected:?}")]
    Shape {
        file: String,
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A chat template that does not parse or render (or raised an exception on purpose).
    #[error("chat template: {0}")]
    Template(String),
    /// Bad user input: prompt, token id, argument.
    #[error("{0}")]
    Input(String),
    #[error("GPU: {0}")]
    Gpu(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn format_err(file: &str, msg: impl Into<String>) -> Error {
    Error::Format {
        file: file.to_string(),
        msg: msg.into(),
    }
}
