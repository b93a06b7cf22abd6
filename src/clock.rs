//! A monotonic clock in seconds that also works in wasm32-unknown-unknown, where
//! `std::time::Instant` panics.

/// Seconds since an arbitrary start.
#[cfg(not(target_arch = "wasm32"))]
pub fn now_s() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Seconds since an arbitrary start.
#[cfg(target_arch = "wasm32")]
pub fn now_s() -> f64 {
    js_sys::Date::now() / 1000.0
}
