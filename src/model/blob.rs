//! The bytes behind a model file: a memory map natively, an owned buffer, or (in the browser) a
//! stored file read piece by piece through `ReadAt`, so that the GPU upload never holds the
//! whole file in the wasm heap.
use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

#[cfg(not(target_arch = "wasm32"))]
use crate::error::{Error, Result};

/// A file read at offsets rather than held: the browser's stored model files (OPFS through a
/// synchronous access handle). A failed read is the file vanishing under the model, as a
/// truncated file under a memory map natively: `Blob` stops with a message naming the file.
#[allow(clippy::len_without_is_empty)]
pub trait ReadAt: Send + Sync {
    fn len(&self) -> usize;
    /// Fill `out` with the bytes from `at`.
    fn read_at(&self, at: usize, out: &mut [u8]) -> std::result::Result<(), String>;
}

#[derive(Clone)]
enum Source {
    Mem(Arc<dyn AsRef<[u8]> + Send + Sync>),
    /// Read in pieces; `whole` holds every byte once some caller needed them all at once
    /// (`Blob::bytes`: the CPU engines, which compute on the weights where they lie).
    Reader {
        name: Arc<str>,
        r: Arc<dyn ReadAt>,
        whole: Arc<OnceLock<Vec<u8>>>,
    },
}

#[derive(Clone)]
pub struct Blob {
    src: Source,
    /// The same bytes when they are a file map, for `release` (which drops pages on unix
    /// only: elsewhere the map is kept but not read).
    #[cfg(not(target_arch = "wasm32"))]
    #[cfg_attr(not(unix), allow(dead_code))]
    map: Option<Arc<memmap2::Mmap>>,
}

impl Blob {
    fn new(bytes: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Blob {
        Blob {
            src: Source::Mem(bytes),
            #[cfg(not(target_arch = "wasm32"))]
            map: None,
        }
    }

    /// A file read through `r` as its bytes are asked for; `name` names it in messages.
    pub fn from_reader(name: &str, r: Arc<dyn ReadAt>) -> Blob {
        Blob {
            src: Source::Reader {
                name: name.into(),
                r,
                whole: Default::default(),
            },
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
            src: Source::Mem(map.clone()),
            map: Some(map),
        })
    }

    /// Every byte of the file. A read-through file is read whole the first time and kept:
    /// callers that only need part of it use `read`.
    pub fn bytes(&self) -> &[u8] {
        match &self.src {
            Source::Mem(b) => (**b).as_ref(),
            Source::Reader { name, r, whole } => whole.get_or_init(|| {
                let mut v = vec![0u8; r.len()];
                fill(name, r.as_ref(), 0, &mut v);
                v
            }),
        }
    }

    /// The bytes of `range`: borrowed where the file is in memory, else read now.
    pub fn read(&self, range: Range<usize>) -> Cow<'_, [u8]> {
        match &self.src {
            Source::Mem(b) => Cow::Borrowed(&(**b).as_ref()[range]),
            Source::Reader { name, r, whole } => match whole.get() {
                Some(v) => Cow::Borrowed(&v[range]),
                None => {
                    assert!(
                        range.end <= r.len(),
                        "{name}: bytes {range:?} of {}",
                        r.len()
                    );
                    let mut v = vec![0u8; range.len()];
                    fill(name, r.as_ref(), range.start, &mut v);
                    Cow::Owned(v)
                }
            },
        }
    }

    /// The file's length in bytes.
    pub fn len(&self) -> usize {
        match &self.src {
            Source::Mem(b) => (**b).as_ref().len(),
            Source::Reader { r, .. } => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every byte is in memory (or mapped): false for a read-through file not yet
    /// read whole.
    pub fn is_resident(&self) -> bool {
        match &self.src {
            Source::Mem(_) => true,
            Source::Reader { whole, .. } => whole.get().is_some(),
        }
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

/// Read `out.len()` bytes at `at`, stopping with the file named when the read fails (see
/// `ReadAt`).
fn fill(name: &str, r: &dyn ReadAt, at: usize, out: &mut [u8]) {
    if let Err(e) = r.read_at(at, out) {
        panic!("{name}: reading bytes {at}..{} failed: {e}", at + out.len());
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.len())
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
