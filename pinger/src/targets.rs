//! Target parsing and expansion, like `fping -g`.
//!
//! A target is one of:
//! - a single address: `10.0.0.7`
//! - a range, both ends included: `10.0.0.1-10.0.0.50`, or the short form
//!   `10.0.0.1-50` where the end replaces only the last octet
//! - a cidr: `192.168.31.0/24`; host bits are masked (`192.168.31.77/24` is the
//!   same network), and below /31 the network and broadcast addresses are left out
//!   (/31 gives both addresses, /32 gives the one)
//!
//! [`expand_hosts`] turns a list of targets into [`Hosts`], sorted, de-duplicated
//! addresses kept as merged intervals and walked one at a time, after checking the
//! host limit on the exact count; a sweep never holds its address list (a /0 would
//! be 16 GiB). [`expand`] writes the same addresses out as a `Vec`.
//!
//! # Invariants
//! - Every target is one inclusive interval of `u32` addresses (`lo <= hi`); this is
//!   what makes counting and merging exact and cheap.
//! - Addresses leave this module as [`Ipv4Addr`] values, so the argv element made
//!   from one is always `d.d.d.d` and can never start with `-`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

use crate::error::Error;

/// The largest sweep allowed without `--max-hosts`: a /16.
pub const DEFAULT_MAX_HOSTS: u64 = 65_536;

/// What pinger sweeps when given no target at all: safe on any machine.
pub const DEFAULT_TARGET: &str = "127.0.0.0/24";

/// One parsed target: an inclusive interval of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A single address.
    Single(Ipv4Addr),
    /// An inclusive range of addresses; `start <= end`.
    Range {
        /// First address.
        start: Ipv4Addr,
        /// Last address.
        end: Ipv4Addr,
    },
    /// A network, with its host bits already masked off.
    Cidr {
        /// The network address.
        network: Ipv4Addr,
        /// Prefix length, 0 to 32.
        prefix: u8,
    },
}

impl Target {
    /// The first and last address probed for this target, inclusive.
    pub fn bounds(&self) -> (u32, u32) {
        match *self {
            Target::Single(ip) => (u32::from(ip), u32::from(ip)),
            Target::Range { start, end } => (u32::from(start), u32::from(end)),
            Target::Cidr { network, prefix } => {
                let net = u32::from(network);
                let last = net | host_mask(prefix);
                if prefix >= 31 {
                    (net, last)
                } else {
                    // Below /31, leave out the network and broadcast addresses.
                    (net + 1, last - 1)
                }
            }
        }
    }

    /// How many addresses this target alone expands to.
    pub fn host_count(&self) -> u64 {
        let (lo, hi) = self.bounds();
        u64::from(hi - lo) + 1
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_target(s)
    }
}

/// How [`expand`] limits a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpandOptions {
    /// The most distinct hosts allowed ([`DEFAULT_MAX_HOSTS`] by default).
    pub max_hosts: u64,
    /// Whether a `/0` network is accepted at all.
    pub allow_zero_prefix: bool,
}

impl Default for ExpandOptions {
    fn default() -> Self {
        ExpandOptions {
            max_hosts: DEFAULT_MAX_HOSTS,
            allow_zero_prefix: false,
        }
    }
}

/// The host part of a /`prefix` network, as a mask.
fn host_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)
}

/// Parses one target: an address, a range or a cidr (see the module docs).
///
/// The `/0` check is done by [`expand`], not here, so that the error names the
/// flag that allows it.
pub fn parse_target(input: &str) -> Result<Target, Error> {
    let s = input.trim();
    if s.is_empty() {
        return Err(Error::EmptyTarget);
    }
    if let Some((addr, _port)) = s.rsplit_once(':') {
        // `10.0.0.1:80`: an ipv4 address with a port, not ipv6.
        if addr.parse::<Ipv4Addr>().is_ok() {
            return Err(Error::InvalidTarget {
                input: s.into(),
                reason: format!("a ping has no port: give the address alone, `{addr}`"),
            });
        }
        return Err(Error::Ipv6 { input: s.into() });
    }
    if let Some((addr, prefix)) = s.split_once('/') {
        let ip = parse_ipv4(s, addr)?;
        let prefix = parse_prefix(s, prefix)?;
        let network = Ipv4Addr::from(u32::from(ip) & !host_mask(prefix));
        return Ok(Target::Cidr { network, prefix });
    }
    if let Some((first, last)) = s.split_once('-') {
        let start = parse_ipv4(s, first)?;
        let end = if last.contains('.') {
            parse_ipv4(s, last)?
        } else {
            // Short form: `10.0.0.1-50` replaces the last octet.
            let octet = parse_octet(s, last)?;
            let [a, b, c, _] = start.octets();
            Ipv4Addr::new(a, b, c, octet)
        };
        if start > end {
            return Err(Error::ReversedRange {
                input: s.into(),
                start,
                end,
            });
        }
        return Ok(Target::Range { start, end });
    }
    Ok(Target::Single(parse_ipv4(s, s)?))
}

