//! pinger: a ping sweep, the seed's asyncio program grown into a tool.
//!
//! The pieces, in the order a sweep uses them:
//! - [`cli`]: options, in fping's spelling, and the exit codes
//! - [`targets`]: addresses, ranges, cidrs and files, expanded like `fping -g`
//! - [`ping`]: the `ping` argv, and the parser for its output
//! - [`sweep`]: the driver on the tulip event loop: one task per host, a
//!   semaphore for the window, `ping` children through tulip's subprocess
//!   API, and [`sweep::Stop`] for Ctrl-C
//! - [`output`], [`progress`]: what the user sees
//! - [`localtime`]: the seed's `%Y-%m-%d %H:%M:%S` timestamps
//! - [`error`]: the one error type, and its exit codes
#![deny(missing_docs, missing_debug_implementations)]

pub mod cli;
pub mod error;
pub mod localtime;
pub mod output;
pub mod ping;
pub mod progress;
pub mod sweep;
pub mod targets;

pub use error::Error;
