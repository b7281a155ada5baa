//! Gradients through the ImageNet stand-in (EfficientNet-Lite0 with our depthwise and
//! fused convolution kernels), with respect to the image: what tuning a denoiser through a
//! photo classifier needs. Checked against central finite differences along random
//! directions (the weights are the shipped ones; the image a real photo's centre crop).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{D, Device, Tensor, Var};
use robustify_smoothing::{DecodeLimits, Image};
use robustify_standin::imagenet::{ImageNetClassifier, repo_root};

/// The goldfish's centre `size × size` crop as `[1, 3, size, size]` in [0, 1].
fn crop(size: usize) -> Tensor {
    let bytes = std::fs::read(repo_root().join("examples/images/goldfish.jpg")).unwrap();
    let image = Image::decode(&bytes, &DecodeLimits::default()).unwrap();
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (x0, y0) = ((w - size) / 2, (h - size) / 2);
    let mut data = Vec::with_capacity(3 * size * size);
    for c in 0..3 {
        for y in y0..y0 + size {
            let row = c * w * h + y * w;
            data.extend_from_slice(&image.data()[row + x0..row + x0 + size]);
        }
    }
    Tensor::from_vec(data, (1, 3, size, size), &Device::Cpu).unwrap()
}

#[test]
fn the_input_gradient_of_a_log_probability_matches_finite_differences() {
    let model = ImageNetClassifier::load_default().unwrap();
    let x = Var::from_tensor(&crop(96)).unwrap();
    let logits = model.logits(&x).unwrap();
    let label = logits
        .argmax(D::Minus1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap()[0] as usize;
    // The stability objective's term: log-softmax of the clean label.
    let f = |t: &Tensor| -> Tensor {
        candle_nn::ops::log_softmax(&model.logits(t).unwrap(), D::Minus1)
            .unwrap()
            .narrow(1, label, 1)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let grads = f(x.as_tensor()).backward().unwrap();
    let g = grads.get(&x).unwrap();
    let l2 = |t: &Tensor| -> f32 {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt()
    };
    let norm = l2(g);
    assert!(norm.is_finite() && norm > 0.0, "gradient norm {norm}");
    // Along the gradient itself (a wrong gradient would not match there: along a random
    // direction in 27,648 dimensions the true slope is ~1% of |∇|, too small to tell), and
    // along the gradient mixed with random directions.
    let unit = |t: &Tensor| -> Tensor { (t / f64::from(l2(t))).unwrap() };
    let ghat = unit(g);
    for (i, mix) in [0.0, 0.5, 1.0].into_iter().enumerate() {
        let r = unit(&Tensor::randn(0f32, 1.0, x.dims(), &Device::Cpu).unwrap());
        let d = unit(&(&ghat + (r * mix).unwrap()).unwrap());
        let eps = 0.005;
        let plus = f(&(x.as_tensor() + (&d * eps).unwrap()).unwrap());
        let minus = f(&(x.as_tensor() - (&d * eps).unwrap()).unwrap());
        let numeric = f64::from((plus - minus).unwrap().to_scalar::<f32>().unwrap()) / (2.0 * eps);
        let analytic = f64::from(
            (g * &d)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        );
        assert!(
            (numeric - analytic).abs() <= 0.05 * analytic.abs(),
            "direction {i}: finite differences {numeric:.5}, gradient {analytic:.5} (|∇| {norm:.4})"
        );
    }
}
