//! A seeded pseudo-random permutation of `0..n` computed one index at a time: a 4-round Feistel
//! network on the smallest even number of bits covering `n`, with cycle-walking to stay inside
//! `0..n`. Shuffling a cache's rows this way needs no `n`-long index (8 bytes per row: 8 GB for
//! a billion-token cache), and the position of any batch is known without drawing the ones
//! before it, so a resumed run skips to its step at once.

/// A bijection of `0..n` chosen by a seed.
///
/// ```
/// use prism_cache::Permutation;
/// let p = Permutation::new(1000, 7);
/// let mut image: Vec<u64> = (0..1000).map(|i| p.at(i)).collect();
/// assert_ne!(image[..10], (0..10).collect::<Vec<u64>>()[..]);
/// image.sort_unstable();
/// assert_eq!(image, (0..1000).collect::<Vec<u64>>());
/// ```
#[derive(Clone, Debug)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u64; 4],
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Permutation {
    /// The permutation of `0..n` for `seed`.
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let mut k = splitmix(seed);
        let keys = std::array::from_fn(|_| {
            k = splitmix(k);
            k
        });
        Self {
            n,
            half_bits: bits.div_ceil(2),
            keys,
        }
    }

    /// How many indices it permutes.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// True for the permutation of nothing.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The image of `i` (`i < len()`).
    pub fn at(&self, i: u64) -> u64 {
        debug_assert!(i < self.n);
        // The Feistel network permutes 0..2^(2·half_bits) ⊇ 0..n (at most 4n); walking the cycle
        // until it lands below n is a bijection of 0..n, on average in under 4 steps.
        let mut x = i;
        loop {
            x = self.feistel(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for key in self.keys {
            let f = splitmix(right ^ key) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }
}
