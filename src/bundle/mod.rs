//! The model bundle: a directory holding everything needed to score pairs.
//!
//! ```text
//! bundle.json          format version, model and encoder configuration, training arguments,
//!                      data hashes, the split, dev metrics, SHA-256 of every file
//! encoder/             the pretrained encoder (config.json, tokenizer.json, model.safetensors);
//!                      the frozen seeker encoder is this encoder unchanged
//! weights.safetensors  the fine-tuned tensors (responder encoder(s), attention, heads)
//! ```
//! Saving assembles the directory beside its destination and renames it into place; loading
//! verifies every hash and every tensor and names what is wrong.

mod import;
mod shipped;

pub use import::{import_original, ImportError};
pub use shipped::{install as install_shipped, shipped_info, ModelSource};

use crate::data::{LoadReport, Split};
use crate::digest::{sha256_bytes, sha256_file};
use crate::encoder::{
    EncoderConfig, EncoderError, PretrainedEncoder, SafetensorsFile, StoredAt, StoredTensors,
    CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE,
};
use crate::model::params::ParamSource;
use crate::model::{without_backtrace, BiEncoder, ModelConfig, SEEKER_PREFIX};
use crate::predict::Scorer;
use crate::text::TextEncoder;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// 2: `settings_sha256` pins the settings that change what is computed.
pub const FORMAT_VERSION: u32 = 2;
pub const BUNDLE_FILE: &str = "bundle.json";
pub const FINE_TUNED_FILE: &str = "weights.safetensors";
pub const ENCODER_DIR: &str = "encoder";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{} is not a model bundle: it has no {BUNDLE_FILE} (train one with `epitome train --out DIR`)", dir.display())]
    NotABundle { dir: PathBuf },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{} is corrupt: its SHA-256 is {actual}, the bundle recorded {expected}; restore the file or train again", path.display())]
    Corrupt {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{} lacks tensors the model needs: {}", path.display(), names.join(", "))]
    MissingTensors { path: PathBuf, names: Vec<String> },
    #[error("{} holds tensors the model described in {BUNDLE_FILE} does not use: {}; model.responder or model.mechanisms does not match the weights", path.display(), names.join(", "))]
    UnusedTensors { path: PathBuf, names: Vec<String> },
    #[error("{}: field {field}: {message}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("cannot build the model: {}", without_backtrace(.0))]
    Tensor(#[from] candle_core::Error),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncoderInfo {
    /// Where the encoder came from when the bundle was made (informative only).
    pub source: String,
    pub config: EncoderConfig,
}

/// Contents of `bundle.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BundleInfo {
    pub format_version: u32,
    pub epitome_version: String,
    pub model: ModelConfig,
    /// Maximum tokens of each post, specials included.
    pub max_len: usize,
    pub encoder: EncoderInfo,
    /// The training arguments, as `epitome train` recorded them.
    pub training: serde_json::Value,
    pub data: Option<LoadReport>,
    pub split: Option<Split>,
    /// Dev-set metrics of the kept epoch, as `epitome eval --json` writes them.
    pub dev_metrics: Option<serde_json::Value>,
    /// SHA-256 of every file in the bundle, by path relative to the bundle.
    pub files: BTreeMap<String, String>,
    /// SHA-256 of each setting that changes what the model computes (`model.responder`,
    /// `max_len`, ...), so that an edit of bundle.json is refused, naming the setting.
    pub settings_sha256: BTreeMap<String, String>,
}

/// The files every bundle has, each of which must have its hash recorded.
fn required_files() -> [String; 4] {
    [
        format!("{ENCODER_DIR}/{CONFIG_FILE}"),
        format!("{ENCODER_DIR}/{TOKENIZER_FILE}"),
        format!("{ENCODER_DIR}/{WEIGHTS_FILE}"),
        FINE_TUNED_FILE.to_owned(),
    ]
}

impl BundleInfo {
    /// One digest per setting that changes the computation, keyed by its bundle.json path.
    pub fn settings_digests(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let digest = |v: &serde_json::Value| sha256_bytes(v.to_string().as_bytes());
        if let Ok(serde_json::Value::Object(model)) = serde_json::to_value(&self.model) {
            for (key, value) in &model {
                out.insert(format!("model.{key}"), digest(value));
            }
        }
        out.insert("max_len".into(), digest(&self.max_len.into()));
        if let Ok(config) = serde_json::to_value(&self.encoder.config) {
            out.insert("encoder.config".into(), digest(&config));
        }
        out
    }

