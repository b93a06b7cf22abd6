//! Counts of the WebGPU-level calls a step makes, natively: compute dispatches, queue submits,
//! bind groups created, host writes to buffers, and reads back to the CPU with their bytes.
//!
//! wgpu has no per-call hook, but wgpu-core logs every such call of its API at `trace` level
//! (its `api_log!`: "ComputePass::dispatch …", "Queue::submit", "Device::create_bind_group ->
//! …", "Queue::write_buffer", "Buffer::map_async … op: … Read"). [`install`] makes a logger that
//! counts those lines and nothing else; they are the same calls the browser's worker counts by
//! wrapping WebGPU's own methods (`www/worker.js`), so the two counts can be compared. Only the
//! CLI's `--stats` and the tests install it: formatting every trace line costs time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Calls made, in total or per token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct GpuCalls {
    /// Compute dispatches (`dispatchWorkgroups`).
    pub dispatches: f64,
    /// Queue submits.
    pub submits: f64,
    /// Bind groups created.
    pub bind_groups: f64,
    /// Host writes to buffers (`queue.writeBuffer`).
    pub writes: f64,
    /// Buffers mapped for reading (GPU → CPU readbacks).
    pub readbacks: f64,
    /// Bytes those readbacks map.
    pub readback_bytes: f64,
}

impl GpuCalls {
    /// The calls from `earlier` to `self`, per token; `None` without tokens.
    pub fn per_token(&self, earlier: &GpuCalls, tokens: usize) -> Option<GpuCalls> {
        if tokens == 0 {
            return None;
        }
        let n = tokens as f64;
        let per = |a: f64, b: f64| ((a - b) / n * 100.0).round() / 100.0;
        Some(GpuCalls {
            dispatches: per(self.dispatches, earlier.dispatches),
            submits: per(self.submits, earlier.submits),
            bind_groups: per(self.bind_groups, earlier.bind_groups),
            writes: per(self.writes, earlier.writes),
            readbacks: per(self.readbacks, earlier.readbacks),
            readback_bytes: per(self.readback_bytes, earlier.readback_bytes),
        })
    }
}

/// dispatches, submits, bind groups, writes, readbacks, readback bytes.
static COUNTS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

struct Counter;

impl log::Log for Counter {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() == log::Level::Trace && m.target().starts_with("wgpu_core")
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = record.args().to_string();
        let slot = if line.starts_with("ComputePass::dispatch") {
            0
        } else if line == "Queue::submit" {
            1
        } else if line.starts_with("Device::create_bind_group ->") {
            2
        } else if line == "Queue::write_buffer" {
            3
        } else if line.starts_with("Buffer::map_async") && line.contains("Read") {
            COUNTS[5].fetch_add(mapped_bytes(&line), Relaxed);
            4
        } else {
            return;
        };
        COUNTS[slot].fetch_add(1, Relaxed);
    }

    fn flush(&self) {}
}

/// The size of a map_async line, "… size Some(196608) op: …" (0 when wgpu maps to the end).
fn mapped_bytes(line: &str) -> u64 {
    line.split_once("size Some(").and_then(|(_, rest)| rest.split(')').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

static COUNTER: Counter = Counter;

/// Starts counting, for the whole process. `false` when another logger was installed first
/// (then nothing is counted).
pub fn install() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *INSTALLED.get_or_init(|| log::set_logger(&COUNTER).is_ok());
    if ok {
        log::set_max_level(log::LevelFilter::Trace);
    }
    ok
}

/// The calls counted since [`install`].
pub fn snapshot() -> GpuCalls {
    let c = |i: usize| COUNTS[i].load(Relaxed) as f64;
    GpuCalls { dispatches: c(0), submits: c(1), bind_groups: c(2), writes: c(3), readbacks: c(4), readback_bytes: c(5) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_mapped_size() {
        assert_eq!(mapped_bytes("Buffer::map_async Id(3,1) offset 0 size Some(196608) op: BufferMapOperation { host: Read, .. }"), 196608);
        assert_eq!(mapped_bytes("Buffer::map_async Id(3,1) offset 0 size None op: …"), 0);
    }

    #[test]
    fn per_token_divides_the_difference() {
        let a = GpuCalls { dispatches: 10.0, submits: 1.0, ..GpuCalls::default() };
        let b = GpuCalls { dispatches: 40.0, submits: 4.0, ..GpuCalls::default() };
        assert_eq!(b.per_token(&a, 3).unwrap().dispatches, 10.0);
        assert_eq!(b.per_token(&a, 0), None);
    }
}