/// Parses `part` of `input` as a dotted quad, strictly: four decimal octets,
/// no leading zeros (which `inet_aton` would read as octal).
fn parse_ipv4(input: &str, part: &str) -> Result<Ipv4Addr, Error> {
    if part.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(Error::Hostname {
            input: input.into(),
        });
    }
    let octets: Vec<&str> = part.split('.').collect();
    if octets.len() != 4 {
        return Err(invalid(
            input,
            format!(
                "`{part}` has {} dot-separated parts, an ipv4 address has 4",
                octets.len()
            ),
        ));
    }
    let mut out = [0u8; 4];
    for (slot, text) in out.iter_mut().zip(&octets) {
        *slot = parse_octet(input, text)?;
    }
    Ok(Ipv4Addr::from(out))
}

/// Parses one decimal octet, 0 to 255.
fn parse_octet(input: &str, text: &str) -> Result<u8, Error> {
    if text.is_empty() {
        return Err(invalid(
            input,
            "an octet is empty (two dots in a row, or a dot at either end)".into(),
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            input,
            format!("octet `{text}` is not a decimal number"),
        ));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(invalid(
            input,
            format!(
                "octet `{text}` has a leading zero, which is ambiguous (octal?); write it as `{}`",
                match text.trim_start_matches('0') {
                    "" => "0",
                    digits => digits,
                }
            ),
        ));
    }
    match text.parse::<u16>() {
        Ok(v) if v <= 255 => Ok(v as u8),
        _ => Err(invalid(
            input,
            format!("octet `{text}` is out of range 0-255"),
        )),
    }
}

/// Parses a prefix length, 0 to 32.
fn parse_prefix(input: &str, text: &str) -> Result<u8, Error> {
    let ok = !text.is_empty()
        && text.len() <= 2
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    match text.parse::<u8>() {
        Ok(p) if ok && p <= 32 => Ok(p),
        _ => Err(invalid(
            input,
            format!("prefix length `/{text}` must be a number from 0 to 32"),
        )),
    }
}

fn invalid(input: &str, reason: String) -> Error {
    Error::InvalidTarget {
        input: input.into(),
        reason,
    }
}

/// Parses the text of a target file: one target per line, `#` starts a comment
/// (whole-line or trailing), blank lines are skipped, and a UTF-8 byte order
/// mark at the start is ignored. As fping, only the first word of a line is
/// read: `10.0.0.1 router` is `10.0.0.1` (a hosts file's layout, a note
/// after each address). A second word that is a prefix length (`10.0.0.0
/// /24`, or `10.0.0.0 / 24`) is an error, not a note: the line means a
/// network, and its first word alone would sweep one address. `path` is
/// only used in error messages. An empty file is an error.
pub fn parse_target_file(text: &str, path: &Path) -> Result<Vec<Target>, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut targets = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let uncommented = raw.split('#').next().unwrap_or("");
        let mut words = uncommented.split_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        let target = parse_target(first)
            .and_then(|target| check_no_split_prefix(target, first, words))
            .map_err(|source| Error::InFile {
                path: path.into(),
                line: index + 1,
                source: Box::new(source),
            })?;
        targets.push(target);
    }
    if targets.is_empty() {
        return Err(Error::EmptyFile { path: path.into() });
    }
    Ok(targets)
}

/// `target` (read from the first word of a line, `first`) unless the next
/// words are a prefix length, `/N` or `/ N`: then the line meant a network
/// written with a space, and the error shows it written right (or, joined
/// to an address, is the network's own error, as for `10.0.0.0 /33`).
fn check_no_split_prefix<'a>(
    target: Target,
    first: &str,
    mut rest: impl Iterator<Item = &'a str>,
) -> Result<Target, Error> {
    let is_number = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let digits = match rest.next().and_then(|w| w.strip_prefix('/')) {
        Some("") => match rest.next() {
            Some(n) if is_number(n) => n,
            _ => return Ok(target),
        },
        Some(n) if is_number(n) => n,
        _ => return Ok(target),
    };
    let input = format!("{first} /{digits}");
    let reason = match target {
        Target::Single(_) => {
            let network = format!("{first}/{digits}");
            parse_target(&network)?;
            format!(
                "the prefix length is a separate word, and only the first word of a line \
                 is read, so this would sweep {first} alone; write it as `{network}`, \
                 without the space"
            )
        }
        Target::Range { .. } | Target::Cidr { .. } => format!(
            "`/{digits}` after a range or a network is a prefix length with no address to \
             go to; remove the `/{digits}`"
        ),
    };
    Err(invalid(&input, reason))
}

