//! The check before a download (web/worker.js `preflight`): the model built from its weights
//! files' headers, read by HTTP Range, and its small files, sized against the WebGPU adapter's
//! limits (`engine::gpu_fit`), so that a model the adapter cannot hold is refused with the
//! numbers before its weights come down.
use js_sys::Promise;
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{js_err, FileBuffer};
use crate::engine::Engine;
use crate::error::{format_err, Error};
use crate::memory::MemoryRows;
use crate::model::header::{self, FromHeaders, HeaderFiles, HeaderNeed};
use crate::model::{Blob, Model};
use crate::options::Options;

type JsResult<T> = std::result::Result<T, JsValue>;

fn usize_of(name: &str, what: &str, v: f64) -> JsResult<usize> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= usize::MAX as f64 {
        Ok(v as usize)
    } else {
        Err(js_err(format_err(name, format!("bad {what} {v}"))))
    }
}

#[wasm_bindgen]
pub struct Preflight {
    files: HeaderFiles,
    /// The model and options `check` found fitting, for `warm`.
    fitted: Option<(Model, Options)>,
}

#[wasm_bindgen]
impl Preflight {
    #[wasm_bindgen(constructor)]
    pub fn new(model: &str) -> Preflight {
        Preflight {
            files: HeaderFiles::new(model),
            fitted: None,
        }
    }

    /// How many bytes from the start of `name` (`len` bytes long) to read so that they hold
    /// its header, given its first bytes `prefix`: 0 when they already do.
    #[wasm_bindgen(js_name = headerNeed)]
    pub fn header_need(name: &str, prefix: &[u8], len: f64) -> JsResult<f64> {
        let len = usize_of(name, "length", len)?;
        match header::header_need(name, prefix, len).map_err(js_err)? {
            HeaderNeed::Complete(_) => Ok(0.0),
            HeaderNeed::More(n) => Ok(n as f64),
        }
    }

    /// A weights file by its first bytes, which hold its header.
    #[wasm_bindgen(js_name = addHeader)]
    pub fn add_header(&mut self, name: &str, prefix: Vec<u8>, len: f64) -> JsResult<()> {
        let len = usize_of(name, "length", len)?;
        self.files.add_header(name, prefix, len).map_err(js_err)
    }

    /// A small file (config.json, tokenizer.json) as the worker fetched it: copied.
    #[wasm_bindgen(js_name = addFile)]
    pub fn add_file(&mut self, name: &str, file: &FileBuffer) {
        self.files
            .add_whole(name, Blob::from_vec(file.bytes().to_vec()));
    }

    /// Bytes `at..` of a weights file, which `check` asked for.
    #[wasm_bindgen(js_name = addRange)]
    pub fn add_range(&mut self, name: &str, at: f64, bytes: Vec<u8>) -> JsResult<()> {
        let at = usize_of(name, "offset", at)?;
        self.files.add_range(name, at, bytes).map_err(js_err)
    }

    /// Build the model and size it for the adapter's `limits` (a JSON object with WebGPU's
    /// maxStorageBufferBindingSize, maxBufferSize, maxTextureDimension2D) with the context
    /// `ctx` (0: the default) and `slots` sequences; `textures`: the adapter will hold weights
    /// in textures (a CPU adapter). JSON back: `{"needs": [[file, start, end], ...]}`, ranges
    /// of weights to add (`addRange`) before checking again, `{"unsized": why}` when the
    /// model cannot be sized from its headers, or `{"fits": {...}}` with what the model
    /// takes. An error when it does not fit, saying what and by how much.
    pub fn check(
        &mut self,
        ctx: f64,
        slots: f64,
        limits: &str,
        textures: bool,
        memory_streamed: bool,
    ) -> JsResult<String> {
        let src = self.files.source().to_string();
        let model = match self.files.load(memory_streamed).map_err(js_err)? {
            FromHeaders::Needs(needs) => {
                let v: Vec<_> = needs
                    .iter()
                    .map(|(n, r)| json!([n, r.start, r.end]))
                    .collect();
                return Ok(json!({ "needs": v }).to_string());
            }
            FromHeaders::Unsized(why) => return Ok(json!({ "unsized": why }).to_string()),
            FromHeaders::Model(m) => m,
        };
        let l: serde_json::Value = serde_json::from_str(limits)
            .map_err(|e| js_err(format_err(&src, format!("adapter limits: {e}"))))?;
        let get = |k: &str| {
            l[k].as_u64()
                .ok_or_else(|| js_err(format_err(&src, format!("adapter limits: no {k}"))))
        };
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: get("maxStorageBufferBindingSize")? as _,
            max_buffer_size: get("maxBufferSize")?,
            // The browser's device asks for WebGPU's default texture size (gpu/context.rs).
            max_texture_dimension_2d: (get("maxTextureDimension2D")? as u32)
                .min(wgpu::Limits::default().max_texture_dimension_2d),
            ..wgpu::Limits::default()
        };
        let ctx = (ctx > 0.0).then_some(usize_of(&src, "context", ctx)?);
        let slots = usize_of(&src, "slots", slots)?;
        let opts = super::session_options(&model, ctx, slots).map_err(js_err)?;
        let needs =
            crate::engine::gpu_fit(&model, &opts.decoder, &limits, textures).map_err(|e| {
                js_err(Error::Input(format!(
                    "{src} does not fit this GPU adapter, so nothing was downloaded: {e}"
                )))
            })?;
        let out = json!({ "fits": needs, "ctx_len": opts.decoder.ctx_len }).to_string();
        self.fitted = Some((*model, opts));
        Ok(out)
    }

    /// Open the GPU device `backend` will run on and compile there the kernels of the model
    /// that `check` found fitting (from its headers: no weights needed), resolving to a
    /// `GpuWarm` for `openSession`. Started before the download, so that compiling (seconds
    /// per kernel on a software adapter) overlaps it.
    pub fn warm(&mut self, backend: &str) -> JsResult<Promise> {
        let backend = super::parse_backend(backend).map_err(js_err)?;
        let (model, opts) = self.fitted.take().ok_or_else(|| {
            js_err(Error::Input(
                "Preflight.warm: no model has passed check".into(),
            ))
        })?;
        Ok(future_to_promise(async move {
            let rows = MemoryRows::local(&model);
            let w = Engine::warm(&model, &rows, backend, &opts)
                .await
                .map_err(js_err)?;
            Ok(super::GpuWarm(w).into())
        }))
    }
}
