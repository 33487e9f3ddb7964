//! Where epitome keeps what it fetches and trains for the user.

use std::path::PathBuf;

/// epitome's cache: `EPITOME_HOME`, else `$XDG_CACHE_HOME/epitome`, else `~/.cache/epitome`.
pub fn epitome_home() -> PathBuf {
    if let Some(home) = std::env::var_os("EPITOME_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(cache).join("epitome");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("epitome")
}

/// The default model's place, where `quickstart` trains it.
pub fn default_model_dir() -> PathBuf {
    epitome_home().join("models").join("default")
}