/// Reads and parses a target file (see [`parse_target_file`]); `-` is
/// standard input, as for fping's `-f -`.
///
/// The file is read as bytes and decoded lossily, as fping reads it byte by
/// byte: a comment in another encoding (an old list in Latin-1) is skipped
/// like any other, and a stray byte in a target is a bad target on its line
/// (exit 3), not an unreadable file (exit 4).
pub fn read_target_file(path: &Path) -> Result<Vec<Target>, Error> {
    let bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    let bytes = bytes.map_err(|source| Error::ReadFile {
        path: path.into(),
        source,
    })?;
    parse_target_file(&String::from_utf8_lossy(&bytes), path)
}

/// Merges the targets' intervals: sorted, non-overlapping, non-adjacent.
fn merged_intervals(targets: &[Target]) -> Vec<(u32, u32)> {
    let mut intervals: Vec<(u32, u32)> = targets.iter().map(Target::bounds).collect();
    intervals.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(intervals.len());
    for (lo, hi) in intervals {
        match merged.last_mut() {
            // Overlapping or touching: extend the previous interval.
            Some((_, last_hi)) if u64::from(lo) <= u64::from(*last_hi) + 1 => {
                *last_hi = (*last_hi).max(hi);
            }
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// Counts the distinct hosts the targets expand to, without expanding them.
pub fn count_hosts(targets: &[Target]) -> u64 {
    merged_intervals(targets)
        .iter()
        .map(|&(lo, hi)| u64::from(hi - lo) + 1)
        .sum()
}

/// The hosts of a sweep: sorted, distinct addresses, held as the merged
/// intervals of the targets, so that a /8, or a /0 with
/// `--allow-zero-prefix`, costs a few bytes until it is walked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    /// Sorted, non-overlapping, non-adjacent inclusive intervals.
    intervals: Vec<(u32, u32)>,
}

impl Hosts {
    /// How many addresses there are.
    pub fn len(&self) -> u64 {
        self.intervals
            .iter()
            .map(|&(lo, hi)| u64::from(hi - lo) + 1)
            .sum()
    }

    /// True when there is no address at all.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// The addresses in order, one at a time.
    pub fn iter(&self) -> HostsIter {
        self.clone().into_iter()
    }
}

impl IntoIterator for Hosts {
    type Item = Ipv4Addr;
    type IntoIter = HostsIter;

    fn into_iter(self) -> HostsIter {
        HostsIter {
            left: self.len(),
            intervals: self.intervals.into_iter(),
            current: None,
        }
    }
}

/// The addresses of [`Hosts`], in order, computed as they are taken.
#[derive(Debug, Clone)]
pub struct HostsIter {
    intervals: std::vec::IntoIter<(u32, u32)>,
    current: Option<std::ops::RangeInclusive<u32>>,
    /// Addresses not yet taken.
    left: u64,
}

impl Iterator for HostsIter {
    type Item = Ipv4Addr;

    fn next(&mut self) -> Option<Ipv4Addr> {
        loop {
            if let Some(addr) = self.current.as_mut().and_then(Iterator::next) {
                self.left -= 1;
                return Some(Ipv4Addr::from(addr));
            }
            let (lo, hi) = self.intervals.next()?;
            self.current = Some(lo..=hi);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.left).ok();
        (left.unwrap_or(usize::MAX), left)
    }
}

/// Expands targets into sorted, de-duplicated addresses, written out (see
/// [`expand_hosts`], which a sweep uses, for the checks).
pub fn expand(targets: &[Target], opts: &ExpandOptions) -> Result<Vec<Ipv4Addr>, Error> {
    Ok(expand_hosts(targets, opts)?.into_iter().collect())
}

/// Expands targets into sorted, de-duplicated [`Hosts`], without writing
/// the addresses out.
///
/// Refuses `/0` unless `opts.allow_zero_prefix`, and refuses more than
/// `opts.max_hosts` distinct hosts; both checks run before any allocation
/// proportional to the sweep.
pub fn expand_hosts(targets: &[Target], opts: &ExpandOptions) -> Result<Hosts, Error> {
    if !opts.allow_zero_prefix {
        if let Some(t) = targets
            .iter()
            .find(|t| matches!(t, Target::Cidr { prefix: 0, .. }))
        {
            let Target::Cidr { network, .. } = t else {
                unreachable!("matched a cidr above")
            };
            return Err(Error::ZeroPrefix {
                input: format!("{network}/0"),
            });
        }
    }
    let count = count_hosts(targets);
    if count > opts.max_hosts {
        return Err(Error::TooManyHosts {
            count,
            max: opts.max_hosts,
        });
    }
    Ok(Hosts {
        intervals: merged_intervals(targets),
    })
}
