//! Stop strings: the generated text is cut before the first one, even when it spans tokens.

/// Cuts the generated text at the first stop string. Text that could be the start of a stop
/// string is held back until the next piece shows whether it is, so a stop string split across
/// tokens is never sent.
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    pub fn new(stops: Vec<String>) -> Self {
        StopFilter {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Add `piece`; the text that can be sent now, and whether a stop string was reached
    /// (the text then ends just before it).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        if let Some(i) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            let out = self.held[..i].to_string();
            self.held.clear();
            return (out, true);
        }
        let h = &self.held;
        let keep = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len().min(h.len() + 1))
                    .rev()
                    .find(|&k| h.is_char_boundary(h.len() - k) && s.starts_with(&h[h.len() - k..]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let out: String = self.held.drain(..self.held.len() - keep).collect();
        (out, false)
    }

    /// What is still held at the end of the run.
    pub fn rest(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::StopFilter;

    /// Feeds `pieces`; the text sent and whether a stop string ended it.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut f = StopFilter::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (t, hit) = f.push(p);
            out += &t;
            if hit {
                return (out, true);
            }
        }
        (out + &f.rest(), false)
    }

    #[test]
    fn stop_strings_cut_the_text_even_across_pieces() {
        assert_eq!(
            run(&["\n\n"], &["Hello", " world", "\n", "\nmore"]),
            ("Hello world".into(), true)
        );
        assert_eq!(
            run(&["END"], &["abcE", "N", "D", "x"]),
            ("abc".into(), true)
        );
        // A held prefix that turns out not to be a stop string is sent after all.
        assert_eq!(run(&["END"], &["abcE", "Nx"]), ("abcENx".into(), false));
        assert_eq!(run(&["END"], &["abcEN"]), ("abcEN".into(), false));
        // The earliest of several stop strings wins; no stop strings pass everything.
        assert_eq!(run(&["b", "a"], &["xyab"]), ("xy".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        // Multi-byte characters are never split when text is held back.
        assert_eq!(run(&["éz"], &["café", "!"]), ("café!".into(), false));
    }
}
