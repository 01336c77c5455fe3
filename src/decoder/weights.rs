//! The model's weights on the GPU, uploaded in a stage of their own before the schedule binds
//! them (graph.rs): matrices as GpuTensors in their stored type (split into row chunks where
//! one binding cannot hold them), norm gammas, biases and LIMe's mixes as f32 buffers.
use super::f32_buffer;
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::model::{Layer, Model, Weight};

/// One layer's weights.
pub(super) struct LayerWeights {
    /// W_q | W_k | W_v, rows concatenated (f32 if their types differ).
    pub qkv: GpuTensor,
    pub wo: GpuTensor,
    /// W_gate | W_up, rows concatenated.
    pub gate_up: GpuTensor,
    pub down: GpuTensor,
    pub attn_norm: wgpu::Buffer,
    pub ffn_norm: wgpu::Buffer,
    /// Qwen2's q | k | v biases.
    pub qkv_bias: Option<wgpu::Buffer>,
    /// Qwen3's per-head q and k norms.
    pub qk_norm: Option<[wgpu::Buffer; 2]>,
    /// LIMe's mix of the KV heads of every earlier layer (the identity at layer 0), in a LIMe
    /// model only.
    pub lime_mix: Option<wgpu::Buffer>,
}

pub(super) struct GpuWeights {
    pub embd: GpuTensor,
    /// The LM head when it is not tied to the embedding.
    pub head: Option<GpuTensor>,
    pub out_norm: wgpu::Buffer,
    /// cos | sin per position and pair, for the context length.
    pub rope: wgpu::Buffer,
    pub layers: Vec<LayerWeights>,
    /// A LIMe model (every layer's K|V mixes earlier layers').
    pub lime: bool,
}

/// Upload row-concatenated parts; if their types differ, as f32.
fn upload_fused(ctx: &GpuContext, name: &str, parts: &[&Weight]) -> Result<GpuTensor> {
    if parts.iter().all(|p| p.dtype() == parts[0].dtype()) {
        return GpuTensor::upload(ctx, name, parts);
    }
    // On a dry context the f32 copies need their shape alone (`Weight::f32_placeholder`).
    let owned: Vec<Weight> = match ctx.dry {
        true => parts.iter().map(|p| p.f32_placeholder()).collect(),
        false => parts.iter().map(|p| p.to_f32_weight()).collect(),
    };
    let refs: Vec<&Weight> = owned.iter().collect();
    GpuTensor::upload(ctx, name, &refs)
}

impl LayerWeights {
    fn upload(
        ctx: &GpuContext,
        li: usize,
        l: &Layer,
        n_kv_heads: usize,
        lime: bool,
    ) -> Result<Self> {
        let name = |s: &str| format!("blk.{li}.{s}");
        let bias = l.qkv_bias.as_ref().map(|b| {
            let v: Vec<f32> = b.iter().flat_map(|w| w.to_f32()).collect();
            f32_buffer(ctx, "qkv_bias", &v)
        });
        let qk_norm = l.qk_norm.as_ref().map(|[q, k]| {
            [
                f32_buffer(ctx, "q_norm", &q.to_f32()),
                f32_buffer(ctx, "k_norm", &k.to_f32()),
            ]
        });
        let lime_mix = lime.then(|| {
            let r = n_kv_heads;
            let mix = match &l.lime_mix {
                Some(w) => w.to_f32(),
                // Layer 0 mixes nothing: the identity keeps its raw heads (and stores them).
                None => (0..r * r)
                    .map(|i| f32::from(u8::from(i / r == i % r)))
                    .collect(),
            };
            f32_buffer(ctx, "lime-mix", &mix)
        });
        Ok(LayerWeights {
            qkv: upload_fused(ctx, &name("qkv"), &[&l.wq, &l.wk, &l.wv])?,
            wo: GpuTensor::upload(ctx, &name("attn_output"), &[&l.wo])?,
            gate_up: upload_fused(ctx, &name("ffn_gate_up"), &[&l.w_gate, &l.w_up])?,
            down: GpuTensor::upload(ctx, &name("ffn_down"), &[&l.w_down])?,
            attn_norm: f32_buffer(ctx, "attn_norm", &l.attn_norm.to_f32()),
            ffn_norm: f32_buffer(ctx, "ffn_norm", &l.ffn_norm.to_f32()),
            qkv_bias: bias,
            qk_norm,
            lime_mix,
        })
    }

    fn matrices(&self) -> [&GpuTensor; 4] {
        [&self.qkv, &self.wo, &self.gate_up, &self.down]
    }
}

impl GpuWeights {
    /// Upload every weight of `model`, with the RoPE table for `ctx_len` positions.
    pub fn upload(ctx: &GpuContext, model: &Model, ctx_len: usize) -> Result<GpuWeights> {
        let c = &model.config;
        let lime = model.layers.iter().any(|l| l.lime_mix.is_some());
        let embd = GpuTensor::upload(ctx, "token_embd", &[&model.token_embd])?;
        let layers = model
            .layers
            .iter()
            .enumerate()
            .map(|(li, l)| LayerWeights::upload(ctx, li, l, c.n_kv_heads, lime))
            .collect::<Result<Vec<_>>>()?;
        let head = match &model.lm_head {
            Some(w) => Some(GpuTensor::upload(ctx, "output", &[w])?),
            None => None,
        };
        Ok(GpuWeights {
            embd,
            head,
            out_norm: f32_buffer(ctx, "output_norm", &model.output_norm.to_f32()),
            rope: f32_buffer(ctx, "rope", &c.rope_table(ctx_len)),
            layers,
            lime,
        })
    }

    /// The LM head: its own matrix, or the tied embedding.
    pub fn lm_head(&self) -> &GpuTensor {
        self.head.as_ref().unwrap_or(&self.embd)
    }

    fn tensors(&self) -> impl Iterator<Item = &GpuTensor> {
        let layers = self.layers.iter().flat_map(LayerWeights::matrices);
        layers.chain(self.head.as_ref()).chain([&self.embd])
    }

    /// Bytes of every matrix (what a decode step reads, the embedding counted whole).
    pub fn bytes(&self) -> usize {
        self.tensors().map(GpuTensor::bytes).sum()
    }

    /// Tensors larger than one storage binding, with the row chunks each was split into.
    pub fn split_tensors(&self) -> Vec<(String, usize)> {
        self.tensors()
            .filter(|w| w.chunks.len() > 1)
            .map(|w| (w.name.clone(), w.chunks.len()))
            .collect()
    }
}
