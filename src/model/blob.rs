//! The bytes behind a model file: a memory map natively, an owned buffer elsewhere.
use std::sync::Arc;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Blob(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl Blob {
    pub fn from_vec(v: Vec<u8>) -> Blob {
        Blob(Arc::new(v))
    }

    /// Bytes compiled into the binary (the embedded default model).
    pub fn from_static(b: &'static [u8]) -> Blob {
        Blob(Arc::new(b))
    }

    /// Memory-map a file read-only; nothing is copied.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn map(path: &std::path::Path) -> Result<Blob> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; model files are not expected to change while loaded.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok(Blob(Arc::new(map)))
    }

    pub fn bytes(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.bytes().len())
    }
}
