//! Kernels described as data: which shader, which defines, which bindings, how many
//! workgroups. The decoder builds its schedule from these, and the kernel tests run the very
//! same specs one at a time against the CPU reference.
use crate::gpu::{gpu_words, slot, Binding, Defines, Slot};
use crate::model::DType;
use crate::options::PrefillTile;

pub const WG: u32 = 64;

/// Widest row (in 32-element blocks) that matvec_rows unrolls; wider rows take its loop form.
pub const MAX_UNROLLED_BLOCKS: usize = 32;

/// Most 4-row groups one matvec_rows lane computes (see `Matmul::decode_rows`).
pub const MAX_GROUPS_PER_LANE: usize = 128;

/// What a matmul does with its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// logits[ROW0 + row] = y, for the last token of the batch only
    Store,
    /// logits[t, ROW0 + row] = y for every token of the batch (rows of `stride`)
    StoreAll { stride: usize },
    /// h[t, row] += y
    Residual,
    /// h[t, row] += y + sum_k alpha[t, k] mem[t, k, row]: the FFN down projection of a TIDE
    /// layer, with its memory injection fused in
    ResidualMemory { k: usize },
    /// q | k | v rows, RoPE on q and k, k and v appended to the KV cache
    Qkv {
        qd: usize,
        kvd: usize,
        head_dim: usize,
        rope_half: bool,
        /// k and v go straight into write-only rgba32uint textures [ctx rows, kvd / 4 texels]
        /// (bindings 5 and 6) that attention reads: CPU adapters, so the cache is held once.
        /// q and k then come out in slot order (`slot_order`), the same permutation within
        /// every head, which leaves each q.k unchanged.
        kv_tex: bool,
        /// Add a bias to every q, k and v row (binding 8, QB: qd + 2 kvd floats; Qwen2).
        bias: bool,
        /// Store q | k | v as they are into Y [n_tok, ROWS] (no RoPE, no cache): `head_norm`
        /// finishes them (Qwen3's per-head q/k norm needs a whole head first).
        raw: bool,
    },
    /// gate rows then up rows; out = silu(gate) * up
    SwiGlu { ffn: usize },
}

#[derive(Debug, Clone)]
pub struct Matmul {
    pub epi: Epilogue,
    /// Fused RMSNorm of the input with this eps.
    pub norm: Option<f32>,
    pub dtype: DType,
    pub cols: usize,
    /// Rows bound (this chunk), and the first row's index in the whole tensor (Store only).
    pub rows: usize,
    pub row0: usize,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub shader: &'static str,
    pub entry: &'static str,
    pub defs: Defines,
    /// Each binding named after the shader's variable (checked when the pipeline is built).
    pub bindings: Vec<Slot>,
    /// Workgroups along x.
    pub x: u32,
    /// Tokens covered by one workgroup along y (0: one workgroup in y whatever the batch).
    pub tokens_per_y: u32,
}

impl Spec {
    /// The same kernel reading its weights (binding 1: matmuls and the embedding lookup) from
    /// an rgba32uint texture laid out by `gpu::weight_texture`.
    /// `weights_in_texture` when `on` (the layout a context chose), else unchanged.
    pub fn weights_in_texture_if(self, on: bool) -> Spec {
        if on {
            self.weights_in_texture()
        } else {
            self
        }
    }

    /// Kernels whose lanes all read the same rows, with a subgroup's lanes fetching those
    /// rows for each other (subgroupBroadcast), where that applies: subgroups of exactly 8
    /// lanes, workgroups of whole subgroups, and
    /// - the prefill matmul (matmul.wgsl's SGW) with Q4_0 / Q4_1 weights in a texture;
    /// - prefill attention (attention.wgsl's SGKV) with K/V in textures, head_dim % 32 == 0.
    ///
    /// Any other spec is returned unchanged. The kernels broadcast from every lane of a
    /// subgroup, so they need full subgroups: llvmpipe runs a subgroup as one SIMD row of a
    /// workgroup of whole subgroups, which always is full; wgpu does not ask Vulkan to promise
    /// it elsewhere, which is one more reason these variants are for CPU adapters (weights in
    /// textures is their layout).
    pub fn with_subgroups(mut self, subgroup_size: Option<u32>) -> Spec {
        let get = |k: &str| self.defs.0.get(k).map(String::as_str);
        let num = |k: &str| get(k).and_then(|v| v.parse::<u32>().ok());
        if subgroup_size != Some(8) || num("WG").is_none_or(|w| w % 8 != 0) {
            return self;
        }
        match (self.shader, self.entry) {
            ("matmul", _)
                if self.texture_at(1)
                    && matches!(get("QUANT"), Some("quant_q4_0" | "quant_q4_1")) =>
            {
                self.defs = self.defs.flag("SGW", true);
            }
            ("attention", "prefill") if self.texture_at(2) => {
                if let Some(hd4) = num("HD4").filter(|h| h % 8 == 0) {
                    self.defs = self.defs.flag("SGKV", true).set("HD8", hd4 / 8);
                }
            }
            _ => {}
        }
        self
    }

