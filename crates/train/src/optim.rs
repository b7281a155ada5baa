//! Optimisers whose state can be saved and restored, so `--resume` continues exactly.
//!
//! candle-nn's optimisers keep their moments private; these two keep them in a map keyed by
//! the variable's name in the `VarMap`, which a checkpoint writes as safetensors.

use std::collections::HashMap;

use candle_core::{Tensor, backprop::GradStore};
use candle_nn::VarMap;

use crate::Result;

fn vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = match varmap.data().lock() {
        Ok(d) => d,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// SGD with momentum (optionally Nesterov) and L2 weight decay.
pub struct Sgd {
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
    velocity: HashMap<String, Tensor>,
}

impl Sgd {
    /// A fresh optimiser.
    pub fn new(momentum: f64, weight_decay: f64, nesterov: bool) -> Sgd {
        Sgd {
            momentum,
            weight_decay,
            nesterov,
            velocity: HashMap::new(),
        }
    }

    /// One step at learning rate `lr` on every variable that has a gradient.
    pub fn step(&mut self, varmap: &VarMap, grads: &GradStore, lr: f64) -> Result<()> {
        for (name, var) in vars(varmap) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let w = var.as_tensor().detach();
            let g = if self.weight_decay > 0.0 {
                (g.detach() + (&w * self.weight_decay)?)?
            } else {
                g.detach()
            };
            let v = match self.velocity.get(&name) {
                Some(v) => ((v * self.momentum)? + &g)?,
                None => g.clone(),
            };
            let update = if self.nesterov {
                (&g + (&v * self.momentum)?)?
            } else {
                v.clone()
            };
            var.set(&(w - (update * lr)?)?)?;
            self.velocity.insert(name, v);
        }
        Ok(())
    }

    /// The state to checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        self.velocity
            .iter()
            .map(|(k, v)| (format!("velocity.{k}"), v.clone()))
            .collect()
    }

    /// Restores [`Sgd::state`].
    pub fn load_state(&mut self, state: HashMap<String, Tensor>) {
        self.velocity = state
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("velocity.").map(|n| (n.to_owned(), v)))
            .collect();
    }
}

/// Adam (Kingma & Ba, 2015) without weight decay.
pub struct Adam {
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: u64,
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: HashMap::new(),
            v: HashMap::new(),
        }
    }
}

impl Adam {
    /// One step at learning rate `lr`.
    pub fn step(&mut self, varmap: &VarMap, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        for (name, var) in vars(varmap) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.detach();
            let m = match self.m.get(&name) {
                Some(m) => ((m * self.beta1)? + (&g * (1.0 - self.beta1))?)?,
                None => (&g * (1.0 - self.beta1))?,
            };
            let v = match self.v.get(&name) {
                Some(v) => ((v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?,
                None => (g.sqr()? * (1.0 - self.beta2))?,
            };
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.eps)?)?;
            var.set(&(var.as_tensor().detach() - (update * lr)?)?)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name, v);
        }
        Ok(())
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The state to checkpoint (the step count is kept in the checkpoint's progress).
    pub fn state(&self) -> HashMap<String, Tensor> {
        let m = self.m.iter().map(|(k, t)| (format!("m.{k}"), t.clone()));
        m.chain(self.v.iter().map(|(k, t)| (format!("v.{k}"), t.clone())))
            .collect()
    }

    /// Restores [`Adam::state`] and the step count.
    pub fn load_state(&mut self, state: HashMap<String, Tensor>, steps: u64) {
        self.step = steps;
        for (k, t) in state {
            if let Some(n) = k.strip_prefix("m.") {
                self.m.insert(n.to_owned(), t);
            } else if let Some(n) = k.strip_prefix("v.") {
                self.v.insert(n.to_owned(), t);
            }
        }
    }
}

/// Learning rate at `step` of `total` for a peak of `peak`: linear warm-up over the first
/// 2% of steps, then cosine decay to zero.
pub fn warmup_cosine(peak: f64, step: u64, total: u64) -> f64 {
    let warm = (total / 50).max(1);
    if step < warm {
        peak * (step + 1) as f64 / warm as f64
    } else {
        let t = (step - warm) as f64 / (total - warm).max(1) as f64;
        peak * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

/// Re-initialises every weight of rank ≥ 2 with Kaiming-normal values (std √(2/fan_in))
/// drawn from a seeded generator, in name order, and sets the listed vectors to zero. candle
/// cannot seed its CPU generator, so this is what makes a run's initialisation reproducible.
pub fn seeded_init(varmap: &VarMap, seed: u64, zero: &[&str]) -> Result<()> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in vars(varmap) {
        let t = var.as_tensor();
        if zero.contains(&name.as_str()) {
            var.set(&t.zeros_like()?)?;
        } else if t.rank() >= 2 {
            let fan_in: usize = t.dims()[1..].iter().product();
            let std = (2.0 / fan_in.max(1) as f64).sqrt() as f32;
            let normal = rand_distr::Normal::new(0.0f32, std).map_err(|e| crate::Error::Data {
                path: name.clone().into(),
                message: e.to_string(),
            })?;
            let values: Vec<f32> = (0..t.elem_count())
                .map(|_| normal.sample(&mut rng))
                .collect();
            var.set(&Tensor::from_vec(values, t.shape(), t.device())?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Init, VarBuilder};

    /// Minimises (w − 3)² from w = 0.
    fn fit(mut step: impl FnMut(&VarMap, &GradStore) -> Result<()>) -> f32 {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let w = vb.get_with_hints(1, "w", Init::Const(0.0)).unwrap();
        for _ in 0..300 {
            let loss = (&w - 3.0).unwrap().sqr().unwrap().sum_all().unwrap();
            step(&varmap, &loss.backward().unwrap()).unwrap();
        }
        w.to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn both_optimisers_converge() {
        let mut sgd = Sgd::new(0.9, 0.0, true);
        assert!((fit(|m, g| sgd.step(m, g, 0.01)) - 3.0).abs() < 1e-3);
        let mut adam = Adam::default();
        assert!((fit(|m, g| adam.step(m, g, 0.05)) - 3.0).abs() < 1e-2);
        assert_eq!(adam.steps(), 300);
        assert_eq!(adam.state().len(), 2);
    }
}
