//! The seeded random numbers of the seed-004 examples (`random.seed(444)`).
//! Shared with `#[path = "support/seeded_rng.rs"] mod seeded_rng;`.
#![allow(dead_code)]

/// A tiny xorshift64* generator. Each coroutine draws from its own stream
/// (seeded from 444 and its number), so the values do not depend on which of
/// two coroutines waking in the same instant runs first.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(444 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `random.randint(0, 10)`.
    pub fn randint_0_10(&mut self) -> u64 {
        self.next_u64() % 11
    }
}
