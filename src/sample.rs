//! Token choice from logits or from the GPU's top-k candidates: greedy, temperature, top-k,
//! top-p, repetition penalty; seeded so a run can be repeated exactly.
//!
//! Order: repeat penalty (llama.cpp's rule), top-k, softmax(l / T), then the nucleus cut on
//! those temperature-scaled probabilities (Hugging Face's order; llama.cpp's default chain cuts
//! top-p at T = 1 and applies the temperature last, and adds min-p 0.05, which this lacks).
use rand::{Rng, SeedableRng};

/// What `tide generate` and `tide chat` sample with unless told otherwise: llama.cpp's
/// defaults (temperature 0.8, top-k 40, top-p 0.95, no repeat penalty over the last 64), with a
/// fixed seed so that a run repeats exactly.
pub const DEFAULT_TEMPERATURE: f32 = 0.8;
pub const DEFAULT_TOP_K: usize = 40;
pub const DEFAULT_TOP_P: f32 = 0.95;
pub const DEFAULT_REPEAT_PENALTY: f32 = 1.0;
pub const DEFAULT_REPEAT_LAST_N: usize = 64;
pub const DEFAULT_SEED: u64 = 0;

/// An f32 as the shortest decimal that reads back as it (0.8, not 0.800000011920929, which
/// is what widening to f64 inside serde_json::Value would print).
fn short_f32<S: serde::Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(x.to_string().parse().unwrap_or(*x as f64))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SamplerConfig {
    /// 0 = greedy.
    #[serde(serialize_with = "short_f32")]
    pub temperature: f32,
    /// 0 = no top-k cut.
    pub top_k: usize,
    /// 1 = no nucleus cut.
    #[serde(serialize_with = "short_f32")]
    pub top_p: f32,
    /// 1 = none; llama.cpp's rule over the last `repeat_last_n` tokens.
    #[serde(serialize_with = "short_f32")]
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
}

/// Greedy (temperature 0; the other fields at the CLI's defaults): what benchmarks and library
/// callers get. The CLI samples by default ([`SamplerConfig::sampling`]).
impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::sampling()
        }
    }
}

impl SamplerConfig {
    /// The CLI's defaults (the DEFAULT_* constants).
    pub fn sampling() -> SamplerConfig {
        SamplerConfig {
            temperature: DEFAULT_TEMPERATURE,
            top_k: DEFAULT_TOP_K,
            top_p: DEFAULT_TOP_P,
            repeat_penalty: DEFAULT_REPEAT_PENALTY,
            repeat_last_n: DEFAULT_REPEAT_LAST_N,
            seed: DEFAULT_SEED,
        }
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Input(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "--temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("--top-p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return bad(format!(
                "--repeat-penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        Ok(())
    }

    /// One line for messages, e.g. "temperature 0.8, top-k 40, top-p 0.95, seed 0".
    pub fn describe(&self) -> String {
        if self.greedy() {
            return "greedy (temperature 0)".into();
        }
        let mut s = format!(
            "temperature {}, top-k {}, top-p {}",
            self.temperature, self.top_k, self.top_p
        );
        if self.repeat_penalty != 1.0 {
            s += &format!(
                ", repeat penalty {} over the last {}",
                self.repeat_penalty, self.repeat_last_n
            );
        }
        s + &format!(", seed {}", self.seed)
    }

    pub fn greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

pub struct Sampler {
    pub cfg: SamplerConfig,
    rng: rand::rngs::StdRng,
}

/// The distinct ids among the last `n` of `history` (penalty applies once per id).
pub fn recent_distinct(history: &[u32], n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = history[history.len().saturating_sub(n)..].to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

pub fn apply_repeat_penalty(logits: &mut [f32], recent: &[u32], penalty: f32) {
    for &id in recent {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// The k best (id, logit), best first, ties to the lower id (as the GPU kernel does).
pub fn top_k_of(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, x)| !x.is_nan())
        .map(|(i, &x)| (i as u32, x))
        .collect();
    let k = k.min(v.len());
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k < v.len() && k > 0 {
        v.select_nth_unstable_by(k - 1, cmp);
        v.truncate(k);
    }
    v.sort_by(cmp);
    v
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        Sampler { cfg, rng }
    }

    /// How many candidates the sampler needs (None = the whole distribution). The GPU selects
    /// up to 64 (decoder::MAX_TOP_K) on the device; None or more than that makes the engine
    /// read every logit back each token (vocab * 4 bytes), which --top-k's help states.
    pub fn candidates_needed(&self) -> Option<usize> {
        if self.cfg.greedy() {
            Some(1)
        } else if self.cfg.top_k > 0 {
            Some(self.cfg.top_k)
        } else {
            None
        }
    }

    /// The probability of each candidate (sorted best first, already penalised and cut to
    /// top-k): softmax(l / T), zero past the nucleus (the shortest prefix whose mass reaches
    /// top-p), renormalised. Greedy gives all the mass to the first.
    pub fn probabilities(&self, cands: &[(u32, f32)]) -> Vec<f64> {
        let mut p = vec![0.0; cands.len()];
        if cands.is_empty() {
            return p;
        }
        // An infinite best logit leaves nothing to weigh (inf - inf is NaN): take it.
        if self.cfg.greedy() || cands.len() == 1 || !cands[0].1.is_finite() {
            p[0] = 1.0;
            return p;
        }
        // In f64, from the best logit down, so that exp cannot overflow.
        let t = self.cfg.temperature as f64;
        let m = cands[0].1 as f64;
        for (x, &(_, l)) in p.iter_mut().zip(cands) {
            *x = ((l as f64 - m) / t).exp();
        }
        let sum: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= sum);
        let mut keep = p.len();
        let mut acc = 0.0;
        for (i, &x) in p.iter().enumerate() {
            acc += x;
            if acc >= self.cfg.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        let kept: f64 = p[..keep].iter().sum();
        for (i, x) in p.iter_mut().enumerate() {
            *x = if i < keep { *x / kept } else { 0.0 };
        }
        p
    }

    /// Choose the next token from every logit of a step (copied: the penalty changes them);
    /// `history` is every token so far, for the repetition penalty.
    pub fn choose_from_logits(&mut self, logits: &[f32], history: &[u32]) -> crate::Result<u32> {
        let pen = self.cfg.repeat_penalty;
        let mut l = logits.to_vec();
        if pen != 1.0 {
            apply_repeat_penalty(
                &mut l,
                &recent_distinct(history, self.cfg.repeat_last_n),
                pen,
            );
        }
        let cands = top_k_of(&l, self.candidates_needed().unwrap_or(l.len()));
        if cands.is_empty() {
            return Err(crate::Error::Gpu(
                "the model produced no finite logit".into(),
            ));
        }
        Ok(self.pick(&cands))
    }

    /// Choose among candidates sorted best first (already penalised and cut to top-k).
    pub fn pick(&mut self, cands: &[(u32, f32)]) -> u32 {
        if self.cfg.greedy() || cands.len() == 1 {
            return cands[0].0;
        }
        let p = self.probabilities(cands);
        let mut r = self.rng.random::<f64>();
        let mut last = 0;
        for (i, &x) in p.iter().enumerate() {
            if x == 0.0 {
                continue;
            }
            last = i;
            r -= x;
            if r < 0.0 {
                return cands[i].0;
            }
        }
        // Rounding left r a hair above 0: the last kept candidate.
        cands[last].0
    }
}