    pub fn weights_in_texture(mut self) -> Spec {
        retype(&mut self.bindings, &[(1, Binding::Texture)]);
        self.defs = self
            .defs
            .flag("TEX", true)
            .set("TEXW", crate::gpu::TEX_WIDTH);
        self
    }

    /// The prefill matmul with its x rows in an rgba32uint texture [n_tok rows, cols / 4
    /// texels] (binding 2) and gamma as a uniform (binding 3): CPU adapters.
    pub fn x_in_texture(mut self) -> Spec {
        retype(
            &mut self.bindings,
            &[(2, Binding::Texture), (3, Binding::Uniform)],
        );
        self.defs = self.defs.flag("XTEX", true);
        self
    }

    /// A ResidualMemory matvec (one token) with the token's K memory rows in an rgba32uint
    /// texture [K rows, rows / 4 texels] (binding 5), the layer's router logits as a uniform
    /// of 4 * ceil((K + 2) / 4) floats (binding 7; float K + 1 switches the layer's memory on
    /// (1) or off (0)), and the router weights, softmax taken here, written to binding 6:
    /// CPU adapters, with the router fused into the gate/up matvec (`with_router`).
    /// Needs rows % 4 == 0.
    pub fn memory_in_texture(mut self) -> Spec {
        retype(
            &mut self.bindings,
            &[(5, Binding::Texture), (6, Binding::ReadWrite)],
        );
        self.bindings.push(slot(7, "LOGITS", Binding::Uniform));
        self.defs = self.defs.flag("MEMTEX", true);
        self
    }

    /// The SwiGLU matvec_rows (one token) also computing the layer's K + 1 TIDE router logits
    /// W_r RMSNorm_ffn(h~) from the same normalised input: W_r as an rgba32uint texture
    /// [K + 1 rows, cols / 4 texels] of f32 bits (binding 5), the logits out to binding 6.
    pub fn with_router(mut self, k: usize) -> Spec {
        self.bindings.extend([
            slot(5, "WR", Binding::Texture),
            slot(6, "RL", Binding::ReadWrite),
        ]);
        self.defs = self.defs.flag("ROUTER", true).set("RK1", k + 1);
        self
    }

    /// matvec_rows in its loop form (on) or with every block unrolled (off), whatever
    /// `decode_rows` chose: the kernel tests run both.
    pub fn block_loop(mut self, on: bool) -> Spec {
        self.defs.0.remove("LOOP");
        self.defs = self.defs.flag("LOOP", on);
        self
    }

    /// Whether binding `i` is a texture.
    pub fn texture_at(&self, i: u32) -> bool {
        self.bindings
            .iter()
            .any(|s| s.index == i && s.kind == Binding::Texture)
    }

    pub fn y_groups(&self, n_tok: u32) -> u32 {
        y_groups(self.tokens_per_y, n_tok)
    }
}

/// Where each of a head's `head_dim` values of q or k goes in the slot order of a QKV matmul
/// with K/V in textures (`Epilogue::Qkv::kv_tex`): slot s holds logical dim `slot_order(..)[s]`.
/// Adjacent pairs: the identity; rotate-half: group j's slots are dims 2j, 2j+1, 2j+hd/2,
/// 2j+1+hd/2.
pub fn slot_order(head_dim: usize, rope_half: bool) -> Vec<usize> {
    (0..head_dim)
        .map(|s| {
            let (j, r) = (s / 4, s % 4);
            if rope_half {
                2 * j + (r & 1) + (r >> 1) * (head_dim / 2)
            } else {
                s
            }
        })
        .collect()
}

