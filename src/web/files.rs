//! The files a page hands the wasm session (web/worker.js fills them): a `FileBuffer` holds a
//! file in the wasm heap, written chunk by chunk as it downloads; a `StoredFile` is the
//! browser's stored copy (OPFS) read through at offsets, so that the GPU upload never holds the
//! file whole in the heap; a `HashSink` takes the sha256 of a file passing by on its way to the
//! store. `FileSet` gathers one model's files for `openSession`.
use std::ops::Range;
use std::sync::Arc;

use send_wrapper::SendWrapper;
use sha2::Digest;
use wasm_bindgen::prelude::*;

use super::js_err;
use crate::error::{Error, Result};
use crate::model::blob::ReadAt;
use crate::model::Blob;

/// How far a file has come in, in order, and the sha256 of what came.
struct Intake {
    name: String,
    len: usize,
    filled: usize,
    sha256: sha2::Sha256,
}

impl Intake {
    fn new(name: String, len: usize) -> Intake {
        Intake {
            name,
            len,
            filled: 0,
            sha256: Default::default(),
        }
    }

    /// Take `chunk` at `offset`, which must follow what came before: where it goes.
    fn take(&mut self, offset: f64, chunk: &[u8]) -> std::result::Result<Range<usize>, JsValue> {
        let (at, end) = (offset as usize, offset as usize + chunk.len());
        if at != self.filled || end > self.len {
            return Err(js_err(Error::Input(format!(
                "{}: bytes {at}..{end} do not follow the {} received of {}",
                self.name, self.filled, self.len
            ))));
        }
        self.sha256.update(chunk);
        self.filled = end;
        Ok(at..end)
    }

    fn rewind(&mut self) {
        self.filled = 0;
        self.sha256 = Default::default();
    }

