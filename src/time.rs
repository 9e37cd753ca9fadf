//! Wall-clock time in the unit that JWT claims and the store use.

use std::time::{SystemTime, UNIX_EPOCH};

/// Returns the current time in whole seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    // A clock before 1970 means a broken host. Returning 0 keeps the server
    // running, and every token it issues is then already expired.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}
