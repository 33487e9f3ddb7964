//! How long-running work reports how far it is. The library never draws or prints: the CLI
//! draws bars from these calls, a server or a test passes [`Silent`].

/// What a count of progress counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Pairs,
    Bytes,
    Steps,
}

/// One phase at a time: `begin`, any number of `advance`/`message`, `end`.
pub trait Progress: Sync {
    /// A new phase named `phase`, of `total` units when that is known.
    fn begin(&self, phase: &str, total: Option<u64>, unit: Unit);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The whole is now `total` units, `done` of them done (a file read as it grows).
    fn set(&self, done: u64, total: u64);
    /// A short status beside the count ("loss 0.4123"); never post text.
    fn message(&self, text: String);
    fn end(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: &str, _: Option<u64>, _: Unit) {}
    fn advance(&self, _: u64) {}
    fn set(&self, _: u64, _: u64) {}
    fn message(&self, _: String) {}
    fn end(&self) {}
}
