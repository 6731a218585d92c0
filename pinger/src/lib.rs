//! pinger: a ping sweep, the seed's asyncio program grown into a tool.
//!
//! The pieces, in the order a sweep uses them:
//! - [`cli`]: options, in fping's spelling, and the exit codes
//! - [`targets`]: addresses, ranges, cidrs and files, expanded like `fping -g`
//! - [`ping`]: the `ping` argv, and the parser for its output
//! - [`sweep`]: the driver and the [`sweep::Prober`] seam where tulip's
//!   subprocess API plugs in
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
