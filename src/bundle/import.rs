//! Bundles from checkpoints of the original code, one per mechanism.

use super::{assemble, save, BundleError, BundleInfo, EncoderInfo, FORMAT_VERSION};
use crate::digest::sha256_file;
use crate::encoder::PretrainedEncoder;
use crate::mechanism::Mechanism;
use crate::model::import::{read_checkpoint, rename_original};
use crate::model::params::ParamSource;
use crate::model::{BiEncoder, ModelConfig, ResponderSharing, SEEKER_PREFIX};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why checkpoints of the original code cannot become a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "give one checkpoint per mechanism, e.g. --checkpoint ER=er.pth --checkpoint IP=ip.pth"
    )]
    OnePerMechanism,
    #[error("the seeker encoders of {} and {} differ ({tensor}); epitome's model has one frozen seeker encoder", first.display(), second.display())]
    SeekersDiffer {
        first: PathBuf,
        second: PathBuf,
        tensor: String,
    },
    #[error("the checkpoints lack tensors: {}", names.join(", "))]
    LackTensors { names: Vec<String> },
}

fn same(a: &Tensor, b: &Tensor) -> Result<bool, candle_core::Error> {
    if a.dims() != b.dims() {
        return Ok(false);
    }
    Ok((a - b)?.abs()?.max_all()?.to_scalar::<f32>()? == 0.0)
}

/// Writes a bundle that scores as the original models do: one responder encoder per
/// mechanism, attention over unmasked seeker padding, every post padded to `max_len`.
///
/// The seeker encoders of the checkpoints are frozen copies of the pretrained encoder; they
/// must agree with each other, and are stored in the bundle only where they differ from
/// `encoder`.
pub fn import_original(
    encoder: &PretrainedEncoder,
    checkpoints: &[(Mechanism, PathBuf)],
    max_len: usize,
    out: &Path,
) -> Result<(), BundleError> {
    let device = Device::Cpu;
    let mut checkpoints = checkpoints.to_vec();
    checkpoints.sort_by_key(|(m, _)| *m);
    if checkpoints.is_empty() || checkpoints.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(ImportError::OnePerMechanism.into());
    }
    let config = ModelConfig {
        mechanisms: checkpoints.iter().map(|(m, _)| *m).collect(),
        responder: ResponderSharing::Separate,
        dropout: 0.1,
        mask_seeker_padding: false,
        pad_to_max_len: true,
        level_offsets: Default::default(),
        level_head: Default::default(),
        level_pooling: Default::default(),
    };
    let mut fine_tuned: HashMap<String, Tensor> = HashMap::new();
    let mut seeker: Option<(PathBuf, HashMap<String, Tensor>)> = None;
    let mut sources = Vec::new();
    for (m, path) in &checkpoints {
        let tensors = read_checkpoint(path, &device).map_err(|e| BundleError::Invalid {
            path: path.clone(),
            message: format!("cannot read the checkpoint: {e}"),
        })?;
        let renamed = rename_original(tensors, *m, &config.responder_prefix(*m));
        let (own_seeker, rest): (HashMap<_, _>, HashMap<_, _>) = renamed
            .into_iter()
            .partition(|(k, _)| k.starts_with(&format!("{SEEKER_PREFIX}.")));
        match &seeker {
            None => seeker = Some((path.clone(), own_seeker)),
            Some((first, expected)) => {
                for (k, t) in &own_seeker {
                    if !expected
                        .get(k)
                        .map(|e| same(e, t))
                        .transpose()?
                        .unwrap_or(false)
                    {
                        return Err(ImportError::SeekersDiffer {
                            first: first.clone(),
                            second: path.clone(),
                            tensor: k.clone(),
                        }
                        .into());
                    }
                }
            }
        }
        fine_tuned.extend(rest);
        sources.push(serde_json::json!({
            "mechanism": m,
            "checkpoint": path.display().to_string(),
            "sha256": sha256_file(path).map_err(|e| BundleError::Invalid {
                path: path.clone(),
                message: format!("cannot read: {e}"),
            })?,
        }));
    }
    let pretrained = encoder.load_tensors(&device)?;
    if let Some((_, seeker)) = seeker {
        for (k, t) in seeker {
            let name = k
                .trim_start_matches(&format!("{SEEKER_PREFIX}."))
                .to_owned();
            if !pretrained
                .get(&name)
                .map(|p| same(p, &t))
                .transpose()?
                .unwrap_or(false)
            {
                fine_tuned.insert(k, t);
            }
        }
    }
    let source = ParamSource::load(assemble(&config, pretrained, fine_tuned.clone()));
    BiEncoder::load(source.var_builder(&device), &encoder.config, &config)?;
    let missing = source.missing();
    if !missing.is_empty() {
        return Err(ImportError::LackTensors { names: missing }.into());
    }
    encoder.text_encoder(max_len)?;
    let info = BundleInfo {
        format_version: FORMAT_VERSION,
        epitome_version: env!("CARGO_PKG_VERSION").to_owned(),
        model: config,
        max_len,
        encoder: EncoderInfo {
            source: encoder.dir.display().to_string(),
            config: encoder.config.clone(),
        },
        training: serde_json::json!({ "imported_from": sources }),
        data: None,
        split: None,
        dev_metrics: None,
        files: Default::default(),
        settings_sha256: Default::default(),
    };
    save(out, info, encoder, &fine_tuned)
}
