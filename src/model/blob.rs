//! The bytes behind a model file: a memory map natively, an owned buffer elsewhere.
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Blob {
    bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
    /// The same bytes when they are a file map, for `release` (which drops pages on unix
    /// only: elsewhere the map is kept but not read).
    #[cfg(not(target_arch = "wasm32"))]
    #[cfg_attr(not(unix), allow(dead_code))]
    map: Option<Arc<memmap2::Mmap>>,
}

impl Blob {
    fn new(bytes: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Blob {
        Blob {
            bytes,
            #[cfg(not(target_arch = "wasm32"))]
            map: None,
        }
    }

    pub fn from_vec(v: Vec<u8>) -> Blob {
        Blob::new(Arc::new(v))
    }

    /// Bytes compiled into the binary (the embedded default model).
    pub fn from_static(b: &'static [u8]) -> Blob {
        Blob::new(Arc::new(b))
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
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?);
        Ok(Blob {
            bytes: map.clone(),
            map: Some(map),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        (*self.bytes).as_ref()
    }

    /// Let the OS drop the resident pages of `range` (whole pages inside it) once they have
    /// been copied to the GPU: a file map's pages count as the process's memory until then.
    /// The bytes stay readable; a later read faults them in from the file again.
    pub fn release(&self, range: std::ops::Range<usize>) {
        self.drop_pages(range, false)
    }

    /// `release`, but of every page `range` touches, whole or not: for bytes read once and
    /// kept elsewhere (memory rows, which the row cache holds). A neighbour on a shared page
    /// is read back from the file if it is wanted again.
    pub fn release_touched(&self, range: std::ops::Range<usize>) {
        self.drop_pages(range, true)
    }

    fn drop_pages(&self, range: std::ops::Range<usize>, outward: bool) {
        #[cfg(all(unix, not(target_arch = "wasm32")))]
        if let Some(map) = &self.map {
            const PAGE: usize = 4096;
            let (a, b) = if outward {
                (
                    range.start / PAGE * PAGE,
                    (range.end.div_ceil(PAGE) * PAGE).min(map.len()),
                )
            } else {
                (range.start.div_ceil(PAGE) * PAGE, range.end / PAGE * PAGE)
            };
            if a < b && b <= map.len() {
                // SAFETY: a read-only shared file map; MADV_DONTNEED only drops clean pages,
                // which the kernel reads back from the file on the next access.
                let _ = unsafe {
                    map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, b - a)
                };
            }
        }
        #[cfg(not(all(unix, not(target_arch = "wasm32"))))]
        let _ = (range, outward);
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.bytes().len())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// Released pages of a file map read back the same bytes (from the file).
    #[test]
    fn released_pages_read_back_the_file() {
        let path = std::env::temp_dir().join(format!("tide-blob-{}.bin", std::process::id()));
        let data: Vec<u8> = (0..5 * 4096u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let b = Blob::map(&path).unwrap();
        assert_eq!(b.bytes(), &data[..]);
        b.release(100..4 * 4096 + 5);
        b.release(0..data.len());
        assert_eq!(b.bytes(), &data[..]);
        std::fs::remove_file(&path).unwrap();
    }
}
