//! Per-task context values: the counterpart of Python's `contextvars` as
//! asyncio uses it (each task runs in a copy of its creator's context).
//!
//! A [`ContextVar`] is a key (usually a `static`). Its values live in the
//! current task's context: an immutable map that `create_task` shares with
//! the new task. [`ContextVar::set`] replaces the current task's map with an
//! updated copy, so a child never sees its parent's later changes, and a
//! parent never sees its child's (asyncio's `copy_context()` semantics).
//!
//! Production contextvars use a HAMT so that a copy is O(1) and a set is
//! O(log n); here a set clones a small `HashMap`, which is plenty for the
//! handful of variables a program has.
//!
//! # Invariants
//! - A context map is never mutated once it is shared: `set` builds a new one.
//! - A variable's id is assigned once (on first use) and never reused.
//! - Outside a task there is no context: `get` gives the default, and `set`
//!   fails.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::tasks::{current_context, set_current_context};

/// The values of one context: variable id → value.
type Map = HashMap<usize, Rc<dyn Any>>;

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// Python's `contextvars.ContextVar`: a value per task, inherited by the
/// tasks it creates.
///
/// ```
/// use tulip::ContextVar;
/// static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
///
/// tulip::run(async {
///     REQUEST_ID.set("12345".to_string())?;
///     let child = tulip::create_task(async {
///         let seen = REQUEST_ID.get();          // inherited
///         REQUEST_ID.set("child".to_string())?; // not seen by the parent
///         Ok(seen)
///     })?;
///     assert_eq!(child.await?.as_deref(), Some("12345"));
///     assert_eq!(REQUEST_ID.get().as_deref(), Some("12345"));
///     Ok(())
/// }).unwrap();
/// ```
pub struct ContextVar<T> {
    name: &'static str,
    /// 0 until first use.
    id: AtomicUsize,
    _t: PhantomData<fn() -> T>,
}

impl<T: Clone + 'static> ContextVar<T> {
    /// A new variable, with no value in any context.
    pub const fn new(name: &'static str) -> ContextVar<T> {
        ContextVar {
            name,
            id: AtomicUsize::new(0),
            _t: PhantomData,
        }
    }

    /// The variable's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn id(&self) -> usize {
        let id = self.id.load(Ordering::Relaxed);
        if id != 0 {
            return id;
        }
        let new = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        match self
            .id
            .compare_exchange(0, new, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => new,
            Err(existing) => existing,
        }
    }

    /// The value in the current task's context, if set there (or inherited).
    pub fn get(&self) -> Option<T> {
        let ctx = current_context()?;
        let map = ctx.downcast_ref::<Map>()?;
        map.get(&self.id())?.downcast_ref::<T>().cloned()
    }

    /// The value, or `default` (Python's `var.get(default)`).
    pub fn get_or(&self, default: T) -> T {
        self.get().unwrap_or(default)
    }

    /// Sets the value in the current task's context. Returns the previous
    /// value (what Python's `Token.old_value` holds), to restore it with
    /// [`reset`](Self::reset). Fails outside a task.
    pub fn set(&self, value: T) -> Result<Option<T>> {
        self.replace(Some(value))
    }

    /// Restores a value returned by [`set`](Self::set) (`None`: unset).
    pub fn reset(&self, old: Option<T>) -> Result<()> {
        self.replace(old).map(|_| ())
    }

    fn replace(&self, value: Option<T>) -> Result<Option<T>> {
        let id = self.id();
        let mut map: Map = current_context()
            .and_then(|c| c.downcast_ref::<Map>().cloned())
            .unwrap_or_default();
        let old = match value {
            Some(v) => map.insert(id, Rc::new(v)),
            None => map.remove(&id),
        };
        if !set_current_context(Rc::new(map)) {
            return Err(Error::runtime(
                "context values can only be set inside a task: call set() from a task",
            ));
        }
        Ok(old.and_then(|o| o.downcast_ref::<T>().cloned()))
    }
}

impl<T> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<ContextVar name='{}'>", self.name)
    }
}
