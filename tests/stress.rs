//! The engine under stress, on the tiny test model, on the CPU and on wgpu (lavapipe): a
//! 200-turn conversation far past the context window, 150 start/stop cycles, a stop during the
//! prefill, a new chat during a generation, and 20 model swaps. Nothing may crash, the trimming
//! must be right, and memory must not grow: heap bytes (a counting allocator; this binary runs
//! nothing else) and the wgpu device's live buffers and bytes. The first run of a workload
//! compiles kernels and fills the allocator's pools for each new shape (bounded by the context
//! length), so memory is compared between repeats of the same workload: a leak grows with each.
//!
//! Its own test binary, so that no other test allocates meanwhile; the scenarios take a lock
//! and run one at a time. Each prints a `stress:` line that RELIABILITY.md quotes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

use ember::sampling::SamplingConfig;
use ember::testkit::{test_backends as backends, tiny_model_bytes};
use ember::{Backend, Engine, Error, GenerateOptions, LoadOptions, Message, Prompt};

struct Counting;
static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HELD.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        HELD.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HELD.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HELD.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Heap bytes held by the process, and the device's live buffers and bytes (wgpu only).
#[derive(Debug, Clone, Copy)]
struct Memory {
    heap: isize,
    buffers: u64,
    device_bytes: u64,
}

fn memory(e: &Engine) -> Memory {
    let pool = e.device_memory();
    Memory { heap: HELD.load(Ordering::Relaxed), buffers: pool.map_or(0, |p| p.buffers), device_bytes: pool.map_or(0, |p| p.bytes) }
}

/// Growth from `a` to `b` must not scale with the cycles run: at most `heap_slack` heap bytes
/// and no more live buffers or device bytes than before.
#[track_caller]
fn assert_no_growth(what: &str, a: Memory, b: Memory, heap_slack: isize) {
    assert!(b.heap - a.heap <= heap_slack, "{what}: heap grew by {} bytes ({a:?} → {b:?})", b.heap - a.heap);
    assert!(b.buffers <= a.buffers, "{what}: live device buffers {} → {}", a.buffers, b.buffers);
    assert!(b.device_bytes <= a.device_bytes, "{what}: device bytes in use {} → {}", a.device_bytes, b.device_bytes);
}

fn engine(backend: Backend, max_context: usize) -> Engine {
    let device = ember::backend::device(backend).unwrap();
    Engine::load(&tiny_model_bytes(), device, LoadOptions { max_context, ..LoadOptions::default() }).unwrap()
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions { sampling: SamplingConfig::greedy(), max_tokens, stop: vec![], top_n: 5, ignore_eos: false, stop_repeats: false, grammar: None }
}

/// Runs a generation to its end; its tokens.
fn finish(e: &mut Engine) -> Vec<u32> {
    while e.next().unwrap().is_some() {}
    e.produced().to_vec()
}

/// One long conversation: `turns` user messages, each answered with up to 6 greedy tokens,
/// through `fit_chat` as the app does it. Checks the trimming at every turn; returns the answers
/// and the turn where trimming began.
fn converse(e: &mut Engine, turns: usize) -> (Vec<String>, usize, usize) {
    let reserve = 16;
    let mut messages = vec![Message::new("system", "Be brief.")];
    let (mut answers, mut dropped_last, mut first_trim, mut most_kept) = (Vec::new(), 0, None, 0);
    for turn in 0..turns {
        // Short turns (the tiny tokenizer spends a token per byte), so that several fit.
        messages.push(Message::new("user", &format!("q{turn}")));
        let fit = e.fit_chat(&messages, reserve).unwrap();
        // The kept part fits with the reserve, starts with a user turn and keeps the system
        // message; trimming only ever moves forward.
        assert!(fit.tokens + fit.reserve <= fit.limit, "turn {turn}: {fit:?}");
        assert_eq!(messages[fit.first].role, "user", "turn {turn}: {fit:?}");
        assert!(fit.dropped >= dropped_last, "turn {turn}: dropped went back ({fit:?})");
        dropped_last = fit.dropped;
        most_kept = most_kept.max(messages.len() - fit.first);
        if fit.dropped > 0 && first_trim.is_none() {
            first_trim = Some(turn);
        }
        let kept: Vec<Message> = messages[..1].iter().chain(&messages[fit.first..]).cloned().collect();
        // Exactly what is kept: the count equals the rendered prompt's.
        assert_eq!(e.count_chat(&kept).unwrap(), fit.tokens);
        e.start(&Prompt::Chat(kept), greedy(6)).unwrap();
        let answer = finish(e);
        assert!(!answer.is_empty(), "turn {turn}: no token");
        let text = e.tokenizer().decode(&answer).unwrap();
        messages.push(Message::new("assistant", &text));
        answers.push(text);
    }
    assert!(most_kept >= 5, "at most {most_kept} messages were ever kept: the trimming was not exercised");
    (answers, first_trim.expect("the conversation never outgrew the window"), dropped_last)
}

