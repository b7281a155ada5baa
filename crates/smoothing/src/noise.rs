//! Gaussian noise, reproducible per draw.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::StandardNormal;

use crate::{Image, Sigma};

/// Draws `x + δ`, δ ~ N(0, σ²I), in `[0, 1]` pixel space, without clipping.
///
/// Every draw has an index, and draw `i` of seed `s` uses ChaCha20 seeded with `s` on
/// stream `i`. Draws are therefore independent, the same seed always gives the same noise,
/// and any draw can be recomputed alone — which is what lets a crashed run resume from its
/// query log, and what makes results independent of batch size and concurrency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseSampler {
    sigma: Sigma,
    seed: u64,
}

impl NoiseSampler {
    /// A sampler at noise level `sigma` with master `seed`.
    pub fn new(sigma: Sigma, seed: u64) -> NoiseSampler {
        NoiseSampler { sigma, seed }
    }

    /// The master seed (recorded in every result).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// σ.
    pub fn sigma(&self) -> Sigma {
        self.sigma
    }

    /// Noisy copy number `index` of `image`.
    pub fn draw(&self, image: &Image, index: u64) -> Image {
        let mut rng = ChaCha20Rng::seed_from_u64(self.seed);
        rng.set_stream(index);
        let sigma = self.sigma.get() as f32;
        let mut noisy = image.clone();
        for v in noisy.data_mut() {
            let z: f32 = rng.sample(StandardNormal);
            *v += sigma * z;
        }
        noisy
    }

    /// Noisy copies for the draw indices `range`, in order.
    pub fn draws(&self, image: &Image, range: std::ops::Range<u64>) -> Vec<Image> {
        range.map(|i| self.draw(image, i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_noise_different_index_different_noise() {
        let img = Image::filled(8, 8, 0.5).unwrap();
        let s = NoiseSampler::new(Sigma::new(0.25).unwrap(), 7);
        assert_eq!(s.draw(&img, 3), s.draw(&img, 3));
        assert_ne!(s.draw(&img, 3), s.draw(&img, 4));
        let other = NoiseSampler::new(Sigma::new(0.25).unwrap(), 8);
        assert_ne!(s.draw(&img, 3), other.draw(&img, 3));
    }

    #[test]
    fn noise_has_the_requested_moments() {
        let img = Image::filled(64, 64, 0.5).unwrap();
        let s = NoiseSampler::new(Sigma::new(0.25).unwrap(), 1);
        let d: Vec<f64> = (0..8)
            .flat_map(|i| s.draw(&img, i).into_data())
            .map(|v| f64::from(v) - 0.5)
            .collect();
        let n = d.len() as f64; // 98,304 samples
        let mean = d.iter().sum::<f64>() / n;
        let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        // Standard errors: mean 0.25/sqrt(n) = 8e-4; variance 0.0625*sqrt(2/n) = 2.8e-4.
        assert!(mean.abs() < 4e-3, "mean {mean}");
        assert!((var - 0.0625).abs() < 1.5e-3, "variance {var}");
        // Values leave [0, 1]: no clipping here.
        assert!(d.iter().any(|x| *x > 0.5) && d.iter().any(|x| *x < -0.5));
    }
}
