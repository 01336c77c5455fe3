//! The sampler against probabilities worked out by hand (the arithmetic is in the comments),
//! not against its own output: temperature, top-k, top-p, llama.cpp's repeat penalty, and the
//! frequencies of seeded draws within a stated binomial tolerance.
use tide_gpu::sample::{apply_repeat_penalty, recent_distinct, top_k_of, Sampler, SamplerConfig};

/// ln 2 in f32: logits built from it make every weight e^l a small integer or fraction.
/// Multiples by powers of two are exact in binary, so 2 * L2 / 2 == L2 with no rounding.
const L2: f32 = std::f32::consts::LN_2;

fn ln(x: f64) -> f32 {
    x.ln() as f32
}

fn sampler(temperature: f32, top_p: f32) -> Sampler {
    Sampler::new(SamplerConfig {
        temperature,
        top_p,
        ..SamplerConfig::sampling()
    })
}

/// Candidates as the engine hands them over: penalised logits cut to the k best, best first.
fn cands(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    top_k_of(logits, if k == 0 { logits.len() } else { k })
}

/// The f32 logits carry ~1e-7 relative error; 1e-6 absolute is far below every hand-computed
/// probability here (the smallest non-zero one is 1/33) and every gap between two of them.
fn assert_probs(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 1e-6,
            "{what}: candidate {i} has p = {g}, by hand {w} (all: {got:?})"
        );
    }
}

fn ids(c: &[(u32, f32)]) -> Vec<u32> {
    c.iter().map(|x| x.0).collect()
}

#[test]
fn temperature_scales_the_logits_before_the_softmax() {
    // l = ln[4, 2, 1, 1]: e^(l/T) = [4, 2, 1, 1]^(1/T).
    let l = [ln(4.0), ln(2.0), 0.0, 0.0];
    let c = cands(&l, 0);
    assert_eq!(ids(&c), [0, 1, 2, 3], "best first, ties to the lower id");
    // T = 1: [4, 2, 1, 1] / 8.
    assert_probs(
        "T=1",
        &sampler(1.0, 1.0).probabilities(&c),
        &[0.5, 0.25, 0.125, 0.125],
    );
    // T = 0.5: squares, [16, 4, 1, 1] / 22.
    assert_probs(
        "T=0.5",
        &sampler(0.5, 1.0).probabilities(&c),
        &[16.0 / 22.0, 4.0 / 22.0, 1.0 / 22.0, 1.0 / 22.0],
    );
    // T = 2: square roots, [2, sqrt 2, 1, 1] / (4 + sqrt 2).
    let s = 4.0 + 2f64.sqrt();
    assert_probs(
        "T=2",
        &sampler(2.0, 1.0).probabilities(&c),
        &[2.0 / s, 2f64.sqrt() / s, 1.0 / s, 1.0 / s],
    );
    // T = 0 is greedy: all the mass on the best, whatever the rest.
    assert_probs(
        "T=0",
        &sampler(0.0, 1.0).probabilities(&c),
        &[1.0, 0.0, 0.0, 0.0],
    );
}

#[test]
fn top_k_keeps_the_k_best_and_renormalises() {
    // l = ln[1, 8, 4, 2, 1]: the two best are ids 1 and 2 with weights 8 and 4.
    let l = [0.0, 3.0 * L2, 2.0 * L2, L2, 0.0];
    let c = cands(&l, 2);
    assert_eq!(ids(&c), [1, 2]);
    // [8, 4] / 12.
    assert_probs(
        "k=2",
        &sampler(1.0, 1.0).probabilities(&c),
        &[2.0 / 3.0, 1.0 / 3.0],
    );
    // k = 3: [8, 4, 2] / 14.
    let c = cands(&l, 3);
    assert_eq!(ids(&c), [1, 2, 3]);
    assert_probs(
        "k=3",
        &sampler(1.0, 1.0).probabilities(&c),
        &[8.0 / 14.0, 4.0 / 14.0, 2.0 / 14.0],
    );
    // k = 0: all five, [1, 8, 4, 2, 1] / 16 in the order 1, 2, 3, 0, 4.
    let c = cands(&l, 0);
    assert_eq!(ids(&c), [1, 2, 3, 0, 4]);
    assert_probs(
        "k=0",
        &sampler(1.0, 1.0).probabilities(&c),
        &[0.5, 0.25, 0.125, 0.0625, 0.0625],
    );
    // The sampler asks the engine for exactly k (0 = the whole distribution, greedy = 1).
    let with_k = |k, t| {
        Sampler::new(SamplerConfig {
            top_k: k,
            temperature: t,
            ..SamplerConfig::sampling()
        })
        .candidates_needed()
    };
    assert_eq!(with_k(40, 0.8), Some(40));
    assert_eq!(with_k(0, 0.8), None);
    assert_eq!(with_k(40, 0.0), Some(1));
}

