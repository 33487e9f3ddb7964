//! The model that ships inside epitome, so that scoring works before any training.
//!
//! Only what training changed is embedded: `bundle.json` and the fine-tuned tensors in f16
//! (`models/default/` in the repository). The frozen seeker encoder and the word embeddings
//! are the default encoder's, fetched once into the cache and pinned by the hashes that
//! bundle.json records. On first use the two parts are put together as an ordinary bundle
//! under `$EPITOME_HOME/models/`, which is then loaded and verified like any other.

use super::{BundleError, BundleInfo, BUNDLE_FILE, ENCODER_DIR, FINE_TUNED_FILE};
use crate::encoder::fetch::ensure_default_encoder;
use crate::encoder::{CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::home::epitome_home;
use std::path::{Path, PathBuf};

const BUNDLE_JSON: &str = include_str!("../../models/default/bundle.json");
const WEIGHTS: &[u8] = include_bytes!("../../models/default/weights.safetensors");

/// What `--model` names: the shipped model, or a bundle directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    Shipped,
    Dir(PathBuf),
}

impl ModelSource {
    /// The word that names the shipped model on the command line.
    pub const SHIPPED: &'static str = "default";

    /// The bundle directory, installing the shipped model (and fetching the default encoder)
    /// on first use.
    pub fn resolve(&self) -> Result<PathBuf, BundleError> {
        match self {
            ModelSource::Dir(dir) => Ok(dir.clone()),
            ModelSource::Shipped => install(&epitome_home().join("models")),
        }
    }
}

impl std::str::FromStr for ModelSource {
    type Err = std::convert::Infallible;

    /// `default` is the shipped model; anything else is a directory (`./default` reaches a
    /// directory of that name).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == Self::SHIPPED {
            ModelSource::Shipped
        } else {
            ModelSource::Dir(PathBuf::from(s))
        })
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Shipped => write!(f, "the shipped default model"),
            ModelSource::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// The shipped model's description, as embedded.
pub fn shipped_info() -> Result<BundleInfo, BundleError> {
    serde_json::from_str(BUNDLE_JSON).map_err(|e| BundleError::Invalid {
        path: PathBuf::from("models/default/bundle.json (embedded)"),
        message: format!("not a valid bundle description: {e}"),
    })
}

/// Puts the shipped model together under `models_dir` (once per shipped version: the
/// directory is named by a hash of its description) and returns its directory.
pub fn install(models_dir: &Path) -> Result<PathBuf, BundleError> {
    let info = shipped_info()?;
    if !info.files.contains_key(FINE_TUNED_FILE) {
        return Err(BundleError::Field {
            path: PathBuf::from("models/default/bundle.json (embedded)"),
            field: format!("files.{FINE_TUNED_FILE}"),
            message: "missing".into(),
        });
    }
    // Named by the description, which pins the weights by hash: a release that changes only
    // how levels are decided (bundle.json alone) installs afresh instead of reusing the
    // directory of the one before.
    let digest = crate::digest::sha256_bytes(BUNDLE_JSON.as_bytes());
    let dir = models_dir.join(format!("default-{}", &digest[..16]));
    if dir.join(BUNDLE_FILE).is_file() {
        return Ok(dir);
    }
    let encoder = ensure_default_encoder()?;
    std::fs::create_dir_all(models_dir).map_err(super::io_err(models_dir))?;
    let staging = models_dir.join(format!(".default.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| {
        let enc_dir = staging.join(ENCODER_DIR);
        std::fs::create_dir_all(&enc_dir).map_err(super::io_err(&enc_dir))?;
        for file in [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE] {
            super::link_or_copy(&encoder.join(file), &enc_dir.join(file))?;
        }
        let weights = staging.join(FINE_TUNED_FILE);
        std::fs::write(&weights, WEIGHTS).map_err(super::io_err(&weights))?;
        let json = staging.join(BUNDLE_FILE);
        std::fs::write(&json, BUNDLE_JSON).map_err(super::io_err(&json))?;
        match std::fs::rename(&staging, &dir) {
            Ok(()) => Ok(()),
            // Another process installed it first: theirs is as good as ours.
            Err(_) if dir.join(BUNDLE_FILE).is_file() => Ok(()),
            Err(e) => Err(super::io_err(&dir)(e)),
        }
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|()| dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_the_shipped_model_and_anything_else_a_directory() {
        assert_eq!("default".parse(), Ok(ModelSource::Shipped));
        assert_eq!(
            "./default".parse(),
            Ok(ModelSource::Dir(PathBuf::from("./default")))
        );
    }

    #[test]
    fn the_embedded_description_pins_the_default_encoder_and_half_precision_weights() {
        let info = shipped_info().unwrap();
        info.verify(Path::new("bundle.json")).unwrap();
        assert_eq!(
            info.files[&format!("{ENCODER_DIR}/{WEIGHTS_FILE}")],
            crate::encoder::fetch::DEFAULT_WEIGHTS_SHA256
        );
        assert_eq!(
            info.files[FINE_TUNED_FILE],
            crate::digest::sha256_bytes(WEIGHTS)
        );
        let tensors =
            candle_core::safetensors::load_buffer(WEIGHTS, &candle_core::Device::Cpu).unwrap();
        assert!(tensors
            .values()
            .all(|t| t.dtype() == candle_core::DType::F16));
    }
}
