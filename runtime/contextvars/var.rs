//! Context variables: [`ContextVar`], the key a context's values are
//! stored under, and [`Token`], which undoes one `set`. Mirrors Python's
//! `contextvars.ContextVar` and `contextvars.Token` (`Python/context.c`,
//! PEP 567): `get`, `set`, `reset`, `Token.old_value`.
//!
//! # Invariants
//! - A variable's id is assigned once (on first use) and never reused.
//! - `set` never changes a shared map: it swaps an updated copy into the
//!   current context (the task header, or the [`Context`](crate::Context)).
//! - A token resets only the context its `set` changed; a task's own
//!   values are that one context before and after `Task::get_context`
//!   made them a `Context` (`ContextKey::same`).

use std::fmt;
use std::marker::PhantomData;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{callback_own_context, current, current_map, ContextCell, Current, Map, VALUES_SET};
use crate::error::{Error, Result};
use crate::tasks::set_current_context;

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

    pub(super) fn get_in(&self, map: &Map) -> Option<T> {
        map.get(&self.id())?.downcast_ref::<T>().cloned()
    }

    /// The value in the current context (the current task's, or the one
    /// [`Context::run`](crate::Context::run) entered), if set there or inherited.
    pub fn get(&self) -> Option<T> {
        let map = current_map()?;
        self.get_in(&map)
    }

    /// The value, or `default` (Python's `var.get(default)`).
    pub fn get_or(&self, default: T) -> T {
        self.get().unwrap_or(default)
    }

    /// Sets the value in the current context, and returns the [`Token`]
    /// that undoes it with [`reset`](Self::reset) (its
    /// [`old_value`](Token::old_value) is the value before). Fails outside a
    /// task and outside [`Context::run`](crate::Context::run).
    ///
    /// In a task's own context the change is private to the task; in a
    /// [`Context`](crate::Context) (one the task was created with, or one entered by
    /// [`Context::run`](crate::Context::run)) it changes that `Context`, for all who share it.
    pub fn set(&self, value: T) -> Result<Token<T>> {
        let (old, ctx) = self.replace(Some(value))?;
        Ok(Token {
            var: self.id(),
            name: self.name,
            old,
            ctx,
        })
    }

    /// Python's `var.reset(token)`: puts the variable back as it was before
    /// the [`set`](Self::set) that made `token` (unset, if it had no
    /// value). As in Python, a token of another variable, or one made in
    /// another context, is an [`Error::InvalidArgument`]; a token cannot be
    /// used twice (`reset` takes it).
    pub fn reset(&self, token: Token<T>) -> Result<()> {
        if token.var != self.id() {
            return Err(Error::invalid_argument(format!(
                "{token:?} was created by a different ContextVar, not {:?}: \
                 reset it with the ContextVar whose set() returned it",
                self.name
            )));
        }
        if !ContextKey::of(current()).is_some_and(|k| k.same(&token.ctx)) {
            return Err(Error::invalid_argument(format!(
                "{token:?} was created in a different Context: \
                 reset it in the context where set() returned it"
            )));
        }
        self.replace(token.old).map(|_| ())
    }

    /// Sets (or, with `None`, removes) the value; returns the old one and
    /// the context it was changed in.
    fn replace(&self, value: Option<T>) -> Result<(Option<T>, ContextKey)> {
        if value.is_some() {
            VALUES_SET.with(|v| v.set(true));
        }
        let id = self.id();
        let update = |map: Option<&Map>| {
            let mut map = map.cloned().unwrap_or_default();
            let old = match value {
                Some(v) => map.insert(id, Rc::new(v)),
                None => map.remove(&id),
            };
            (map, old.and_then(|o| o.downcast_ref::<T>().cloned()))
        };
        match current() {
            Current::Task(ctx) => match ctx.map(|c| c.downcast::<ContextCell>()) {
                // Created with, or running inside, a shared Context.
                Some(Ok(cell)) => {
                    let (map, old) = update(Some(&cell.map()));
                    cell.replace(map);
                    Ok((old, ContextKey::Cell(Rc::downgrade(&cell))))
                }
                // The task's own immutable map (or none yet).
                ctx => {
                    let own = ctx
                        .and_then(|c| c.err())
                        .and_then(|c| c.downcast::<Map>().ok());
                    let (map, old) = update(own.as_deref());
                    let swapped = set_current_context(Some(Rc::new(map)));
                    debug_assert!(swapped, "a task is running");
                    Ok((old, ContextKey::current_task()))
                }
            },
            Current::Outside(cell) => {
                let (map, old) = update(Some(&cell.map()));
                cell.replace(map);
                Ok((old, ContextKey::Cell(Rc::downgrade(&cell))))
            }
            Current::Nothing => match callback_own_context() {
                Some(cell) => {
                    let (map, old) = update(None);
                    cell.replace(map);
                    Ok((old, ContextKey::Cell(Rc::downgrade(&cell))))
                }
                None => Err(Error::runtime(
                    "context values can only be set inside a task, a loop callback or Context::run(): call set() from one",
                )),
            },
        }
    }
}