#[test]
fn top_p_keeps_the_shortest_prefix_reaching_p() {
    // T = 1 on l = ln[4, 2, 1, 1]: p = [1/2, 1/4, 1/8, 1/8], cumulative 0.5, 0.75, 0.875, 1.
    let c = cands(&[2.0 * L2, L2, 0.0, 0.0], 0);
    let at = |p: f32| sampler(1.0, p).probabilities(&c);
    // 0.5 >= 0.4: the best alone.
    assert_probs("p=0.4", &at(0.4), &[1.0, 0.0, 0.0, 0.0]);
    // 0.5 < 0.7 <= 0.75: two kept, [1/2, 1/4] / (3/4) = [2/3, 1/3].
    assert_probs("p=0.7", &at(0.7), &[2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0]);
    // 0.75 < 0.8 <= 0.875: three kept, [4, 2, 1] / 7.
    assert_probs("p=0.8", &at(0.8), &[4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0, 0.0]);
    // 0.875 < 0.9: all four, unchanged.
    assert_probs("p=0.9", &at(0.9), &[0.5, 0.25, 0.125, 0.125]);
    // The cut applies to the temperature-scaled probabilities: at T = 0.5 the best has
    // 16/22 = 0.727 >= 0.7 and stands alone (at T = 1 two were kept).
    assert_probs(
        "T=0.5 p=0.7",
        &sampler(0.5, 0.7).probabilities(&c),
        &[1.0, 0.0, 0.0, 0.0],
    );
}

#[test]
fn repeat_penalty_follows_llama_cpp() {
    // ids 0..5, l = [2 ln2, ln2, -ln2, 0, ln3]; history [4, 0, 2, 0, 3] with the last 4 tokens
    // penalised: ids {0, 2, 3} (4 is outside the window; 0 twice counts once).
    let mut l = [2.0 * L2, L2, -L2, 0.0, ln(3.0)];
    let history = [4u32, 0, 2, 0, 3];
    let recent = recent_distinct(&history, 4);
    assert_eq!(recent, [0, 2, 3]);
    apply_repeat_penalty(&mut l, &recent, 2.0);
    // Positive divided: 2 ln2 / 2 = ln2. Negative multiplied: -ln2 * 2 = ln(1/4). Zero stays
    // zero (llama.cpp multiplies logits <= 0). ids 1 and 4 untouched.
    assert_eq!(l, [L2, L2, -2.0 * L2, 0.0, ln(3.0)]);
    // Weights e^l = [2, 2, 1/4, 1, 3], sum 33/4: p = [8, 8, 1, 4, 12] / 33, in the order
    // 4, 0, 1 (tie to the lower id), 3, 2.
    let c = cands(&l, 0);
    assert_eq!(ids(&c), [4, 0, 1, 3, 2]);
    assert_probs(
        "penalty 2",
        &sampler(1.0, 1.0).probabilities(&c),
        &[12.0 / 33.0, 8.0 / 33.0, 8.0 / 33.0, 4.0 / 33.0, 1.0 / 33.0],
    );
    // A penalty below 1 favours repeats: 2 ln2 / 0.5 = 4 ln2 (weight 16).
    let mut l = [2.0 * L2, L2];
    apply_repeat_penalty(&mut l, &recent_distinct(&[0, 0, 0], 64), 0.5);
    assert_eq!(l, [4.0 * L2, L2]);
    // 1 is no penalty.
    let mut l = [2.0 * L2, -L2];
    apply_repeat_penalty(&mut l, &[0, 1], 1.0);
    assert_eq!(l, [2.0 * L2, -L2]);
}