/// The K/V cache (buffers, or write-only textures on CPU adapters) and the RoPE table at
/// bindings 5, 6, 7: what the QKV epilogue and `head_norm` write the cache with.
fn kv_bindings(kv_tex: bool) -> [Slot; 3] {
    let kv = if kv_tex {
        Binding::StorageTexture
    } else {
        Binding::ReadWrite
    };
    [
        slot(5, "KC", kv),
        slot(6, "VC", kv),
        slot(7, "ROPE", Binding::Read),
    ]
}

/// Per-head RMSNorm of q and k (gammas QN, KN of head_dim), then RoPE, after a QKV matmul
/// that stored raw q | k | v rows (`Epilogue::Qkv::raw`): q to Q, k and v into the cache at
/// pos0 + t, in the order the QKV epilogue would have written them. One workgroup per head
/// of q, k or v and token.
pub fn head_norm(
    head_dim: usize,
    n_heads: usize,
    n_kv_heads: usize,
    eps: f32,
    rope_half: bool,
    kv_tex: bool,
) -> Spec {
    let mut s = rope_cache(head_dim, n_heads, n_kv_heads, rope_half, kv_tex);
    s.bindings
        .extend([slot(2, "QN", Binding::Read), slot(3, "KN", Binding::Read)]);
    s.bindings.sort_by_key(|b| b.index);
    s.defs = s.defs.set("EPS", format!("{eps:e}")).flag("QK_NORM", true);
    s
}

/// `head_norm` without the norm: RoPE on q and k of a raw QKV matmul's rows, and k and v into
/// the cache (LIMe, after lime.wgsl mixed k and v).
pub fn rope_cache(
    head_dim: usize,
    n_heads: usize,
    n_kv_heads: usize,
    rope_half: bool,
    kv_tex: bool,
) -> Spec {
    let mut bindings = vec![
        slot(0, "step", Binding::Uniform),
        slot(1, "RAW", Binding::Read),
        slot(4, "Q", Binding::ReadWrite),
    ];
    bindings.extend(kv_bindings(kv_tex));
    Spec {
        shader: "head_norm",
        entry: "main",
        defs: Defines::new()
            .set("HD", head_dim)
            .set("NH", n_heads)
            .set("NKV", n_kv_heads)
            .set("EPS", "0e0")
            .flag("ROPE_HALF", rope_half)
            .flag("KV_TEX", kv_tex),
        bindings,
        x: (n_heads + 2 * n_kv_heads) as u32,
        tokens_per_y: 1,
    }
}

/// LIMe (lime.wgsl): layer `layer`'s raw k and v of each token (rows QD.. of the raw QKV
/// output, `ROWS` = QD + 2 KVD wide) are kept in HIST [layers, max_batch, 2, KVD] and replaced
/// by MIX [R, (layer+1) R] applied to the raw heads of layers 0..=layer. One lane per (head
/// dim, token).
pub fn lime_mix(
    head_dim: usize,
    n_heads: usize,
    n_kv_heads: usize,
    layer: usize,
    max_batch: usize,
) -> Spec {
    Spec {
        shader: "lime",
        entry: "main",
        defs: Defines::new()
            .set("HD", head_dim)
            .set("NH", n_heads)
            .set("NKV", n_kv_heads)
            .set("LAYER", layer)
            .set("MB", max_batch),
        bindings: vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "RAW", Binding::ReadWrite),
            slot(2, "HIST", Binding::ReadWrite),
            slot(3, "MIX", Binding::Read),
        ],
        x: (head_dim as u32).div_ceil(64),
        tokens_per_y: 1,
    }
}

/// Engram's rows, projection and gate (engram.wgsl, entry `gate`): one workgroup per token
/// decodes its stored rows (`dtype`, d_mem values), computes k | v in workgroup memory, then
/// v~ = g v and the convolution's input row at the token's position.
pub fn engram_gate(dtype: DType, dim: usize, d_mem: usize, eps: f32) -> Spec {
    Spec {
        shader: "engram",
        entry: "gate",
        defs: engram_defs(dim, d_mem, eps)
            .flag("GATE", true)
            .set("QUANT", gpu_words(dtype).1)
            .set("DM4", d_mem / 4)
            .set("D2", 2 * dim),
        bindings: vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "W", Binding::Read),
            slot(2, "P", Binding::Read),
            slot(3, "B", Binding::Read),
            slot(4, "H", Binding::Read),
            slot(5, "NORMS", Binding::Read),
            slot(6, "VT", Binding::ReadWrite),
            slot(7, "CONV", Binding::ReadWrite),
        ],
        x: 1,
        tokens_per_y: 1,
    }
}

