//! Loading safetensors and folding BatchNorm into the preceding convolution.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Named tensors from one safetensors file; a missing name is an error naming the file.
pub struct Weights {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// Reads every tensor of `path` onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Weights> {
        if !path.exists() {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                message: "file not found".into(),
            });
        }
        let tensors = candle_core::safetensors::load(path, device).map_err(|e| Error::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Weights {
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Weights {
                path: self.path.clone(),
                message: format!("missing tensor {name:?}"),
            })
    }

    /// `weight` (`[C_out, …]`) scaled per output channel by BatchNorm `bn`, and the
    /// matching bias: `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`.
    pub fn fold_bn(&self, weight: &Tensor, bn: &str, eps: f64) -> Result<(Tensor, Tensor)> {
        let gamma = self.get(&format!("{bn}.weight"))?;
        let beta = self.get(&format!("{bn}.bias"))?;
        let mean = self.get(&format!("{bn}.running_mean"))?;
        let var = self.get(&format!("{bn}.running_var"))?;
        let scale = gamma.broadcast_div(&(var + eps)?.sqrt()?)?;
        let mut shape = vec![scale.dim(0)?];
        shape.extend(std::iter::repeat_n(1, weight.rank() - 1));
        let w = weight.broadcast_mul(&scale.reshape(shape)?)?;
        let b = (beta - mean.mul(&scale)?)?;
        Ok((w, b))
    }
}
