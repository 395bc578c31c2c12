//! Handing freed memory back to the system. A deploy renders every site of every agent (tens
//! of megabytes at thousands of sites) and frees it at once; glibc keeps such memory mapped
//! unless asked, so an idle hub would stay as large as its busiest moment.

/// Returns freed heap memory to the system (glibc's `malloc_trim`); a no-op elsewhere.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}