/// Python's `contextvars.Token`: made by [`ContextVar::set`], taken by
/// [`ContextVar::reset`] to undo that set.
///
/// ```
/// use tulip::ContextVar;
/// static LEVEL: ContextVar<u32> = ContextVar::new("level");
///
/// tulip::run(async {
///     let token = LEVEL.set(1)?;
///     assert_eq!(token.old_value(), None); // Python's Token.MISSING
///     let inner = LEVEL.set(2)?;
///     assert_eq!(inner.old_value(), Some(&1));
///     LEVEL.reset(inner)?;
///     assert_eq!(LEVEL.get(), Some(1));
///     LEVEL.reset(token)?;
///     assert_eq!(LEVEL.get(), None);
///     Ok(())
/// }).unwrap();
/// ```
pub struct Token<T> {
    /// The variable's id, and its name for messages.
    var: usize,
    name: &'static str,
    old: Option<T>,
    /// The context the set changed.
    ctx: ContextKey,
}

impl<T> Token<T> {
    /// The value the variable had before the set (`None`: it had none,
    /// Python's `Token.MISSING`).
    pub fn old_value(&self) -> Option<&T> {
        self.old.as_ref()
    }
}

impl<T> fmt::Debug for Token<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Token var=<ContextVar name='{}'>>", self.name)
    }
}

/// Which context a set changed, for [`ContextVar::reset`]: a [`Context`](crate::Context)
/// (held weakly: a token does not keep it alive), or a task's own values
/// (by the task's id: they are replaced, not changed, by each set).
#[derive(Clone)]
enum ContextKey {
    Cell(Weak<ContextCell>),
    Task(u64),
}

impl ContextKey {
    /// The key of the current context, if there is one.
    fn of(current: Current) -> Option<ContextKey> {
        match current {
            Current::Task(ctx) => match ctx.map(|c| c.downcast::<ContextCell>()) {
                Some(Ok(cell)) => Some(ContextKey::Cell(Rc::downgrade(&cell))),
                _ => Some(ContextKey::current_task()),
            },
            Current::Outside(cell) => Some(ContextKey::Cell(Rc::downgrade(&cell))),
            Current::Nothing => None,
        }
    }

    /// The running task's own values.
    fn current_task() -> ContextKey {
        ContextKey::Task(crate::tasks::current_task().map_or(0, |t| t.id()))
    }

    fn same(&self, other: &ContextKey) -> bool {
        match (self, other) {
            (ContextKey::Cell(a), ContextKey::Cell(b)) => a.ptr_eq(b),
            (ContextKey::Task(a), ContextKey::Task(b)) => a == b,
            // A task's own values, before and after `get_context` made
            // them a `Context`: one context all along, as in Python.
            (ContextKey::Task(t), ContextKey::Cell(c))
            | (ContextKey::Cell(c), ContextKey::Task(t)) => {
                *t != 0 && c.upgrade().is_some_and(|c| c.task.get() == *t)
            }
        }
    }
}

impl<T> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<ContextVar name='{}'>", self.name)
    }
}
