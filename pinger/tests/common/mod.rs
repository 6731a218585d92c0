//! Helpers shared by pinger's integration tests.
//!
//! Each test crate compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod netns;