/// Draws from `s` over `c`, n times: counts per candidate.
fn draw(s: &mut Sampler, c: &[(u32, f32)], n: usize) -> Vec<usize> {
    let mut counts = vec![0; c.len()];
    for _ in 0..n {
        let id = s.pick(c);
        counts[c.iter().position(|x| x.0 == id).unwrap()] += 1;
    }
    counts
}

/// Each count within 4.5 binomial standard deviations, sqrt(n p (1 - p)), of n p: a correct
/// sampler misses that with probability under 7e-6 per candidate (the seed is fixed, so the
/// outcome is the same every run); a probability of 0 must never be drawn.
fn assert_frequencies(what: &str, counts: &[usize], p: &[f64]) {
    let n: usize = counts.iter().sum();
    for (i, (&k, &p)) in counts.iter().zip(p).enumerate() {
        let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
        assert!(
            (k as f64 - mean).abs() <= 4.5 * sd,
            "{what}: candidate {i} drawn {k} times of {n}, expected {mean:.0} +- {:.0}",
            4.5 * sd
        );
    }
}

#[test]
fn seeded_draws_follow_the_hand_computed_distribution() {
    let n = 20_000;
    // T = 1, top-p 0.8 on l = ln[4, 2, 1, 1]: [4, 2, 1] / 7 and never the fourth.
    let c = cands(&[2.0 * L2, L2, 0.0, 0.0], 0);
    let counts = draw(&mut sampler(1.0, 0.8), &c, n);
    assert_frequencies(
        "T=1 p=0.8",
        &counts,
        &[4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0, 0.0],
    );
    // T = 0.5, no cut: [16, 4, 1, 1] / 22.
    let counts = draw(&mut sampler(0.5, 1.0), &c, n);
    assert_frequencies(
        "T=0.5",
        &counts,
        &[16.0 / 22.0, 4.0 / 22.0, 1.0 / 22.0, 1.0 / 22.0],
    );
    // The penalised example: [12, 8, 8, 4, 1] / 33.
    let mut l = [2.0 * L2, L2, -L2, 0.0, ln(3.0)];
    apply_repeat_penalty(&mut l, &recent_distinct(&[4, 0, 2, 0, 3], 4), 2.0);
    let c = cands(&l, 0);
    let counts = draw(&mut sampler(1.0, 1.0), &c, n);
    assert_frequencies(
        "penalty 2",
        &counts,
        &[12.0 / 33.0, 8.0 / 33.0, 8.0 / 33.0, 4.0 / 33.0, 1.0 / 33.0],
    );
    // Greedy ignores the random stream.
    let counts = draw(&mut sampler(0.0, 0.5), &c, 100);
    assert_eq!(counts, [100, 0, 0, 0, 0]);
}

#[test]
fn the_seed_fixes_the_draws() {
    let c = cands(&[2.0 * L2, L2, 0.0, 0.0], 0);
    let seq = |seed| {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_p: 1.0,
            seed,
            ..SamplerConfig::sampling()
        });
        (0..64).map(|_| s.pick(&c)).collect::<Vec<_>>()
    };
    assert_eq!(seq(7), seq(7));
    assert_ne!(seq(7), seq(8));
}

#[test]
fn defaults_are_llama_cpp_s_with_a_fixed_seed() {
    // The CLI's defaults (llama.cpp: --temp 0.8 --top-k 40 --top-p 0.95 --repeat-penalty 1.0
    // --repeat-last-n 64); the library's Default stays greedy (benchmarks).
    let s = SamplerConfig::sampling();
    assert_eq!(
        (
            s.temperature,
            s.top_k,
            s.top_p,
            s.repeat_penalty,
            s.repeat_last_n,
            s.seed
        ),
        (0.8, 40, 0.95, 1.0, 64, 0)
    );
    assert!(SamplerConfig::default().greedy());
}
