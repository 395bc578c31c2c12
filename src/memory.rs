//! The allocator policy, in one place. glibc's malloc is tuned once at start (few arenas) and
//! asked to hand freed memory back after large, short-lived work: a deploy renders every site
//! of every agent (tens of megabytes at thousands of sites) and frees it at once, and glibc
//! keeps such memory mapped unless asked, so an idle hub would stay as large as its busiest
//! moment. Elsewhere (musl, other systems) every function here is a no-op.

/// glibc gives each thread that allocates at once an arena of its own (up to eight per core),
/// and memory freed in one is rarely handed back: a server with a few busy threads grows its
/// resident size for nothing. Two arenas keep the hub and the agent small; they spend most
/// of their time waiting on sockets, not contending for the allocator. Call it first thing
/// in `main`, before any thread exists.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; it is called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap memory to the system (glibc's `malloc_trim`). It blocks for a moment
/// on a large heap: async code calls [`release_freed_later`] or [`release_freed_off_runtime`].
pub(crate) fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// After large work is done and freed: returns the memory on the blocking pool, without
/// waiting for it (off the answer's path). Needs a tokio runtime.
pub(crate) fn release_freed_later() {
    drop(tokio::task::spawn_blocking(release_freed));
}

/// Returns freed memory on the blocking pool and waits until it is done, for a loop that
/// must not start its next round before.
pub(crate) async fn release_freed_off_runtime() {
    // A trim that panicked released nothing; there is nothing to recover.
    let _ = crate::blocking::run(release_freed).await;
}
