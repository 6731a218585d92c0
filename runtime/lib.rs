//! # tulip — asyncio's internals, hand-rolled in Rust
//!
//! tulip is a single-threaded event loop that mirrors CPython's asyncio
//! module by module, name by name: a ready queue and a timer heap driven by
//! [`EventLoop::run_once`] (asyncio's `_run_once`), handles and timer
//! handles, a mio reactor with `add_reader`/`add_writer`, futures, and tasks
//! with asyncio's own cancellation model (`fut_waiter`, `must_cancel`).
//!
//! This file mirrors `Lib/asyncio/__init__.py`: it gathers the modules
//! below and re-exports their public names at the top (`tulip::sleep`,
//! `tulip::Queue`, ...), as asyncio's `__all__` does.
//!
//! | asyncio file | tulip module |
//! |---|---|
//! | `events.py` | [`events`] |
//! | `base_events.py` | [`event_loop`] |
//! | `selector_events.py` | [`reactor`] (+ `add_reader` on [`EventLoop`]) |
//! | `futures.py` | [`futures`] |
//! | `tasks.py` | [`tasks`], [`sleep()`] |
//! | `runners.py` | [`runners`] |
//! | `exceptions.py` | [`error`] |
//! | `tasks.py` (`gather`, `ensure_future`) | [`gather`](mod@gather) |
//! | `tasks.py` (`wait`, `as_completed`, `shield`) | [`wait`](mod@wait) |
//! | `timeouts.py`, `tasks.py` (`wait_for`) | [`timeouts`] |
//! | `taskgroups.py` | [`taskgroups`] |
//! | `locks.py` | [`locks`], [`semaphores`], [`barrier`] |
//! | `queues.py` | [`queues`] |
//! | `contextvars` (`ContextVar`, `Context`, `copy_context`) | [`contextvars`] |
//! | `subprocess.py` | [`subprocess`] |
//! | `base_subprocess.py`, `loop.subprocess_exec` | [`base_subprocess`] |
//! | `unix_events.py` (child watchers) | [`child_watcher`] |
//! | `unix_events.py` (signals) | [`signals`] |
//! | `unix_events.py` (`_UnixReadPipeTransport`, `_UnixWritePipeTransport`), `connect_read_pipe`, `connect_write_pipe` | [`pipes`] |
//! | `threads.py`, `run_in_executor`, `run_coroutine_threadsafe`, `futures.py` (`wrap_future`) | [`threads`] |
//! | `base_events.py` (`call_soon_threadsafe`, the self-pipe's wake-up) | [`threadsafe`] |
//! | `transports.py` | [`transports`] |
//! | `protocols.py` | [`protocols`] |
//! | `streams.py` | [`streams`], [`stream_writer`], [`streams_open`] |
//! | `selector_events.py` (socket transports) | [`selector_events`] |
//! | `selector_events.py` (`sock_*`), `base_events.py` (`getaddrinfo`, `getnameinfo`) | methods of [`EventLoop`] (`sock_ops.rs`) |
//! | `base_events.py` (`create_connection`, Happy Eyeballs) | [`base_events_connect`] |
//! | `staggered.py` (`staggered_race`) | [`staggered`] |
//! | `base_events.py` (`create_server`, `Server`) | [`base_events_net`] |
//! | `selector_events.py` (`_SelectorDatagramTransport`, UDP and `AF_UNIX`) | [`datagram`] |
//! | `base_events.py`, `unix_events.py` (`sock_sendfile`, `sendfile`) | [`sendfile`](mod@sendfile) |
//!
//! ```
//! async fn say_after(delay: f64, what: &str) -> tulip::Result<()> {
//!     tulip::sleep(delay).await?;
//!     println!("{what}");
//!     Ok(())
//! }
//!
//! tulip::run(async {
//!     let t1 = tulip::create_task(say_after(0.01, "hello"))?;
//!     let t2 = tulip::create_task(say_after(0.02, "world"))?;
//!     t1.await?;
//!     t2.await?;
//!     Ok(())
//! }).unwrap();
//! ```
//!
//! Task bodies return [`Result`]; a task may be `!Send`. Cancellation is
//! asyncio's: [`Task::cancel`] makes the awaited runtime future fail with
//! [`Error::Cancelled`], which the body may handle.
//!
//! # Invariants
//! - One thread per loop. A loop and everything bound to it (futures,
//!   tasks, handles, transports, primitives) is built on `Rc` and is
//!   `!Send`, so the compiler rejects a loop call from another thread;
//!   other threads reach a loop only through [`LoopHandle`].
//! - Callbacks and task steps run only inside step 5 of
//!   [`EventLoop::run_once`]: completing a future or waking a task only
//!   schedules. An eager task's first step runs inside `create_task`,
//!   called by code that is itself running there.
//! - No `RefCell` borrow of runtime state is held while user code runs (a
//!   callback, a task body, a protocol method): each step takes what it
//!   needs out of the cell, releases it, then calls.
//! - The runtime's `unsafe` code is confined to `sys.rs`, the libc layer,
//!   and `signals.rs`, for its C-level signal handler and its `sigaction`
//!   and signal-set calls.
#![deny(missing_docs, missing_debug_implementations)]
#![warn(rust_2018_idioms)]

