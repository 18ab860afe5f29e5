//! Process-wide allocator settings for model work.
//!
//! glibc's malloc serves blocks above its mmap threshold (128 KiB at start, raised as blocks
//! are freed) with fresh `mmap`s, unmaps them again on `free`, and trims the heap once 128 KiB
//! at its top are free. A model's forward and backward passes allocate and free activation
//! buffers of a few MiB at every step, so each step faults their pages in again and the kernel
//! zeroes them (about 8% of a training step in the profile in docs/BENCHMARKS.md).
//! [`keep_freed_memory`] raises both thresholds so freed blocks stay mapped and are reused:
//! the process keeps its peak heap instead of handing it back between steps.

/// Tells glibc's allocator to keep freed memory for reuse (a no-op elsewhere). Call it once,
/// at the start of `main`, before threads start allocating.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // allocate and with values glibc documents as valid.
    unsafe {
        // 32 MiB: the largest mmap threshold glibc accepts on 64-bit targets; blocks below it
        // come from the heap and are reused after `free`.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // Never trim the heap's free top back to the OS.
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
