//! Times one DnCNN layer (64 → 64, 3×3, padding 1) with the Winograd path on and off,
//! alternating, in one process: `cargo run --release -p robustify-ops --example winograd_ab`.

use candle_core::{Device, Var};
use std::time::Instant;

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for (b, s) in [(64, 32), (4, 224)] {
        let x = Var::randn(0f32, 1.0, (b, 64, s, s), &dev)?;
        let w = Var::randn(0f32, 0.05, (64, 64, 3, 3), &dev)?;
        let mut best = [f64::MAX; 4];
        for _ in 0..5 {
            for (i, on) in [true, false].into_iter().enumerate() {
                robustify_ops::set_winograd(on);
                let t = Instant::now();
                let y = robustify_ops::conv2d(&x, &w, 1, 1)?;
                best[i] = best[i].min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let grads = y.sum_all()?.backward()?;
                best[2 + i] = best[2 + i].min(t.elapsed().as_secs_f64());
                drop(grads);
            }
        }
        let flops = 2.0 * 9.0 * 64.0 * 64.0 * (b * s * s) as f64;
        println!(
            "b{b} {s}x{s}: forward winograd {:.1} ms ({:.0} GFLOP/s direct-equivalent), im2col {:.1} ms ({:.0}); backward {:.1} vs {:.1} ms",
            best[0] * 1e3,
            flops / best[0] / 1e9,
            best[1] * 1e3,
            flops / best[1] / 1e9,
            best[2] * 1e3,
            best[3] * 1e3
        );
    }
    Ok(())
}