pub mod barrier;
pub mod base_events_connect;
pub mod base_events_net;
pub mod base_subprocess;
pub mod child_watcher;
pub mod contextvars;
pub mod datagram;
pub mod error;
pub mod event_loop;
pub mod events;
pub mod futures;
pub mod gather;
pub mod locks;
pub mod pipes;
pub mod protocols;
pub mod queues;
pub mod reactor;
pub mod runners;
pub mod selector_events;
mod selector_transport;
pub mod semaphores;
pub mod sendfile;
pub mod signals;
mod sleep;
mod sock_ops;
pub mod staggered;
pub mod stream_writer;
pub mod streams;
pub mod streams_open;
pub mod subprocess;
mod sys;
pub mod taskgroups;
pub mod tasks;
pub mod threads;
pub mod threadsafe;
pub mod timeouts;
pub mod transports;
pub mod wait;

pub use barrier::Barrier;
pub use base_events_connect::ConnectOptions;
pub use base_events_net::{Listener, ProtocolFactory, Server, ServerOptions};
pub use base_subprocess::SubprocessTransport;
pub use child_watcher::ChildWatcherKind;
pub use contextvars::{copy_context, Context, ContextVar, Token};
pub use datagram::{DatagramOptions, DatagramSocket, DatagramSocketTransport};
pub use error::{Error, Result};
pub use event_loop::{
    get_event_loop, get_running_loop, interrupt, new_event_loop, set_event_loop, try_running_loop,
    EventLoop, ExceptionContext, ExceptionHandler, Interrupt, TaskFactory,
};
pub use events::{Delay, Handle, TimerHandle};
pub use futures::{CallbackId, Future};
pub use gather::{ensure_future, gather, gather_set, Child, Gather, GatherAll, GatherSet};
pub use locks::{Condition, Event, Lock, LockGuard};
pub use pipes::{ReadPipeTransport, WritePipeTransport};
pub use protocols::{BufferedProtocol, DatagramProtocol, Protocol, SubprocessProtocol};
pub use queues::{LifoQueue, PriorityQueue, Queue, QueueBase, Storage};
pub use runners::{run, run_with_factory, Runner};
pub use selector_events::{SocketTransport, StreamSocket};
pub use semaphores::{BoundedSemaphore, Semaphore, SemaphorePermit};
pub use sleep::{sleep, Sleep};
pub use sock_ops::{AddressFamily, NI_DGRAM, NI_NAMEREQD, NI_NUMERICHOST, NI_NUMERICSERV};
pub use streams::{
    ClientConnected, FlowControl, StreamReader, StreamReaderProtocol, StreamWriter, DEFAULT_LIMIT,
};
pub use streams_open::{
    open_connection, open_connection_addrs, open_connection_sock, open_connection_sock_with_limit,
    open_connection_with, open_connection_with_limit, open_unix_connection,
    open_unix_connection_with_limit, start_server, start_server_hosts, start_server_sock,
    start_server_with, start_server_with_limit, start_unix_server, start_unix_server_sock,
    start_unix_server_with,
};
pub use subprocess::{create_subprocess_exec, create_subprocess_shell, Process};
pub use taskgroups::TaskGroup;
pub use tasks::{
    all_tasks, create_task, create_task_named, current_task, Task, TaskOptions, TaskRef,
};
pub use threads::{
    run_coroutine_threadsafe, to_thread, wrap_future, wrap_future_with_loop, ConcurrentFuture,
    ThreadPool,
};
pub use threadsafe::{LoopHandle, ThreadsafeHandle};
pub use timeouts::{timeout, timeout_at, wait_for, Timeout};
pub use transports::{
    BaseTransport, DatagramAddr, DatagramTransport, ExtraInfo, ReadTransport, Transport,
    WriteLimits, WriteTransport,
};
pub use wait::{as_completed, shield, wait, AsCompleted, ReturnWhen, WaitForOne};
