//! Ids that look random and never repeat within a process (answer ids, trace ids): a random
//! seed drawn once, then a counter mixed through splitmix64 (a bijection, so distinct counts
//! give distinct values), without a `getrandom` system call per id.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Two 64-bit values, neither ever repeated in this process.
pub fn unique() -> (u64, u64) {
    static SEED: OnceLock<[u64; 2]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(|| {
        let mut b = [0u8; 16];
        // A repeated id across processes is harmless; fall back to zeros rather than fail.
        let _ = getrandom::fill(&mut b);
        let (lo, hi) = b.split_at(8);
        [
            u64::from_le_bytes(lo.try_into().unwrap_or_default()),
            u64::from_le_bytes(hi.try_into().unwrap_or_default()),
        ]
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (splitmix(seed[0] ^ n), splitmix(seed[1].wrapping_add(n)))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_do_not_repeat() {
        let seen: std::collections::HashSet<(u64, u64)> =
            (0..10_000).map(|_| super::unique()).collect();
        assert_eq!(seen.len(), 10_000);
        let firsts: std::collections::HashSet<u64> = seen.iter().map(|(a, _)| *a).collect();
        assert_eq!(firsts.len(), 10_000);
    }
}
