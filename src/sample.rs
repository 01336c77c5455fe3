//! Token choice from logits or from the GPU's top-k candidates: greedy, temperature, top-k,
//! top-p, repetition penalty; seeded so a run can be repeated exactly.
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = no top-k cut.
    pub top_k: usize,
    /// 1 = no nucleus cut.
    pub top_p: f32,
    /// 1 = none; llama.cpp's rule over the last `repeat_last_n` tokens.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
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

    /// How many candidates the sampler needs (None = the whole distribution).
    pub fn candidates_needed(&self) -> Option<usize> {
        if self.cfg.greedy() {
            Some(1)
        } else if self.cfg.top_k > 0 {
            Some(self.cfg.top_k)
        } else {
            None
        }
    }

    /// Choose among candidates sorted best first (already penalised and cut to top-k).
    pub fn pick(&mut self, cands: &[(u32, f32)]) -> u32 {
        if self.cfg.greedy() || cands.len() == 1 {
            return cands[0].0;
        }
        let t = self.cfg.temperature;
        let m = cands[0].1;
        let mut p: Vec<f64> = cands
            .iter()
            .map(|&(_, l)| (((l - m) / t) as f64).exp())
            .collect();
        let sum: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= sum);
        // Nucleus: the smallest prefix whose mass reaches top_p.
        let mut keep = p.len();
        let mut acc = 0.0;
        for (i, &x) in p.iter().enumerate() {
            acc += x;
            if acc >= self.cfg.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        let total: f64 = p[..keep].iter().sum();
        let mut r = self.rng.random::<f64>() * total;
        for (i, &x) in p[..keep].iter().enumerate() {
            r -= x;
            if r <= 0.0 {
                return cands[i].0;
            }
        }
        cands[keep - 1].0
    }
}
