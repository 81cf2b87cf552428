//! Returning freed heap memory to the system after bursts (glibc's allocator keeps it).
//!
//! glibc's `malloc` keeps freed memory in its arenas (one per thread that allocated, up to
//! eight per core) instead of returning it: after 500 slow streams, 100 slow bodies and 2,000
//! forged keys, `serve` kept two thirds more than its idle RSS (doc/performance.md, "Under
//! abuse"). [`limit_arenas`] caps the arenas at start-up and [`trim`] hands free pages back;
//! `serve` calls it every 2 s when connections have closed. Other allocators and platforms:
//! both do nothing.

/// Caps glibc's malloc arenas at `n` (call before the runtime starts its threads).
pub fn limit_arenas(n: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = n;
}

/// Returns free heap pages to the system. It walks the allocator's free lists under their
/// locks, so run it on the blocking pool.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim walks the allocator's own free lists under its locks; 0 keeps no
    // extra padding at the top of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}
