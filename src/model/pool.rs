//! The CPU's threads: one job at a time, cut into parts that the caller and the pool's workers
//! take in turn. A decoded token runs about two hundred products of a fraction of a millisecond
//! each, so what matters is how fast a worker starts a part: rayon's workers sleep between
//! jobs, and in a browser waking one (`Atomics.notify`) cost more than the part it then ran
//! (two threads decoded slower than one). Here an idle worker spins on the job counter for about
//! a millisecond before it sleeps, as llama.cpp's threads do, so that within a token it is
//! always awake, and between answers it sleeps.
//!
//! Natively the workers are OS threads; in the threaded wasm build they are the web workers of
//! rayon's pool (`wasm-bindgen-rayon` starts them, sharing the module's memory), each given
//! this loop for good. The single-thread wasm build has no pool.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Condvar, Mutex};

/// The job now: its generation (32 bits), the next part to take (16) and its number of parts
/// (16), in one word, so that a worker still finishing an older job can never take a part of a
/// newer one (the generation would not match).
static TICKET: AtomicU64 = AtomicU64::new(0);
/// The job's function: a pointer to the caller's `&dyn Fn(usize)`, valid while the job runs.
static JOB: AtomicUsize = AtomicUsize::new(0);
/// Parts of the current job finished, and whether one of them panicked.
static DONE: AtomicU32 = AtomicU32::new(0);
static PANICKED: AtomicBool = AtomicBool::new(false);
/// One caller at a time (natively, two test threads may multiply at once: the second runs alone).
static BUSY: AtomicBool = AtomicBool::new(false);
/// Workers started, and those asleep.
static WORKERS: AtomicUsize = AtomicUsize::new(0);
static SLEEPERS: AtomicUsize = AtomicUsize::new(0);
static SLEEP: Mutex<()> = Mutex::new(());
static WAKE: Condvar = Condvar::new();

/// Checks of the job counter before an idle worker sleeps: about a millisecond.
#[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
const SPINS: u32 = 1 << 18;

type Job<'a> = &'a (dyn Fn(usize) + Sync);

const fn ticket(generation: u64, next: u64, parts: u64) -> u64 {
    (generation << 32) | (next << 16) | parts
}

/// How many threads the CPU's work uses (the caller and `n − 1` workers); 1 unless the embedder
/// says otherwise (`ember --threads`, the web worker). Results do not depend on it.
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Lets the CPU's work use `n` threads, starting the workers that needs (the single-thread wasm
/// build has none, and stays at one).
pub fn set_threads(n: usize) {
    grow(n.max(1) - 1);
    THREADS.store(n.max(1).min(workers() + 1), Relaxed);
}

/// The threads the CPU's work uses now.
pub fn threads() -> usize {
    THREADS.load(Relaxed)
}

/// A pointer handed to the parts of one job, each of which writes only its own elements.
pub struct Parts<T>(*mut T);
// SAFETY: shared only with `run`'s parts, which touch disjoint elements (see its users).
unsafe impl<T> Sync for Parts<T> {}

impl<T> Parts<T> {
    /// The elements of `v`, for the parts of one job to write.
    pub fn of(v: &mut [T]) -> Self {
        Parts(v.as_mut_ptr())
    }

    /// Element `k` (a method, so that a closure captures the `Parts`, not its bare pointer).
    pub fn at(&self, k: usize) -> *mut T {
        self.0.wrapping_add(k)
    }
}

/// Starts workers until there are `n` (none in the single-thread wasm build).
fn grow(n: usize) {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    while WORKERS.load(SeqCst) < n {
        WORKERS.fetch_add(1, SeqCst);
        #[cfg(not(target_arch = "wasm32"))]
        std::thread::Builder::new().name("ember-cpu".into()).spawn(work).expect("a CPU thread");
        // One of rayon's web workers, kept for this loop (the pool has one per worker wanted).
        #[cfg(target_arch = "wasm32")]
        rayon::spawn(work);
    }
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    let _ = n;
}

/// How many workers run beside the caller.
pub fn workers() -> usize {
    WORKERS.load(SeqCst)
}

/// Runs `f(0)`, …, `f(parts − 1)` on the caller and the workers, and returns when all are done.
/// On one thread, or while another caller holds the workers, the caller runs every part itself.
pub fn run(parts: usize, f: Job) {
    assert!(parts < 1 << 16, "too many parts");
    if parts <= 1 || threads() == 1 || BUSY.swap(true, Acquire) {
        (0..parts).for_each(f);
        return;
    }
    let generation = (TICKET.load(SeqCst) >> 32) + 1;
    DONE.store(0, SeqCst);
    JOB.store(&f as *const Job as usize, SeqCst);
    TICKET.store(ticket(generation & 0xffff_ffff, 0, parts as u64), SeqCst);
    if SLEEPERS.load(SeqCst) > 0 {
        let _held = SLEEP.lock().unwrap_or_else(|e| e.into_inner());
        WAKE.notify_all();
    }
    take_parts(generation & 0xffff_ffff);
    // The parts others took are under way: wait for them (briefly: a part is a fraction of the job).
    while DONE.load(Acquire) < parts as u32 {
        std::hint::spin_loop();
    }
    BUSY.store(false, Release);
    assert!(!PANICKED.swap(false, SeqCst), "a CPU thread panicked");
}

/// Takes and runs parts of job `generation` until none is left.
fn take_parts(generation: u64) {
    let mut t = TICKET.load(Acquire);
    loop {
        let (next, parts) = ((t >> 16) & 0xffff, t & 0xffff);
        if t >> 32 != generation || next >= parts {
            return;
        }
        match TICKET.compare_exchange_weak(t, ticket(generation, next + 1, parts), AcqRel, Acquire) {
            Ok(_) => {
                // SAFETY: part `next` of this job is not done, so its caller is still in `run`,
                // waiting, and the `Job` it points to is alive.
                let f = unsafe { *(JOB.load(Acquire) as *const Job) };
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(next as usize))).is_ok();
                if !ok {
                    PANICKED.store(true, SeqCst);
                }
                DONE.fetch_add(1, Release);
                t = TICKET.load(Acquire);
            }
            Err(now) => t = now,
        }
    }
}

/// A worker: takes parts of each new job; spins a while when there is none, then sleeps.
#[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
fn work() {
    let mut seen = TICKET.load(SeqCst) >> 32;
    loop {
        let mut spins = 0;
        while TICKET.load(Acquire) >> 32 == seen {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut held = SLEEP.lock().unwrap_or_else(|e| e.into_inner());
            SLEEPERS.fetch_add(1, SeqCst);
            // Checked again after saying so: a caller that published before it saw no sleeper.
            while TICKET.load(SeqCst) >> 32 == seen {
                held = WAKE.wait(held).unwrap_or_else(|e| e.into_inner());
            }
            SLEEPERS.fetch_sub(1, SeqCst);
        }
        seen = TICKET.load(Acquire) >> 32;
        take_parts(seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part runs once, whichever thread takes it, job after job.
    #[test]
    fn every_part_runs_once() {
        set_threads(3);
        for parts in [1, 2, 7, 64] {
            for _ in 0..50 {
                let hits: Vec<AtomicU32> = (0..parts).map(|_| AtomicU32::new(0)).collect();
                run(parts, &|k| {
                    hits[k].fetch_add(1, SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "{parts} parts");
            }
        }
        set_threads(1);
    }
}
