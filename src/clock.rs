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

/// Seconds since an arbitrary start: `performance.now()` (in a page or a worker), which is
/// monotonic and finer than `Date.now()`'s whole milliseconds. A tiny model's token, or a
/// grammar's mask, takes less than one, and timed 0 it made speeds of 0 tok/s.
#[cfg(target_arch = "wasm32")]
pub fn now_s() -> f64 {
    use js_sys::{Function, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    let precise = || -> Option<f64> {
        let perf = Reflect::get(&js_sys::global(), &JsValue::from_str("performance")).ok()?;
        let now = Reflect::get(&perf, &JsValue::from_str("now")).ok()?.dyn_into::<Function>().ok()?;
        now.call0(&perf).ok()?.as_f64()
    };
    precise().unwrap_or_else(js_sys::Date::now) / 1000.0
}

/// Seconds since the Unix epoch (UTC), for dates in prompts.
#[cfg(not(target_arch = "wasm32"))]
pub fn unix_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Seconds since the Unix epoch (UTC), for dates in prompts.
#[cfg(target_arch = "wasm32")]
pub fn unix_s() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

/// Python's `time.strftime(fmt, time.gmtime(t))` for the directives chat templates use
/// (`strftime_now("%d %b %Y")` in Llama 3.x's and SmolLM3's): `%Y %y %m %d %e %j %H %M %S %b %B
/// %a %A %p %%`; any other is written as it stands. English names, as Python's C locale.
pub fn strftime(fmt: &str, t: i64) -> String {
    const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][(month - 1) as usize] + i64::from(leap && month > 2);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out += &year.to_string(),
            Some('y') => out += &format!("{:02}", year.rem_euclid(100)),
            Some('m') => out += &format!("{month:02}"),
            Some('d') => out += &format!("{day:02}"),
            Some('e') => out += &format!("{day:2}"),
            Some('j') => out += &format!("{:03}", before + day),
            Some('H') => out += &format!("{h:02}"),
            Some('M') => out += &format!("{m:02}"),
            Some('S') => out += &format!("{s:02}"),
            Some('p') => out += if h < 12 { "AM" } else { "PM" },
            Some('b') => out += &MONTHS[(month - 1) as usize][..3],
            Some('B') => out += MONTHS[(month - 1) as usize],
            Some('a') => out += &DAYS[weekday][..3],
            Some('A') => out += DAYS[weekday],
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}