/// Workgroup memory of `engram_gate`: the decoded rows, k | v and the partial sums.
pub fn engram_gate_workgroup_bytes(dim: usize, d_mem: usize) -> usize {
    d_mem * 4 + 2 * dim * 4 + 64 * 16 + 64 * 4
}

/// Engram's convolution and residual add (entry `conv`); one lane per (channel, token).
pub fn engram_conv(dim: usize) -> Spec {
    Spec {
        shader: "engram",
        entry: "conv",
        defs: engram_defs(dim, 4, 0.0).flag("CONV_ADD", true),
        bindings: vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "H", Binding::ReadWrite),
            slot(2, "VT", Binding::Read),
            slot(3, "CONV", Binding::Read),
            slot(4, "TAPS", Binding::Read),
        ],
        x: (dim as u32).div_ceil(64),
        tokens_per_y: 1,
    }
}

fn engram_defs(dim: usize, d_mem: usize, eps: f32) -> Defines {
    Defines::new()
        .set("D", dim)
        .set("DM", d_mem)
        .set("EPS", format!("{eps:e}"))
}

/// Give the bindings numbered in `changes` their new kind (a binding not present stays absent).
fn retype(bindings: &mut [Slot], changes: &[(u32, Binding)]) {
    for b in bindings.iter_mut() {
        if let Some(&(_, kind)) = changes.iter().find(|c| c.0 == b.index) {
            b.kind = kind;
        }
    }
}

/// Workgroups along y for n tokens when one covers `tokens_per_y` (0: always one).
pub fn y_groups(tokens_per_y: u32, n_tok: u32) -> u32 {
    if tokens_per_y == 0 {
        1
    } else {
        n_tok.div_ceil(tokens_per_y)
    }
}

impl Matmul {
    /// Output groups of 4 rows (SwiGLU: 2 gate + 2 up rows make one group).
    pub fn groups(&self) -> usize {
        match self.epi {
            Epilogue::SwiGlu { ffn } => ffn.div_ceil(2),
            Epilogue::Qkv { .. } => self.rows / 4,
            _ => self.rows.div_ceil(4),
        }
    }

