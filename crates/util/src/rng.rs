//! xorshift64*: fast and shard-local. The blast spreads test data with it and the proxy samples
//! its fault rules; nothing secret depends on it.

/// A xorshift64* generator; one per shard, never shared.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value: a zero state would stick, so the low bit is set).
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_seed_does_not_stick() {
        let mut r = Rng::new(0);
        let (a, b) = (r.next(), r.next());
        assert!(a != 0 && b != 0 && a != b);
    }
}
