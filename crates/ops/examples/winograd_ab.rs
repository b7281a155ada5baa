//! Times one DnCNN layer (64 → 64, 3×3, padding 1) with the Winograd path on and off,
//! alternating, in one process: `cargo run --release -p robustify-ops --example
//! winograd_ab`. One path, other shapes: `winograd_ab on|off|both 32|224|B:C:S,…`;
//! `forward` times the Winograd forward pass alone (for profiles).

use candle_core::{Device, Var};
use std::time::Instant;

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let forward_only = args.first().map(String::as_str) == Some("forward");
    let paths: Vec<bool> = match args.first().map(String::as_str) {
        Some("on") | Some("forward") => vec![true],
        Some("off") => vec![false],
        _ => vec![true, false],
    };
    // `B:C:S` shapes (batch, channels in and out, side), comma-separated.
    let sizes: Vec<(usize, usize, usize)> = match args.get(1).map(String::as_str) {
        Some("32") => vec![(64, 64, 32)],
        Some("224") => vec![(4, 64, 224)],
        Some(list) => list
            .split(',')
            .filter_map(|s| {
                let v: Vec<usize> = s.split(':').filter_map(|n| n.parse().ok()).collect();
                (v.len() == 3).then(|| (v[0], v[1], v[2]))
            })
            .collect(),
        None => vec![(64, 64, 32), (4, 64, 224)],
    };
    for (b, ch, s) in sizes {
        let x = Var::randn(0f32, 1.0, (b, ch, s, s), &dev)?;
        let w = Var::randn(0f32, 0.05, (ch, ch, 3, 3), &dev)?;
        let mut best = [[f64::MAX; 2]; 2];
        for _ in 0..5 {
            for &on in &paths {
                robustify_ops::set_winograd(on);
                let t = Instant::now();
                let y = robustify_ops::conv2d(&x, &w, 1, 1)?;
                let fwd = t.elapsed().as_secs_f64();
                if forward_only {
                    best[0][0] = best[0][0].min(fwd);
                    continue;
                }
                let t = Instant::now();
                let grads = y.sum_all()?.backward()?;
                let bwd = t.elapsed().as_secs_f64();
                drop(grads);
                let slot = &mut best[usize::from(!on)];
                slot[0] = slot[0].min(fwd);
                slot[1] = slot[1].min(bwd);
            }
        }
        let flops = 2.0 * 9.0 * (ch * ch * b * s * s) as f64;
        for &on in &paths {
            let [fwd, bwd] = best[usize::from(!on)];
            println!(
                "b{b} c{ch} {s}x{s} {}: forward {:.1} ms ({:.0} GFLOP/s direct-equivalent), backward {:.1} ms",
                if on { "winograd" } else { "im2col  " },
                fwd * 1e3,
                flops / fwd / 1e9,
                bwd * 1e3
            );
        }
    }
    Ok(())
}
