//! A minimal GGUF v3 writer for tests (follows the format description: header, metadata,
//! tensor infos, aligned data), so bad-input tests can build files that are wrong on purpose.
#![allow(dead_code)]

pub enum Kv {
    Str(String),
    U32(u32),
    F32(f32),
    Bool(bool),
}

pub struct TensorSpec {
    pub name: String,
    /// fastest-first, as GGUF lists them
    pub dims: Vec<u64>,
    pub ty: u32,
    pub data: Vec<u8>,
}

pub struct Gguf {
    pub kvs: Vec<(String, Kv)>,
    pub tensors: Vec<TensorSpec>,
    /// Overrides the tensor count written in the header (to fake absurd headers).
    pub claimed_tensors: Option<u64>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Gguf {
    pub fn bytes(&self) -> Vec<u8> {
        let mut o = b"GGUF".to_vec();
        o.extend(3u32.to_le_bytes());
        o.extend(
            self.claimed_tensors
                .unwrap_or(self.tensors.len() as u64)
                .to_le_bytes(),
        );
        o.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut o, k);
            match v {
                Kv::Str(s) => {
                    o.extend(8u32.to_le_bytes());
                    put_str(&mut o, s);
                }
                Kv::U32(x) => {
                    o.extend(4u32.to_le_bytes());
                    o.extend(x.to_le_bytes());
                }
                Kv::F32(x) => {
                    o.extend(6u32.to_le_bytes());
                    o.extend(x.to_le_bytes());
                }
                Kv::Bool(b) => {
                    o.extend(7u32.to_le_bytes());
                    o.push(*b as u8);
                }
            }
        }
        let mut off = 0u64;
        for t in &self.tensors {
            put_str(&mut o, &t.name);
            o.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                o.extend(d.to_le_bytes());
            }
            o.extend(t.ty.to_le_bytes());
            o.extend(off.to_le_bytes());
            off += (t.data.len() as u64).div_ceil(32) * 32;
        }
        while o.len() % 32 != 0 {
            o.push(0);
        }
        for t in &self.tensors {
            o.extend(&t.data);
            while o.len() % 32 != 0 {
                o.push(0);
            }
        }
        o
    }
}

/// A tiny valid llama model in F32: width 32, 1 layer, 2 heads, 1 KV head, FFN 64, vocab 40.
pub fn tiny_llama() -> Gguf {
    let (d, f, v, kv) = (32u64, 64u64, 40u64, 16u64);
    let f32t = |name: &str, dims: Vec<u64>, seed: u32| {
        let n: u64 = dims.iter().product();
        let data = (0..n)
            .flat_map(|i| {
                ((((i as u32).wrapping_mul(2654435761).wrapping_add(seed)) % 1000) as f32 / 5000.0
                    - 0.1)
                    .to_le_bytes()
            })
            .collect();
        TensorSpec {
            name: name.into(),
            dims,
            ty: 0,
            data,
        }
    };
    let kvs = vec![
        ("general.architecture".into(), Kv::Str("llama".into())),
        ("llama.block_count".into(), Kv::U32(1)),
        ("llama.embedding_length".into(), Kv::U32(d as u32)),
        ("llama.feed_forward_length".into(), Kv::U32(f as u32)),
        ("llama.attention.head_count".into(), Kv::U32(2)),
        ("llama.attention.head_count_kv".into(), Kv::U32(1)),
        ("llama.context_length".into(), Kv::U32(64)),
        ("llama.rope.freq_base".into(), Kv::F32(10000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Kv::F32(1e-5),
        ),
    ];
    let tensors = vec![
        f32t("token_embd.weight", vec![d, v], 1),
        f32t("output_norm.weight", vec![d], 2),
        f32t("blk.0.attn_norm.weight", vec![d], 3),
        f32t("blk.0.attn_q.weight", vec![d, d], 4),
        f32t("blk.0.attn_k.weight", vec![d, kv], 5),
        f32t("blk.0.attn_v.weight", vec![d, kv], 6),
        f32t("blk.0.attn_output.weight", vec![d, d], 7),
        f32t("blk.0.ffn_norm.weight", vec![d], 8),
        f32t("blk.0.ffn_gate.weight", vec![d, f], 9),
        f32t("blk.0.ffn_up.weight", vec![d, f], 10),
        f32t("blk.0.ffn_down.weight", vec![f, d], 11),
    ];
    Gguf {
        kvs,
        tensors,
        claimed_tensors: None,
    }
}
