//! The C allocator's settings for this process.

/// Caps glibc's malloc arenas at one per core. Call first thing in `main`, before any other
/// thread starts.
///
/// Why: glibc gives a thread that finds its arena busy an arena of its own, up to eight per
/// core, and memory freed into one arena serves only the threads using it. The server runs two
/// workers and up to sixteen blocking threads; with many conversations each of them came to
/// hold an arena's worth of freed pieces, and the resident memory grew through a 40 s run at
/// 64 connections and 20,000 customers (anonymous memory 6 → 26 MB; capped at two arenas,
/// 17 MB, at the same CPU per request; BENCHMARKS.md). No more threads than cores run at
/// once, so they seldom wait for each other's arena.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only changes the allocator's settings (under its own lock), and
        // M_ARENA_MAX takes any positive count.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