#[test]
fn a_200_turn_conversation_runs_past_the_window_with_right_trimming() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for backend in backends() {
        let mut e = engine(backend, 128);
        // The first conversation compiles kernels and fills the allocator's pools for every
        // shape it meets; the same conversation again must need nothing more.
        let (answers, first_trim, dropped) = converse(&mut e, 200);
        e.reset();
        let before = memory(&e);
        let again = converse(&mut e, 200);
        let after = memory(&e);
        if std::env::var("EMBER_STRESS_THIRD").is_ok() {
            e.reset();
            converse(&mut e, 200);
            println!("third run: {:?}", memory(&e));
        }
        assert_eq!(again, (answers, first_trim, dropped), "{backend:?}: the second run differs");
        assert_no_growth(&format!("{backend:?} 200 turns"), before, after, 256 << 10);
        println!(
            "stress: {backend:?}: 200 turns in a 128-token window, twice: trimming from turn {first_trim}, {dropped} messages left out at the end; memory after the 1st and the 2nd run: {before:?} → {after:?}"
        );
    }
}

#[test]
fn a_hundred_start_stop_cycles_leak_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for backend in backends() {
        let mut e = engine(backend, 96);
        // 50 cycles from a fresh conversation: stops after 0 to 4 tokens, a reset now and then.
        let pass = |e: &mut Engine| {
            e.reset();
            for i in 0..50 {
                let prompt = Prompt::Chat(vec![Message::new("user", &format!("cycle {i}"))]);
                e.start(&prompt, greedy(32)).unwrap();
                for _ in 0..(i % 5) {
                    e.next().unwrap();
                }
                e.stop();
                // A stopped generation yields nothing more.
                assert!(e.next().unwrap().is_none(), "cycle {i}: a step after stop");
                if i % 7 == 6 {
                    e.reset();
                }
            }
        };
        // The first pass meets every shape; the 100 cycles after it must need nothing more.
        pass(&mut e);
        let before = memory(&e);
        pass(&mut e);
        pass(&mut e);
        let after = memory(&e);
        assert_no_growth(&format!("{backend:?} start/stop"), before, after, 256 << 10);
        // And the engine still answers as a fresh one does.
        e.reset();
        let prompt = Prompt::Chat(vec![Message::new("user", "after")]);
        e.start(&prompt, greedy(8)).unwrap();
        let got = finish(&mut e);
        let mut fresh = engine(backend, 96);
        fresh.start(&prompt, greedy(8)).unwrap();
        assert_eq!(got, finish(&mut fresh), "{backend:?}: tokens after 150 cycles differ from a fresh engine's");
        println!("stress: {backend:?}: 150 start/stop cycles; memory after the first 50 and after all: {before:?} → {after:?}");
    }
}

#[test]
fn a_stop_during_prefill_and_a_new_chat_during_generation_leave_a_clean_engine() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for backend in backends() {
        let mut e = engine(backend, 128);
        let long = Prompt::Chat(vec![Message::new("user", &"a long question ".repeat(5))]);
        let next = Prompt::Chat(vec![Message::new("user", "something else")]);
        let mut fresh = engine(backend, 128);
        fresh.start(&next, greedy(8)).unwrap();
        let want = finish(&mut fresh);
        fresh.reset();
        fresh.start(&long, greedy(8)).unwrap();
        let want_long = finish(&mut fresh);

        // Stop after one chunk of the prompt: the part that ran stays cached, correctly.
        e.start(&long, greedy(8)).unwrap();
        let waiting = pollster::block_on(e.prefill_async(4)).unwrap();
        assert!(waiting > 0, "the prompt should not be done after 4 tokens");
        e.stop();
        assert!(e.next().unwrap().is_none());
        assert_eq!(e.produced(), &[] as &[u32]);
        // Resuming the same prompt reuses that part and gives the fresh engine's answer.
        let info = e.start(&long, greedy(8)).unwrap();
        assert_eq!(info.reused, 4, "the stopped prefill's tokens should be reused");
        assert_eq!(finish(&mut e), want_long, "{backend:?}: answer after a stopped prefill");

        // A new chat in the middle of an answer.
        e.start(&long, greedy(8)).unwrap();
        e.next().unwrap();
        e.next().unwrap();
        e.reset();
        assert!(matches!(e.next(), Err(Error::NotStarted)));
        e.start(&next, greedy(8)).unwrap();
        assert_eq!(finish(&mut e), want, "{backend:?}: answer in a new chat started mid-generation");
        println!("stress: {backend:?}: stop during prefill and new chat mid-answer: same tokens as a fresh engine");
    }
}

#[test]
fn twenty_model_swaps_give_back_their_memory() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for backend in backends() {
        let prompt = Prompt::Chat(vec![Message::new("user", "hi")]);
        let swap = || {
            let mut e = engine(backend, 64);
            e.start(&prompt, greedy(4)).unwrap();
            finish(&mut e);
            memory(&e)
        };
        let _ = swap();
        let first = swap();
        let mut last = first;
        for _ in 0..18 {
            last = swap();
        }
        assert_no_growth(&format!("{backend:?} swaps"), first, last, 256 << 10);
        println!("stress: {backend:?}: 20 model loads and drops; memory with the 2nd and 20th loaded: {first:?} → {last:?}");
    }
}
