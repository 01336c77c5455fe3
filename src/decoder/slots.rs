//! The K/V cache slots: where each sequence is, and which slot `feed` and the readouts work
//! on. One position per slot, the current one's included, so there is no second copy of the
//! current position to keep in step.
use crate::error::{Error, Result};

pub(super) struct Slots {
    /// Tokens each slot's sequence holds (its next token's position).
    pos: Vec<usize>,
    current: usize,
    /// Most tokens of several sequences in one step (1: no such steps).
    pub group: usize,
}

impl Slots {
    pub fn new(slots: usize, group: usize) -> Slots {
        Slots {
            pos: vec![0; slots.max(1)],
            current: 0,
            group,
        }
    }

    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// The current slot's position.
    pub fn pos(&self) -> usize {
        self.pos[self.current]
    }

    /// Slot `slot`'s position (0 for a slot that does not exist).
    pub fn pos_of(&self, slot: usize) -> usize {
        self.pos.get(slot).copied().unwrap_or(0)
    }

    /// Make `slot` the current one.
    pub fn set_current(&mut self, slot: usize) -> Result<()> {
        if slot >= self.pos.len() {
            return Err(Error::Input(format!(
                "K/V cache slot {slot} does not exist ({} slots)",
                self.pos.len()
            )));
        }
        self.current = slot;
        Ok(())
    }

    /// The current sequence starts again.
    pub fn reset_current(&mut self) {
        self.pos[self.current] = 0;
    }

    /// The current sequence keeps its first `n` tokens (their K/V stay; the next token fed
    /// goes to position `n`).
    pub fn truncate_current(&mut self, n: usize) -> Result<()> {
        let pos = &mut self.pos[self.current];
        if n > *pos {
            return Err(Error::Input(format!(
                "K/V cache slot {} holds {} tokens; it cannot keep {n}",
                self.current, *pos
            )));
        }
        *pos = n;
        Ok(())
    }

    /// The current sequence took `n` more tokens.
    pub fn advance(&mut self, n: usize) {
        self.pos[self.current] += n;
    }

    /// Slot `slot`'s sequence took `n` more tokens.
    pub fn advance_slot(&mut self, slot: usize, n: usize) {
        self.pos[slot] += n;
    }
}
