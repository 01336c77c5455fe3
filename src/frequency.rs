//! Token-frequency deciles from training counts (tide.token_counts): `tide eval`'s, the
//! inspection's and the page's one definition (docs/format.md, "Evaluation definitions").

pub const DECILES: usize = 10;

/// Decile (0 = rarest) of every id: ids seen in training sorted by (count, id) and cut into 10
/// groups of equal size (the first `n % 10` groups one larger); unseen ids join the rarest.
pub fn deciles(counts: &[u64]) -> Vec<u8> {
    let mut seen: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0).collect();
    seen.sort_by_key(|&i| (counts[i], i));
    let mut dec = vec![0u8; counts.len()];
    let (n, base, extra) = (seen.len(), seen.len() / DECILES, seen.len() % DECILES);
    let mut at = 0;
    for d in 0..DECILES {
        let size = base + usize::from(d < extra);
        for &id in &seen[at..(at + size).min(n)] {
            dec[id] = d as u8;
        }
        at += size;
    }
    dec
}
