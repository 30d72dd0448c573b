//! The time, as the broadcast path reads it: the system clock, which a
//! test can move (to 03:00 in Jakarta, past a `valid_until`) without
//! waiting. The pure core never reads a clock; this is what its callers
//! pass it, and what they pass to the statements that compare times.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

/// The system clock plus an offset (zero but in tests); clones share it.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.0.load(Ordering::Relaxed))
    }

    /// Makes `now()` read `t` (and go on from there).
    pub fn set(&self, t: DateTime<Utc>) {
        let offset = (t - Utc::now()).num_milliseconds();
        self.0.store(offset, Ordering::Relaxed);
    }
}
