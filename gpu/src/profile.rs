//! Per-kernel timing, for finding where a step spends its time: with the environment variable
//! [`PROFILE_ENV`] set (to anything), every launch waits for the device before and after it and
//! its wall time is added to its kernel's total. (This serialises the device, so totals are for
//! comparing kernels, not for timing a whole step.) [`report`] returns the totals.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Environment variable that turns profiling on.
pub const PROFILE_ENV: &str = "PROTOKD_GPU_PROFILE";

/// Launch count and total wall time, per kernel name.
type Table = Mutex<HashMap<String, (u64, Duration)>>;

/// The table, when profiling is on.
fn table() -> Option<&'static Table> {
    static TABLE: OnceLock<Option<Table>> = OnceLock::new();
    TABLE
        .get_or_init(|| std::env::var_os(PROFILE_ENV).map(|_| Mutex::default()))
        .as_ref()
}

/// Whether launches are being timed.
pub fn enabled() -> bool {
    table().is_some()
}

/// Adds one launch of `kernel` that took `t`.
pub(crate) fn record(kernel: &str, t: Duration) {
    if let Some(m) = table() {
        let mut m = m.lock().unwrap();
        let e = m.entry(kernel.to_string()).or_default();
        e.0 += 1;
        e.1 += t;
    }
}

/// `(kernel, launches, seconds)`, the most time first; `None` when profiling is off.
pub fn report() -> Option<Vec<(String, u64, f64)>> {
    let m = table()?.lock().unwrap();
    let mut rows: Vec<_> = m
        .iter()
        .map(|(k, (n, t))| (k.clone(), *n, t.as_secs_f64()))
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    Some(rows)
}
