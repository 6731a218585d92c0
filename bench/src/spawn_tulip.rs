//! tulip's side of the `spawn` group. Waits for area D (subprocess) to
//! land on main.

use std::path::Path;

/// False until tulip has subprocesses.
pub const AVAILABLE: bool = false;
/// Why the tulip column is n/a.
pub const MISSING: &str = "tulip's subprocess API (area D) is not on main yet";

/// 2000 × `prog`, 64 at a time.
pub fn spawn(_prog: &Path, _n: u64) -> crate::spawn_group::R {
    Err(MISSING.into())
}

/// `mib` MiB through `prog` (cat).
pub fn communicate(_prog: &Path, _mib: u64) -> crate::spawn_group::R {
    Err(MISSING.into())
}
