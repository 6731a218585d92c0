//! tulip's side of the `net` group. Waits for area C (transports,
//! streams, servers) to land on main.

/// Why the tulip columns are n/a.
pub const MISSING: &str = "tulip's servers (area C) are not on main yet";

/// The command that starts tulip's `kind` server (echo-protocol, echo-streams, http).
pub fn server_argv(_ctx: &crate::Ctx, _kind: &str) -> Result<Vec<String>, String> {
    Err(MISSING.into())
}

/// `bench --serve KIND tulip-...`.
pub fn serve(_kind: &str, _who: &str) -> std::io::Result<()> {
    Err(std::io::Error::other(MISSING))
}
