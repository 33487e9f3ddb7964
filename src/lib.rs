//! epitome: measuring how empathy is expressed in text-based mental health support.
//!
//! Implements the EPITOME framework and model of Sharma, Miner, Atkins and Althoff,
//! "A Computational Approach to Understanding Empathy Expressed in Text-Based Mental Health
//! Support" (EMNLP 2020). Data flows one way: [`data`] → [`text`] → [`encoder`]/[`model`] →
//! [`train`]/[`metrics`]/[`predict`], with [`bundle`] as the on-disk model.

pub mod data;
pub mod encoder;
pub mod mechanism;
pub mod model;
pub mod rng;
pub mod text;

pub use mechanism::{Mechanism, NUM_LEVELS};
