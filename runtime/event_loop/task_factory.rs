//! How `create_task` starts a task. Mirrors `BaseEventLoop.set_task_factory`
//! and `get_task_factory` in `Lib/asyncio/base_events.py`; of the factories
//! asyncio accepts, tulip offers the default one and 3.12's
//! `eager_task_factory` (`Lib/asyncio/tasks.py`), as [`TaskFactory`].
//!
//! # Invariants
//! - `create_task` reads the factory as it makes each task (unless the
//!   task's own `TaskOptions::eager` says otherwise), so setting it changes
//!   only the tasks created afterwards.

use super::EventLoop;

/// Which task factory `create_task` uses (asyncio's `loop.set_task_factory`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskFactory {
    /// Tasks are scheduled and first run on the next iteration.
    #[default]
    Default,
    /// asyncio 3.12's `eager_task_factory`: a new task runs synchronously in
    /// `create_task` until its first suspension (C6).
    Eager,
}

impl EventLoop {
    // ===== task factory =====

    /// Chooses how `create_task` starts tasks (asyncio's `set_task_factory`).
    pub fn set_task_factory(&self, factory: TaskFactory) {
        self.inner.task_factory.set(factory);
    }

    /// The current task factory.
    pub fn task_factory(&self) -> TaskFactory {
        self.inner.task_factory.get()
    }
}
