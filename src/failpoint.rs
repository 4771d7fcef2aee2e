//! Crash points for tests. `ZOMBI_FAILPOINT=<name>` makes the process abort when it reaches the
//! point of that name, so a test can crash the broker exactly between two steps of a commit,
//! where a `kill -9` at a chosen moment only lands by luck. Unset (production), a point costs
//! one comparison.

use std::sync::OnceLock;

static SELECTED: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process (no destructors, no flushes: like `kill -9`) if `name` is the selected point.
pub fn hit(name: &str) {
    let selected = SELECTED.get_or_init(|| std::env::var("ZOMBI_FAILPOINT").ok().filter(|s| !s.is_empty()));
    if selected.as_deref() == Some(name) {
        eprintln!("zombi: failpoint {name} reached; aborting");
        std::process::abort();
    }
}
