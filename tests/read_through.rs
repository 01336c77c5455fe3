//! Models whose files are read at offsets (`Blob::from_reader`), as the browser reads its stored
//! copies (OPFS) so that the GPU upload never holds a whole file in the wasm heap: here a
//! reader over the file on disk that counts what is read. On the GPU the model loads and runs
//! without the file ever being read whole (no read larger than the header's first 4 MB or an
//! upload slab, about one pass over the file in all), with the same logits as the mapped file;
//! the CPU engines read it whole first (`Model::make_resident`) and give the mapped file's
//! logits too. A GGUF, a split GGUF, and a TIDE model folder (its memory rows read per row).
mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::repo;
use tide_gpu::engine::{Backend, Engine};
use tide_gpu::memory::MemoryRows;
use tide_gpu::model::blob::ReadAt;
use tide_gpu::model::{self, Blob, ModelFiles};
use tide_gpu::options::Options;

struct Counted {
    f: File,
    len: usize,
    total: AtomicUsize,
    largest: AtomicUsize,
}

impl ReadAt for Counted {
    fn len(&self) -> usize {
        self.len
    }
    fn read_at(&self, at: usize, out: &mut [u8]) -> Result<(), String> {
        self.total.fetch_add(out.len(), Ordering::Relaxed);
        self.largest.fetch_max(out.len(), Ordering::Relaxed);
        self.f
            .read_exact_at(out, at as u64)
            .map_err(|e| e.to_string())
    }
}

fn counted(p: &Path) -> Arc<Counted> {
    let f = File::open(p).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    Arc::new(Counted {
        f,
        len,
        total: AtomicUsize::new(0),
        largest: AtomicUsize::new(0),
    })
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// The model's files, the large ones read through counting readers (`big`), the rest in memory.
fn files(dir_or_file: &[PathBuf], big: &[&str]) -> (ModelFiles, Vec<(Blob, Arc<Counted>)>) {
    let mut readers = Vec::new();
    let mut files = Vec::new();
    for p in dir_or_file {
        let n = name_of(p);
        let blob = if big.contains(&n.as_str()) {
            let r = counted(p);
            let b = Blob::from_reader(&n, r.clone());
            readers.push((b.clone(), r));
            b
        } else {
            Blob::from_vec(std::fs::read(p).unwrap())
        };
        files.push((n, blob));
    }
    let m = ModelFiles {
        source: "read-through".into(),
        files,
    };
    (m, readers)
}

fn logits(e: &mut Engine, seq: &[u32]) -> Vec<Vec<f32>> {
    seq.iter()
        .map(|&t| {
            e.feed(&[t]).unwrap();
            e.logits().unwrap()
        })
        .collect()
}

fn engine(m: &model::Model, backend: Backend) -> Engine {
    let rows = MemoryRows::local(m);
    let mut opts = Options::default();
    opts.decoder.ctx_len = 64;
    // Small upload slabs, as in the browser but smaller still for these small models: a
    // tensor then goes up in many slabs, and reading the whole tensor for each would show.
    opts.gpu.upload_slab_bytes = Some(16 << 10);
    Engine::new(m, &rows, backend, &opts).unwrap().0
}

fn check(paths: Vec<PathBuf>, big: &[&str], mapped: &model::Model) {
    let seq = [1u32, 5, 9, 2, 7, 3, 11, 4];
    let want_gpu = logits(&mut engine(mapped, Backend::Gpu), &seq);
    let want_cpu = logits(&mut engine(mapped, Backend::Cpu), &seq);
    let (mf, readers) = files(&paths, big);
    let m = mf.load().unwrap();
    let mut g = engine(&m, Backend::Gpu);
    let file_bytes: usize = readers.iter().map(|(_, r)| r.len).sum();
    for (b, r) in &readers {
        assert!(!b.is_resident(), "the GPU path read a file whole");
        let largest = r.largest.load(Ordering::Relaxed);
        assert!(largest <= 4 << 20, "a read of {largest} bytes");
    }
    let read: usize = readers
        .iter()
        .map(|(_, r)| r.total.load(Ordering::Relaxed))
        .sum();
    // The header's first read (up to 4 MB: here the whole small file), then each byte about
    // once (the memory's check for non-finite rows reads its tables once more).
    assert!(
        read <= 2 * file_bytes + file_bytes / 10,
        "{read} bytes read for {file_bytes} of files"
    );
    assert_eq!(logits(&mut g, &seq), want_gpu);
    drop(g);
    // The fast CPU backend reads the files whole first, then computes as on the mapped file.
    let mut c = engine(&m, Backend::Cpu);
    assert!(readers.iter().all(|(b, _)| b.is_resident()));
    assert_eq!(logits(&mut c, &seq), want_cpu);
}

#[test]
fn a_gguf_read_through_runs_on_the_gpu_without_being_read_whole() {
    let p = repo().join("tests/fixtures/kquant/tiny.q4_k_m.gguf");
    let mapped = model::load(&p).unwrap();
    check(vec![p.clone()], &["tiny.q4_k_m.gguf"], &mapped);
    let parts: Vec<PathBuf> = (1..=2)
        .map(|i| {
            repo().join(format!(
                "tests/fixtures/split/tiny.q4_k_m-0000{i}-of-00002.gguf"
            ))
        })
        .collect();
    let names: Vec<String> = parts.iter().map(|p| name_of(p)).collect();
    let big: Vec<&str> = names.iter().map(String::as_str).collect();
    check(parts, &big, &mapped);
}

#[test]
fn a_tide_folder_read_through_reads_memory_rows_one_by_one() {
    let dir = repo().join("models/tide-k4");
    let mapped = model::load(&dir).unwrap();
    assert!(mapped.memory.is_some());
    let paths: Vec<PathBuf> = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.exists())
        .collect();
    check(paths, &["model.safetensors"], &mapped);
}
