//! Stock candle conv2d against robustify-ops' im2col conv2d, in one process.
//!
//! cargo run --release -p robustify-ops --example conv_bench

use std::time::Instant;

use candle_core::{Device, Tensor, Var};

/// A plain stack of `layers` 3×3 convolutions with ReLU (DnCNN's compute, without BN).
fn stack(x: &Tensor, ws: &[Var], ours: bool) -> candle_core::Result<Tensor> {
    let mut y = x.clone();
    for (i, w) in ws.iter().enumerate() {
        y = if ours {
            robustify_ops::conv2d(&y, w, 1, 1)?
        } else {
            y.conv2d(w, 1, 1, 1, 1)?
        };
        if i + 1 < ws.len() {
            y = y.relu()?;
        }
    }
    Ok(y)
}

fn time(label: &str, reps: usize, images: usize, flops: f64, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    let ips = images as f64 / s;
    println!(
        "{label:<40} {ips:>8.1} img/s {:>7.1} GFLOP/s",
        flops * ips / 1e9
    );
    ips
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for (b, hw, reps) in [(64usize, 32usize, 2usize), (4, 224, 1)] {
        let chans = [3usize]
            .into_iter()
            .chain([64; 16])
            .chain([3])
            .collect::<Vec<_>>();
        let ws: Vec<Var> = chans
            .windows(2)
            .map(|p| Var::randn(0f32, 0.05, (p[1], p[0], 3, 3), &dev))
            .collect::<candle_core::Result<_>>()?;
        // FLOPs per image, forward: 2·k²·Cin·Cout·H·W per layer.
        let fwd: f64 = chans
            .windows(2)
            .map(|p| 2.0 * 9.0 * (p[0] * p[1] * hw * hw) as f64)
            .sum();
        let x = Tensor::randn(0f32, 1.0, (b, 3, hw, hw), &dev)?;
        println!("DnCNN-shaped stack 17x64, {hw}x{hw}, batch {b}");
        let mut r = [0.0; 4];
        for (i, ours) in [false, true].into_iter().enumerate() {
            let name = if ours { "ours" } else { "candle" };
            r[i] = time(&format!("  forward {name}"), reps, b, fwd, || {
                stack(&x, &ws, ours)
                    .map(|_| ())
                    .unwrap_or_else(|e| panic!("{e}"));
            });
            r[2 + i] = time(&format!("  train step {name}"), reps, b, 3.0 * fwd, || {
                let loss = stack(&x, &ws, ours).and_then(|y| y.sqr()?.mean_all());
                loss.and_then(|l| l.backward())
                    .map(|_| ())
                    .unwrap_or_else(|e| panic!("{e}"));
            });
        }
        println!(
            "  ratio ours/candle: forward {:.2}x, train step {:.2}x",
            r[1] / r[0],
            r[3] / r[2]
        );
    }
    Ok(())
}
