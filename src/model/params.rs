//! Where a model's tensors come from, and which of them train.
//!
//! One backend serves both building a model for training (pretrained encoder tensors become
//! trainable copies, new layers are initialised from the seeded generator, frozen tensors stay
//! plain tensors) and loading a finished model (every tensor must be found). A tensor that
//! should exist but does not is recorded, so that the error lists all of them at once instead of
//! the first, and nothing is silently initialised.

use crate::encoder::StoredTensors;
use crate::rng::SplitMix64;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

type Predicate = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// How a training run treats tensors.
pub struct TrainPolicy {
    pub varmap: VarMap,
    pub rng: Mutex<SplitMix64>,
    /// Tensors found in the source that stay fixed (the seeker encoder, frozen embeddings).
    pub is_frozen: Predicate,
    /// Tensors that may be created when missing (new layers, never encoder tensors).
    pub may_init: Predicate,
}

impl TrainPolicy {
    /// Makes `value` a trainable variable named `name`; returns its tensor.
    fn register(&self, name: &str, value: &Tensor) -> Result<Tensor> {
        let var = Var::from_tensor(value)?;
        let out = var.as_tensor().clone();
        self.varmap
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), var);
        Ok(out)
    }
}

/// The variables registered in `varmap`, sorted by name: a training run's trainable tensors.
pub fn registered_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// The tensors a model is built from: held in memory (a training run's starting point), or
/// read from files as each layer asks (a loaded model, [`StoredTensors`]).
pub enum Tensors {
    Memory(HashMap<String, Tensor>),
    Stored(StoredTensors),
}

impl Tensors {
    fn get(&self, name: &str) -> Result<Option<Tensor>> {
        match self {
            Self::Memory(m) => Ok(m.get(name).cloned()),
            Self::Stored(s) => s.get(name),
        }
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Self::Memory(m) => m.contains_key(name),
            Self::Stored(s) => s.contains(name),
        }
    }
}

impl From<HashMap<String, Tensor>> for Tensors {
    fn from(m: HashMap<String, Tensor>) -> Self {
        Self::Memory(m)
    }
}

impl From<StoredTensors> for Tensors {
    fn from(s: StoredTensors) -> Self {
        Self::Stored(s)
    }
}

pub struct ParamSource {
    tensors: Tensors,
    train: Option<TrainPolicy>,
    missing: Mutex<Vec<String>>,
    requested: Mutex<HashSet<String>>,
}

struct Backend(Arc<ParamSource>);

impl ParamSource {
    /// Strict loading: every requested tensor must be in `tensors`.
    pub fn load(tensors: impl Into<Tensors>) -> Arc<Self> {
        Arc::new(Self {
            tensors: tensors.into(),
            train: None,
            missing: Mutex::new(Vec::new()),
            requested: Mutex::new(HashSet::new()),
        })
    }

    pub fn train(tensors: HashMap<String, Tensor>, policy: TrainPolicy) -> Arc<Self> {
        Arc::new(Self {
            tensors: tensors.into(),
            train: Some(policy),
            missing: Mutex::new(Vec::new()),
            requested: Mutex::new(HashSet::new()),
        })
    }

    pub fn var_builder(self: &Arc<Self>, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Backend(self.clone())), DType::F32, device.clone())
    }

    /// Names requested but absent, sorted; empty when the model is complete.
    pub fn missing(&self) -> Vec<String> {
        let mut m = self
            .missing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        m.sort();
        m.dedup();
        m
    }

    /// Those of `names` the model never asked for, sorted: tensors a loaded file holds that
    /// the described model would silently ignore.
    pub fn never_requested(&self, names: &[String]) -> Vec<String> {
        let requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = names
            .iter()
            .filter(|n| !requested.contains(*n))
            .cloned()
            .collect();
        out.sort();
        out
    }

    fn init(policy: &TrainPolicy, shape: &Shape, init: Init, device: &Device) -> Result<Tensor> {
        let n = shape.elem_count();
        let mut rng = policy.rng.lock().unwrap_or_else(|e| e.into_inner());
        let values: Vec<f32> = match init {
            Init::Const(v) => vec![v as f32; n],
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| {
                    // Box-Muller.
                    let u1 = (rng.next_f32() as f64).max(1e-12);
                    let u2 = rng.next_f32() as f64;
                    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                    (mean + stdev * z) as f32
                })
                .collect(),
            Init::Uniform { lo, up } => (0..n)
                .map(|_| (lo + (up - lo) * rng.next_f32() as f64) as f32)
                .collect(),
            Init::Kaiming { .. } => {
                let fan_in = shape.dims().iter().skip(1).product::<usize>().max(1);
                let bound = 1.0 / (fan_in as f64).sqrt();
                (0..n)
                    .map(|_| (bound * (2.0 * rng.next_f32() as f64 - 1.0)) as f32)
                    .collect()
            }
        };
        Tensor::from_vec(values, shape, device)
    }
}

impl candle_nn::var_builder::SimpleBackend for Backend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let src = &self.0;
        src.requested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
        if let Some(policy) = &src.train {
            if let Some(var) = policy
                .varmap
                .data()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
            {
                return Ok(var.as_tensor().clone());
            }
        }
        if let Some(t) = src.tensors.get(name)? {
            if t.shape() != &shape {
                candle_core::bail!(
                    "tensor {name} has shape {:?}, the model expects {:?}",
                    t.dims(),
                    shape.dims()
                );
            }
            let t = t.to_dtype(dtype)?.to_device(dev)?;
            return match &src.train {
                // A Var is updated in place: copy, since the source tensor may be shared with
                // a frozen copy of the same encoder.
                Some(policy) if !(policy.is_frozen)(name) => policy.register(name, &t.copy()?),
                _ => Ok(t),
            };
        }
        match &src.train {
            Some(policy) if (policy.may_init)(name) => policy.register(
                name,
                &ParamSource::init(policy, &shape, init, dev)?.to_dtype(dtype)?,
            ),
            _ => {
                src.missing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(name.to_owned());
                Tensor::zeros(shape, dtype, dev)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        match self.0.tensors.get(name)? {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("no tensor named {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.tensors.contains(name)
    }
}
