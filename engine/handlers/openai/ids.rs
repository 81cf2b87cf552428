//! Ids of answers (`chatcmpl-…`, `cmpl-…`).

/// 24 hex digits that look random and never repeat in a process ([`crate::ids::unique`]).
pub(crate) fn id_hex() -> String {
    let (a, b) = crate::ids::unique();
    format!("{a:016x}{:08x}", b as u32)
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