    fn hex(&self) -> String {
        let d = self.sha256.clone().finalize();
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One model file, written into the wasm heap chunk by chunk as it downloads (or as it is read
/// from the browser's store), so that no JS copy of the whole file exists beside it; its
/// sha256 is taken on the way in, so checking the file costs no second pass.
#[wasm_bindgen]
pub struct FileBuffer {
    data: Vec<u8>,
    intake: Intake,
}

#[wasm_bindgen]
impl FileBuffer {
    /// Room for `len` bytes of the file `name`; refused with the file named when the wasm heap
    /// cannot hold it.
    #[wasm_bindgen(constructor)]
    pub fn new(name: String, len: f64) -> std::result::Result<FileBuffer, JsValue> {
        let n = len as usize;
        if len.is_nan() || len < 0.0 || n as f64 != len {
            return Err(js_err(Error::Input(format!("{name}: bad length {len}"))));
        }
        let mut data = Vec::new();
        data.try_reserve_exact(n).map_err(|_| {
            js_err(Error::Input(format!(
                "{name}: {n} bytes do not fit in this page's memory (wasm32 holds at most 4 GiB)"
            )))
        })?;
        data.resize(n, 0);
        Ok(FileBuffer {
            data,
            intake: Intake::new(name, n),
        })
    }

    /// Copy `chunk` in at byte `offset`; chunks must arrive in order, without gaps.
    pub fn write(&mut self, offset: f64, chunk: &[u8]) -> std::result::Result<(), JsValue> {
        let r = self.intake.take(offset, chunk)?;
        self.data[r].copy_from_slice(chunk);
        Ok(())
    }

    /// Start over from byte 0 (a server that answered a resumed download with the whole file).
    pub fn rewind(&mut self) {
        self.intake.rewind()
    }

    /// The file's bytes (those received so far, and zeros after them).
    pub(super) fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Bytes received so far.
    pub fn filled(&self) -> f64 {
        self.intake.filled as f64
    }

    /// The hex sha256 of the bytes received so far.
    pub fn sha256(&self) -> String {
        self.intake.hex()
    }
}

/// The sha256 of a file that goes to the browser's store rather than the heap: the same calls
/// as a `FileBuffer` (the worker's downloads write to either), keeping no bytes.
#[wasm_bindgen]
pub struct HashSink(Intake);

#[wasm_bindgen]
impl HashSink {
    #[wasm_bindgen(constructor)]
    pub fn new(name: String, len: f64) -> HashSink {
        HashSink(Intake::new(name, len as usize))
    }

    pub fn write(&mut self, offset: f64, chunk: &[u8]) -> std::result::Result<(), JsValue> {
        self.0.take(offset, chunk).map(|_| ())
    }

    pub fn rewind(&mut self) {
        self.0.rewind()
    }

    pub fn filled(&self) -> f64 {
        self.0.filled as f64
    }

    pub fn sha256(&self) -> String {
        self.0.hex()
    }
}

#[wasm_bindgen]
extern "C" {
    /// A stored model file as web/worker.js hands it over: `{size, readAt(at, len), close()}`
    /// over an OPFS synchronous access handle.
    pub type StoredFile;
    #[wasm_bindgen(method, getter)]
    fn size(this: &StoredFile) -> f64;
    #[wasm_bindgen(method, catch, js_name = readAt)]
    fn read_at(this: &StoredFile, at: f64, len: f64) -> std::result::Result<Vec<u8>, JsValue>;
    #[wasm_bindgen(method)]
    fn close(this: &StoredFile);
}

/// A `StoredFile` as a `ReadAt`. JS objects stay on the thread that made them: the GPU path
/// reads on the worker's thread, and the CPU engines read the file whole there first
/// (`Model::make_resident`), so no pool thread ever touches it (SendWrapper would stop one).
struct JsReader {
    file: SendWrapper<StoredFile>,
    len: usize,
}

impl ReadAt for JsReader {
    fn len(&self) -> usize {
        self.len
    }

    /// In pieces of at most 16 MB: a whole file read for the CPU engines then costs the heap
    /// one piece beside `out`, not a second copy of the file.
    fn read_at(&self, at: usize, out: &mut [u8]) -> std::result::Result<(), String> {
        const PIECE: usize = 16 << 20;
        for (i, o) in out.chunks_mut(PIECE).enumerate() {
            let from = at + i * PIECE;
            let got = self
                .file
                .read_at(from as f64, o.len() as f64)
                .map_err(|e| e.as_string().unwrap_or_else(|| format!("{e:?}")))?;
            if got.len() != o.len() {
                return Err(format!("{} of {} bytes read at {from}", got.len(), o.len()));
            }
            o.copy_from_slice(&got);
        }
        Ok(())
    }
}

impl Drop for JsReader {
    /// The store's file is released for other loads once the model is gone.
    fn drop(&mut self) {
        if self.file.valid() {
            self.file.close();
        }
    }
}

enum Entry {
    Buffer(FileBuffer),
    Stored(String, StoredFile),
}

/// The files of one model, handed over one by one.
#[wasm_bindgen]
#[derive(Default)]
pub struct FileSet {
    files: Vec<Entry>,
}

#[wasm_bindgen]
impl FileSet {
    #[wasm_bindgen(constructor)]
    pub fn new() -> FileSet {
        FileSet::default()
    }

    /// A file in the heap (the buffer moves in).
    pub fn add(&mut self, file: FileBuffer) {
        self.files.push(Entry::Buffer(file));
    }

    /// A stored file, read through at offsets as the model needs its bytes.
    #[wasm_bindgen(js_name = addStored)]
    pub fn add_stored(&mut self, name: String, file: StoredFile) {
        self.files.push(Entry::Stored(name, file));
    }
}

impl FileSet {
    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Each file by name as a `Blob`: a heap buffer moved (not copied), a stored file read
    /// through. A buffer that did not fill is refused by name.
    pub(super) fn into_blobs(self) -> Result<Vec<(String, Blob)>> {
        let mut out = Vec::with_capacity(self.files.len());
        for f in self.files {
            out.push(match f {
                Entry::Buffer(b) => {
                    let i = b.intake;
                    if i.filled != i.len {
                        return Err(Error::Input(format!(
                            "{}: only {} of {} bytes arrived",
                            i.name, i.filled, i.len
                        )));
                    }
                    (i.name, Blob::from_vec(b.data))
                }
                Entry::Stored(name, file) => {
                    let len = file.size() as usize;
                    let r = JsReader {
                        file: SendWrapper::new(file),
                        len,
                    };
                    let blob = Blob::from_reader(&name, Arc::new(r));
                    (name, blob)
                }
            });
        }
        Ok(out)
    }
}
