//! epitome: measuring how empathy is expressed in text-based mental health support.
//!
//! Implements the EPITOME framework and model of Sharma, Miner, Atkins and Althoff,
//! "A Computational Approach to Understanding Empathy Expressed in Text-Based Mental Health
//! Support" (EMNLP 2020). Data flows one way: [`data`] → [`text`] → [`encoder`]/[`model`] →
//! [`train`]/[`metrics`]/[`predict`] → [`serve`]/[`analyze`], with [`bundle`] as the on-disk
//! model.

pub mod analyze;
pub mod atomic;
pub mod bench;
pub mod bundle;
pub mod data;
pub mod digest;
pub mod encoder;
mod error;
pub mod evaluate;
pub mod experiment;
pub mod features;
pub mod home;
pub mod kernels;
pub mod loadtest;
pub mod mechanism;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod pretrain;
pub mod progress;
pub mod rng;
pub mod serve;
pub mod suggest;
pub mod text;
pub mod train;

pub use mechanism::{Mechanism, NUM_LEVELS};

pub use error::{Error, OptionError};
