//! The prefix cache: each K/V cache slot remembers the tokens it holds after its last request,
//! and a new request takes the free slot whose tokens share the longest prefix with its prompt
//! (feeding only the rest), or else the one least recently used.

/// What one slot holds once its request has left.
#[derive(Clone, Default)]
struct Held {
    tokens: Vec<u32>,
    /// When it was last used (a counter: higher is more recent).
    used: u64,
}

pub struct PrefixCache {
    slots: Vec<Held>,
    tick: u64,
    /// Off: every request starts its slot over (and takes the least recently used).
    pub enabled: bool,
}

/// The length of the common prefix of `a` and `b`.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    pub fn new(slots: usize, enabled: bool) -> PrefixCache {
        PrefixCache {
            slots: vec![Held::default(); slots],
            tick: 0,
            enabled,
        }
    }

    /// The slot for `prompt` among those `free` says are free, and how many of its first
    /// tokens that slot holds already. At least the prompt's last token is always fed again
    /// (its logits choose the first token). The slot's record is cleared: it is in use.
    pub fn take(&mut self, prompt: &[u32], free: impl Fn(usize) -> bool) -> Option<(usize, usize)> {
        let reusable = |h: &Held| match self.enabled {
            true => common_prefix(&h.tokens, prompt).min(prompt.len().saturating_sub(1)),
            false => 0,
        };
        // The longest reuse, then the least recently used, then the lowest.
        let (slot, reuse) = (0..self.slots.len())
            .filter(|&s| free(s))
            .map(|s| (s, reusable(&self.slots[s])))
            .max_by(|a, b| {
                (a.1.cmp(&b.1))
                    .then(self.slots[b.0].used.cmp(&self.slots[a.0].used))
                    .then(b.0.cmp(&a.0))
            })?;
        self.slots[slot].tokens.clear();
        Some((slot, reuse))
    }

    /// `slot`'s request left with these tokens in its K/V (empty: nothing to trust).
    pub fn release(&mut self, slot: usize, tokens: Vec<u32>) {
        self.tick += 1;
        if let Some(h) = self.slots.get_mut(slot) {
            *h = Held {
                tokens,
                used: self.tick,
            };
        }
    }

    /// Every slot's record is dropped (a new device holds nothing).
    pub fn forget(&mut self) {
        for h in &mut self.slots {
            h.tokens.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_then_least_recently_used() {
        let mut c = PrefixCache::new(3, true);
        let all = |_| true;
        // Empty slots: the first least recently used (all equal: the lowest).
        assert_eq!(c.take(&[1, 2, 3], all), Some((0, 0)));
        c.release(0, vec![1, 2, 3, 4]);
        c.release(1, vec![1, 9]);
        c.release(2, vec![7]);
        // Slot 0 shares 3 tokens; the whole prompt matches, but its last is fed again.
        assert_eq!(c.take(&[1, 2, 3], all), Some((0, 2)));
        assert_eq!(c.take(&[1, 2, 3, 4, 5], all), Some((1, 1)));
        // No slot shares anything: the least recently used free one.
        let mut c = PrefixCache::new(3, true);
        c.release(2, vec![1]);
        c.release(0, vec![2]);
        c.release(1, vec![3]);
        assert_eq!(c.take(&[9, 9], all), Some((2, 0)));
        assert_eq!(c.take(&[9, 9], |s| s != 2), Some((0, 0)));
        // A busy slot is never chosen; none free: None.
        assert_eq!(c.take(&[5, 6], |s| s == 1), Some((1, 0)));
        assert_eq!(c.take(&[5, 6], |_| false), None);
        // Disabled: nothing reused.
        let mut c = PrefixCache::new(1, false);
        c.release(0, vec![1, 2, 3]);
        assert_eq!(c.take(&[1, 2, 3, 4], all), Some((0, 0)));
    }
}