    /// Refuses a description that was edited, or that cannot describe a model, naming the
    /// field; `path` is the bundle.json it came from.
    fn verify(&self, path: &Path) -> Result<(), BundleError> {
        let field = |field: &str, message: String| BundleError::Field {
            path: path.to_path_buf(),
            field: field.to_owned(),
            message,
        };
        if self.model.mechanisms.is_empty() {
            return Err(field(
                "model.mechanisms",
                "is empty; a model predicts at least one of ER, IP, EX".into(),
            ));
        }
        for (i, m) in self.model.mechanisms.iter().enumerate() {
            if self.model.mechanisms[..i].contains(m) {
                return Err(field("model.mechanisms", format!("{m} appears twice")));
            }
        }
        for rel in required_files() {
            if !self.files.contains_key(&rel) {
                return Err(field(
                    "files",
                    format!("records no SHA-256 for {rel}; every file of a bundle is pinned, restore bundle.json or train again"),
                ));
            }
        }
        for (name, expected) in self.settings_digests() {
            match self.settings_sha256.get(&name) {
                None => {
                    return Err(field(
                        "settings_sha256",
                        format!("records no SHA-256 for {name}; restore bundle.json or train again"),
                    ))
                }
                Some(recorded) if *recorded != expected => {
                    return Err(field(
                        &name,
                        "differs from the value the model was trained with (settings_sha256); restore bundle.json or train again".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// A bundle loaded and verified, ready to score.
pub struct LoadedBundle {
    pub info: BundleInfo,
    pub model: BiEncoder,
    pub text: TextEncoder,
    pub pad_id: u32,
    pub dir: PathBuf,
    pub device: Device,
}

impl LoadedBundle {
    /// What identifies this model's predictions: a digest of every file hash and setting the
    /// bundle records, and the precision it runs at.
    pub fn fingerprint(&self) -> String {
        let what = serde_json::json!({
            "files": self.info.files,
            "settings": self.info.settings_sha256,
            "precision": format!("{:?}", self.model.precision()),
        });
        format!(
            "sha256 {}",
            &sha256_bytes(what.to_string().as_bytes())[..16]
        )
    }

    /// The model with its tokenizer, ready to score.
    pub fn scorer(&self) -> Scorer<'_> {
        Scorer {
            model: &self.model,
            text: &self.text,
            pad_id: self.pad_id,
            device: &self.device,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), BundleError> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(io_err(to))?;
    }
    Ok(())
}

/// Writes a bundle to `dest`, replacing any bundle there only once the new one is complete.
pub fn save(
    dest: &Path,
    mut info: BundleInfo,
    encoder: &PretrainedEncoder,
    fine_tuned: &HashMap<String, Tensor>,
) -> Result<(), BundleError> {
    crate::atomic::replace_dir(
        dest,
        |path, e| io_err(path)(e),
        |staging| {
            let enc_dir = staging.join(ENCODER_DIR);
            std::fs::create_dir_all(&enc_dir).map_err(io_err(&enc_dir))?;
            for file in [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE] {
                link_or_copy(&encoder.dir.join(file), &enc_dir.join(file))?;
            }
            let weights = staging.join(FINE_TUNED_FILE);
            candle_core::safetensors::save(fine_tuned, &weights)?;
            info.files.clear();
            info.settings_sha256 = info.settings_digests();
            for rel in required_files() {
                let path = staging.join(&rel);
                info.files
                    .insert(rel, sha256_file(&path).map_err(io_err(&path))?);
            }
            let json_path = staging.join(BUNDLE_FILE);
            let json = serde_json::to_string_pretty(&info).map_err(|e| BundleError::Invalid {
                path: json_path.clone(),
                message: e.to_string(),
            })?;
            std::fs::write(&json_path, json + "\n").map_err(io_err(&json_path))
        },
    )
}

/// Reads `bundle.json` alone, without loading or verifying weights.
pub fn read_info(dir: &Path) -> Result<BundleInfo, BundleError> {
    let path = dir.join(BUNDLE_FILE);
    if !path.is_file() {
        return Err(BundleError::NotABundle {
            dir: dir.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| BundleError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let info: BundleInfo = serde_json::from_str(&text).map_err(|e| BundleError::Invalid {
        path: path.clone(),
        message: format!("not a valid bundle description: {e}"),
    })?;
    if info.format_version != FORMAT_VERSION {
        return Err(BundleError::Invalid {
            path,
            message: format!(
                "bundle format {} is not supported by this epitome (format {FORMAT_VERSION}); retrain or use a matching epitome",
                info.format_version
            ),
        }
        );
    }
    info.verify(&path)?;
    Ok(info)
}

/// Loads and verifies a bundle.
pub fn load(dir: &Path, device: &Device) -> Result<LoadedBundle, BundleError> {
    let info = read_info(dir)?;
    for (rel, expected) in &info.files {
        let path = dir.join(rel);
        let actual = sha256_file(&path).map_err(|e| BundleError::Invalid {
            path: path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        if &actual != expected {
            return Err(BundleError::Corrupt {
                path,
                expected: expected.clone(),
                actual,
            });
        }
    }
    let encoder = PretrainedEncoder::open(&dir.join(ENCODER_DIR))?;
    // Tensors are read as the layers ask for them, never whole files at once (see
    // `StoredTensors`); f16 tensors (the shipped model's) become f32 as they are read.
    let (pretrained_file, pretrained) = encoder.stored_tensors()?;
    let weights_path = dir.join(FINE_TUNED_FILE);
    let fine_tuned_file =
        SafetensorsFile::open(&weights_path).map_err(|e| BundleError::Invalid {
            path: weights_path.clone(),
            message: format!("cannot read the weights: {e}"),
        })?;
    let fine_tuned_names: Vec<String> = fine_tuned_file.names().map(str::to_owned).collect();
    let files = vec![pretrained_file, fine_tuned_file];
    let pretrained = pretrained
        .into_iter()
        .map(|(model_name, name)| (model_name, StoredAt { file: 0, name }))
        .collect();
    let fine_tuned = StoredTensors::names_in(&files, 1);
    let tensors = StoredTensors::new(files, assemble(&info.model, pretrained, fine_tuned));
    let source = ParamSource::load(tensors);
    let model = BiEncoder::load(source.var_builder(device), &encoder.config, &info.model)?;
    let missing = source.missing();
    if !missing.is_empty() {
        return Err(BundleError::MissingTensors {
            path: weights_path,
            names: missing,
        });
    }
    let unused = source.never_requested(&fine_tuned_names);
    if !unused.is_empty() {
        return Err(BundleError::UnusedTensors {
            path: weights_path,
            names: unused,
        });
    }
    let text = encoder.text_encoder(info.max_len)?;
    Ok(LoadedBundle {
        pad_id: encoder.config.pad_token_id,
        info,
        model,
        text,
        dir: dir.to_path_buf(),
        device: device.clone(),
    })
}

/// Writes a copy of the bundle at `src` to `dest` with its fine-tuned tensors stored as
/// `dtype` (f16 halves the file; the model still computes in f32), its description first
/// passed through `edit` (to record how it was made, say).
pub fn export(
    src: &Path,
    dest: &Path,
    dtype: DType,
    edit: impl FnOnce(&mut BundleInfo),
) -> Result<(), BundleError> {
    let loaded = load(src, &Device::Cpu)?;
    let weights_path = src.join(FINE_TUNED_FILE);
    let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)?
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(dtype)?)))
        .collect::<Result<HashMap<_, _>, candle_core::Error>>()?;
    let mut info = loaded.info;
    edit(&mut info);
    let encoder = PretrainedEncoder::open(&src.join(ENCODER_DIR))?;
    save(dest, info, &encoder, &tensors)
}

/// The model's full tensor map: the pretrained encoder as seeker and as the starting point of
/// every responder, overlaid with the fine-tuned tensors. Tensors (or where they are stored)
/// are shared, not copied.
pub fn assemble<T: Clone>(
    model: &ModelConfig,
    pretrained: HashMap<String, T>,
    fine_tuned: HashMap<String, T>,
) -> HashMap<String, T> {
    let mut out = HashMap::new();
    let mut prefixes = model.responder_prefixes();
    prefixes.push(SEEKER_PREFIX.to_owned());
    for (name, t) in &pretrained {
        for p in &prefixes {
            out.insert(format!("{p}.{name}"), t.clone());
        }
    }
    out.extend(fine_tuned);
    out
}
