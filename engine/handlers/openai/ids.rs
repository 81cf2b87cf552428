//! Ids of answers (`chatcmpl-…`, `cmpl-…`).

/// 24 hex digits that look random and never repeat in a process: a random seed drawn once,
/// then a counter mixed through splitmix64 (a bijection, so distinct counts give distinct
/// ids), without a `getrandom` system call per answer.
pub(crate) fn id_hex() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<[u64; 2]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(|| {
        let mut b = [0u8; 16];
        // An id collision is harmless; fall back to zeros rather than fail the request.
        let _ = getrandom::fill(&mut b);
        let (lo, hi) = b.split_at(8);
        [
            u64::from_le_bytes(lo.try_into().unwrap_or_default()),
            u64::from_le_bytes(hi.try_into().unwrap_or_default()),
        ]
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = splitmix(seed[0] ^ n);
    let b = splitmix(seed[1].wrapping_add(n)) as u32;
    format!("{a:016x}{b:08x}")
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
    fn ids_are_hex_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| super::id_hex()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|i| i.len() == 24 && i.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