    /// step, weights W, input X, [norm gamma G], output Y, then the epilogue's own.
    pub fn bindings(&self) -> Vec<Slot> {
        let mut b = vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "W", Binding::Read),
            slot(2, "X", Binding::Read),
        ];
        if self.norm.is_some() {
            b.push(slot(3, "G", Binding::Read));
        }
        b.push(slot(4, "Y", Binding::ReadWrite));
        if matches!(self.epi, Epilogue::ResidualMemory { .. }) {
            b.extend([
                slot(5, "MEM", Binding::Read),
                slot(6, "ALPHA", Binding::Read),
            ]);
        }
        if let Epilogue::Qkv {
            kv_tex, bias, raw, ..
        } = self.epi
        {
            if !raw {
                b.extend(kv_bindings(kv_tex));
            }
            if bias {
                b.push(slot(8, "QB", Binding::Read));
            }
        }
        b
    }

    fn base(&self) -> Defines {
        let mut d = Defines::new()
            .set("QUANT", gpu_words(self.dtype).1)
            .set("WG", WG)
            .set("COLS", self.cols)
            .set("ROWS", self.rows)
            .set("EPS", format!("{:e}", self.norm.unwrap_or(0.0)))
            .flag("NORM", self.norm.is_some());
        d = match self.epi {
            Epilogue::Store => d
                .flag("EPI_STORE", true)
                .flag("LAST_ONLY", true)
                .set("ROW0", self.row0),
            Epilogue::StoreAll { stride } => d
                .flag("EPI_STORE_ALL", true)
                .set("ROW0", self.row0)
                .set("YSTRIDE", stride),
            Epilogue::Residual => d.flag("EPI_RESIDUAL", true),
            Epilogue::ResidualMemory { k } => d
                .flag("EPI_RESIDUAL", true)
                .flag("MEMORY", true)
                .set("MEMK", k),
            Epilogue::Qkv {
                qd,
                kvd,
                head_dim,
                rope_half,
                kv_tex,
                bias,
                raw,
            } => d
                .flag("EPI_QKV", true)
                .flag("QKV_BIAS", bias)
                .flag("QKV_RAW", raw)
                .flag("ROPE_HALF", rope_half)
                .flag("KV_TEX", kv_tex)
                .set("QD", qd)
                .set("KVD", kvd)
                .set("HD", head_dim),
            Epilogue::SwiGlu { ffn } => d.flag("EPI_SWIGLU", true).set("FFN", ffn),
        };
        d
    }

    /// One token: lanes split the columns (matvec.wgsl). Also used for Store at any batch size.
    /// `big` = few, fat workgroups (CPU-backed adapters pay per workgroup; GPUs want many).
    pub fn decode_tuned(&self, big: bool) -> Spec {
        let nb = self.cols / 32;
        // Blocks per lane: ~3 on CPU-backed adapters, 1 (one block per lane) on GPUs.
        let bpl = if big {
            3.min(nb)
        } else {
            nb.div_ceil(WG as usize)
        };
        let lpr = nb.div_ceil(bpl).min(WG as usize);
        let bpl = nb.div_ceil(lpr);
        // Partial sums are SLOTS x LPR floats: keep them within 12 KiB of workgroup memory.
        let max_gpw = (768 / lpr).max(1);
        let gpw = if big {
            max_gpw.min(128)
        } else {
            max_gpw.min(16)
        };
        Spec {
            shader: "matvec",
            entry: "main",
            defs: self.base().set("LPR", lpr).set("GPW", gpw).set("BPL", bpl),
            bindings: self.bindings(),
            x: self.groups().div_ceil(gpw) as u32,
            tokens_per_y: 0,
        }
    }

    /// One token on a CPU-backed adapter (matvec_rows.wgsl): each lane computes whole 4-row
    /// groups from x and gamma held in uniform buffers (bindings 2 and 3 become uniforms of
    /// `cols` floats). Needs `cols * 4` within the adapter's uniform binding size.
    pub fn decode_rows(&self) -> Spec {
        let groups = self.groups();
        // 8 lanes (one SIMD row of a CPU driver) per workgroup; of 4..=16 workgroups, the
        // count that leaves the fewest idle lane slots, then the fewest (each loads x).
        let lanes_per_wg = 8usize;
        let nwg = (4..=16usize)
            .min_by_key(|&n| (groups.div_ceil(lanes_per_wg * n) * lanes_per_wg * n, n))
            .unwrap_or(4)
            .min(groups.div_ceil(lanes_per_wg).max(1))
            // lavapipe read wrong texels once a lane had looped over 169 groups (weights in a
            // texture; storage buffers were right): more workgroups where a lane would exceed
            // MAX_GROUPS_PER_LANE (a 1B model's LM head; SmolLM2's largest takes 96).
            .max(groups.div_ceil(lanes_per_wg * MAX_GROUPS_PER_LANE));
        let mut bindings = self.bindings();
        retype(
            &mut bindings,
            &[(2, Binding::Uniform), (3, Binding::Uniform)],
        );
        Spec {
            shader: "matvec_rows",
            entry: "main",
            defs: self
                .base()
                .set("WG", lanes_per_wg)
                .set("NB", self.cols / 32)
                .set("GROUPS", groups)
                .set("LANES", nwg * lanes_per_wg)
                .flag("XUBO", true)
                // At most 4 groups per lane: the loop form is as fast there (x reloaded per
                // block costs about what holding it in registers saves) and compiles in a
                // fraction of the time (docs/benchmarks.md, start-up). Rows of more than 32
                // blocks always loop: unrolled, a 1B model's 2048- and 8192-wide rows kept
                // lavapipe's LLVM compiling one variant for over 15 minutes.
                .flag(
                    "LOOP",
                    groups <= 4 * nwg * lanes_per_wg || self.cols / 32 > MAX_UNROLLED_BLOCKS,
                ),
            bindings,
            x: nwg as u32,
            tokens_per_y: 0,
        }
    }

    /// `tokens` tokens in one step on a CPU-backed adapter (matvec_rows.wgsl, entry
    /// `tokens`): `decode_rows` in its loop form, each weight block loaded once for every
    /// token's x (a uniform of `tokens * cols` floats). Plain epilogues only (not the fused
    /// router nor the memory texture of the single-token form).
    pub fn decode_rows_tokens(&self, tokens: usize) -> Spec {
        let mut s = self.decode_rows();
        s.entry = "tokens";
        // BATCHED switches the entry on (`#if` reads flags); TOKENS is its count.
        s.defs = s
            .defs
            .flag("LOOP", true)
            .flag("BATCHED", true)
            .set("TOKENS", tokens);
        s
    }

    /// The tuning for CPU-backed adapters.
    pub fn decode(&self) -> Spec {
        self.decode_tuned(true)
    }

    /// A batch of tokens (matmul.wgsl) with the default tile: see `prefill_tiled`.
    pub fn prefill(&self) -> Spec {
        self.prefill_tiled(PrefillTile::default())
    }

    /// A batch of tokens (matmul.wgsl): each lane a tile of `tile.tokens_per_lane` tokens x
    /// 4 * `tile.groups` rows, `tile.lanes` lanes per workgroup.
    /// (Store, the LM head, needs only the last token: the decoder uses `decode` for it.)
    pub fn prefill_tiled(&self, tile: PrefillTile) -> Spec {
        let (gr, tpl, wg) = (tile.groups, tile.tokens_per_lane, tile.lanes);
        // The fused memory term repeats a K-long loop in each of the tile's GR x TPL
        // epilogues; at the full tile, K >= 8 took lavapipe's LLVM minutes to compile (its
        // coroutine pass), so TIDE's down projection uses a smaller tile.
        let gr = match self.epi {
            Epilogue::ResidualMemory { k } if k > 8 => 1,
            Epilogue::ResidualMemory { .. } => gr.min(2),
            _ => gr,
        };
        Spec {
            shader: "matmul",
            entry: "main",
            defs: self.base().set("GR", gr).set("TPL", tpl).set("WG", wg),
            bindings: self.bindings(),
            x: self.groups().div_ceil(gr) as u32,
            tokens_per_y: wg * tpl,
        }
    }
}

