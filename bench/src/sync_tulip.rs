//! tulip's side of the `sync` group. Waits for area B (locks, queues,
//! gather) to land on main.

/// False until tulip has Lock, Queue and gather.
pub const AVAILABLE: bool = false;

/// Runs one `sync` case on tulip.
pub fn run(_case: &str, _ops: u64) -> crate::sync_group::R {
    Err("tulip's Lock/Queue/gather (area B) are not on main yet".into())
}
