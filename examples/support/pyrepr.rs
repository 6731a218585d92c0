//! Python's `repr()` of the values the seeds print with `{x!r}` or `str()`.
//! Shared with `#[path = "support/pyrepr.rs"] mod pyrepr;`.
#![allow(dead_code)]

use std::fmt::Write;
use std::net::SocketAddr;

/// `repr()` of a str: single quotes, or double quotes when it holds a
/// single quote and no double one; backslash escapes as Python writes them.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `repr()` (and `str()`) of a socket address as Python's socket module
/// gives it: `('127.0.0.1', 8888)`, or `('::1', 8888, 0, 0)` for IPv6.
pub fn addr_repr(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("('{}', {})", a.ip(), a.port()),
        SocketAddr::V6(a) => format!(
            "('{}', {}, {}, {})",
            a.ip(),
            a.port(),
            a.flowinfo(),
            a.scope_id()
        ),
    }
}