/// Causal GQA attention for one token per head: one workgroup per (head, token), lanes split
/// the positions.
pub fn attention(head_dim: usize, n_heads: usize, n_kv_heads: usize, ctx: usize) -> Spec {
    Spec {
        shader: "attention",
        entry: "main",
        defs: Defines::new()
            .set("WG", WG)
            .set("HD4", head_dim / 4)
            .set("HD", head_dim)
            .set("QD", n_heads * head_dim)
            .set("KVD", n_kv_heads * head_dim)
            .set("GROUP", n_heads / n_kv_heads)
            .set("CTX", ctx),
        bindings: vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "Q", Binding::Read),
            slot(2, "KC", Binding::Read),
            slot(3, "VC", Binding::Read),
            slot(4, "S", Binding::ReadWrite),
            slot(5, "O", Binding::ReadWrite),
        ],
        x: n_heads as u32,
        tokens_per_y: 1,
    }
}

/// Causal GQA attention for a batch: lanes are tokens, online softmax, one workgroup per
/// (head, tile of WG tokens). Same bindings as `attention`.
pub fn attention_prefill(head_dim: usize, n_heads: usize, n_kv_heads: usize, ctx: usize) -> Spec {
    let mut s = attention(head_dim, n_heads, n_kv_heads, ctx);
    s.entry = "prefill";
    s.tokens_per_y = WG;
    s
}

/// Causal GQA attention for the last token of a batch on CPU adapters (entry `heads`): a lane
/// per query head, K and V cache rows read from rgba32uint textures [ctx rows, kv_dim / 4
/// texels] (bindings 2 and 3). Other bindings as `attention`.
pub fn attention_heads(head_dim: usize, n_heads: usize, n_kv_heads: usize, ctx: usize) -> Spec {
    let mut s = kv_in_textures(attention(head_dim, n_heads, n_kv_heads, ctx));
    let lanes = 8u32;
    s.entry = "heads";
    s.defs = s.defs.set("WG", lanes);
    s.x = (n_heads as u32).div_ceil(lanes);
    s.tokens_per_y = 0;
    s
}

/// An attention spec reading the K/V cache from textures laid out as for `attention_heads`.
pub fn kv_in_textures(mut s: Spec) -> Spec {
    s.defs = s.defs.flag("KVTEX", true);
    retype(
        &mut s.bindings,
        &[(2, Binding::Texture), (3, Binding::Texture)],
    );
    s
}

/// Embedding rows for ids in [row0, row0 + rows) of a table chunk.
pub fn embed(dtype: DType, cols: usize, row0: usize, rows: usize) -> Spec {
    Spec {
        shader: "embed",
        entry: "main",
        defs: Defines::new()
            .set("QUANT", gpu_words(dtype).1)
            .set("COLS", cols)
            .set("ROW0", row0)
            .set("ROWS", rows),
        bindings: vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "W", Binding::Read),
            slot(2, "IDS", Binding::Read),
            slot(3, "H", Binding::ReadWrite),
        ],
        x: (cols / 32).div_ceil(64) as u32,
        tokens_per_y: 1,
    }
}

pub fn top_k(k: usize, vocab: usize) -> Spec {
    Spec {
        shader: "sample",
        entry: "topk",
        defs: Defines::new().set("K", k).set("VOCAB", vocab),
        bindings: vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "L", Binding::ReadWrite),
            slot(2, "PEN", Binding::Read),
            slot(3, "SV", Binding::ReadWrite),
            slot(4, "SI", Binding::ReadWrite),
            slot(5, "OUT", Binding::ReadWrite),
        ],
        x: 1,
        tokens_per_y: 0,
    }
}

pub fn penalize(vocab: usize, n_pen: usize) -> Spec {
    Spec {
        shader: "sample",
        entry: "penalize",
        defs: Defines::new().set("K", 1).set("VOCAB", vocab),
        bindings: vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "L", Binding::ReadWrite),
            slot(2, "PEN", Binding::Read),
        ],
        x: (n_pen as u32).div_ceil(64).max(1),
        tokens_per_y: 0,
    }
}

/// TIDE memory rows of a batch: decode the streamed rows, RMSNorm, gamma. One workgroup per
/// (block, token).
pub fn memory_rows(dtype: DType, cols: usize, k: usize, eps: f32, normalized: bool) -> Spec {
    Spec {
        shader: "memory",
        entry: "main",
        defs: Defines::new()
            .set("QUANT", gpu_words(dtype).1)
            .set("COLS", cols)
            .set("K", k)
            .set("EPS", format!("{eps:e}"))
            .flag("NORMALIZED", normalized),
        bindings: vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "W", Binding::Read),
            slot(2, "GAMMA", Binding::Read),
            slot(3, "MEM", Binding::ReadWrite),
        ],
        x: k as u32,
        tokens_per_y: 1,
    }
}

/// The same, for CPU-backed adapters: one lane per (block, token) row, 8-lane workgroups, no
/// workgroup memory or barrier (entry `rows`).
pub fn memory_rows_by_lane(
    dtype: DType,
    cols: usize,
    k: usize,
    eps: f32,
    normalized: bool,
) -> Spec {
    let mut s = memory_rows(dtype, cols, k, eps, normalized);
    s.entry = "rows";
    s.defs = s.defs.flag("ROW_LANES", true);
    s.x = k.div_ceil(8) as u32;
    s
}

/// The same for SVD tables (`tide compress --svd-*`): the stored row is A_k[x_t], `width`
/// values wide, and the kernel rebuilds A_k[x_t] B_k (B_k bound as BASIS, [K, width, cols],
/// f32 or, `basis_f16`, f16 pairs packed in u32) before the norm. One workgroup per (block,
/// token) on every adapter (entry `svd`).
pub fn memory_rows_svd(
    dtype: DType,
    cols: usize,
    (width, basis_f16): (usize, bool),
    k: usize,
    eps: f32,
    normalized: bool,
) -> Spec {
    let mut s = memory_rows(dtype, cols, k, eps, normalized);
    s.entry = "svd";
    s.defs = s
        .defs
        .flag("SVD", true)
        .set("AW", width)
        .set("AW4", width / 4)
        .flag("BASIS_F16", basis_f16);
    s.bindings.push(slot(4, "BASIS", Binding::Read));
    s
}

/// A layer's router: softmax over K blocks + NULL of W_r RMSNorm_ffn(h~). One workgroup per token.
pub fn router(cols: usize, k: usize, eps: f32) -> Spec {
    Spec {
        shader: "router",
        entry: "main",
        defs: Defines::new()
            .set("COLS", cols)
            .set("KP1", k + 1)
            .set("RED", 64 * (k + 2))
            .set("KP2", k + 2)
            .set("EPS", format!("{eps:e}")),
        bindings: vec![
            slot(0, "step", Binding::Uniform),
            slot(1, "WR", Binding::Read),
            slot(2, "X", Binding::Read),
            slot(3, "G", Binding::Read),
            slot(4, "A", Binding::ReadWrite),
        ],
        x: 1,
        tokens_per_y: 1,
    }
}
