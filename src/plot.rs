//! Certified-accuracy curves as PNG (plotters into a buffer, encoded by `image`).

use anyhow::Context;
use plotters::prelude::*;

/// The bundled font (DejaVu Sans Mono; licence in `assets/fonts/`), so plots have text on
/// machines without system fonts.
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSansMono.ttf");

/// One curve: its legend, and certified accuracy at increasing radii.
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// `(radius, certified accuracy)` points, radius increasing.
    pub points: Vec<(f64, f64)>,
    /// Drawn wide and pale, under the others (an envelope over them).
    pub wide: bool,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
];

/// Certified accuracy is a step function of the radius: hold each value until the next
/// radius, then drop.
fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(2 * points.len());
    for (i, &(r, a)) in points.iter().enumerate() {
        if i > 0 {
            out.push((r, points[i - 1].1));
        }
        out.push((r, a));
    }
    out
}

/// How far the radius axis runs: just past the last radius where any curve is above zero
/// (a curve holds its value until the next radius), not to the last radius measured.
fn x_extent(curves: &[Curve]) -> f64 {
    let mut end = 0.0f64;
    for c in curves {
        for (i, &(r, a)) in c.points.iter().enumerate() {
            if a > 0.0 {
                // Where this step ends: the next radius, or this one if it is the last.
                end = end.max(c.points.get(i + 1).map_or(r, |p| p.0));
            }
        }
    }
    (end * 1.1).max(0.1)
}

/// A colour per curve, fixed by its label (the same run keeps its colour whatever else is
/// drawn beside it or in which order), distinct within a plot while the palette lasts.
fn colours(curves: &[Curve]) -> Vec<RGBColor> {
    let mut taken = [false; COLORS.len()];
    curves
        .iter()
        .map(|c| {
            // FNV-1a: stable across runs and platforms, unlike the std hasher's seed.
            let hash = c.label.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
            });
            let start = (hash % COLORS.len() as u64) as usize;
            let pick = (0..COLORS.len())
                .map(|k| (start + k) % COLORS.len())
                .find(|&i| !taken[i])
                .unwrap_or(start);
            taken[pick] = true;
            COLORS[pick]
        })
        .collect()
}

/// Draws `curves` (certified accuracy against radius) as an 800×500 PNG.
pub fn certified_accuracy_png(title: &str, curves: &[Curve]) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (800u32, 500u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| anyhow::anyhow!("the bundled font is invalid"))?;
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let x_max = x_extent(curves);
        let colours = colours(curves);
        let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the plot: {e}");
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..x_max * 1.02, 0.0..1.0f64)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("L2 radius (pixels in [0, 1])")
            .y_desc("certified accuracy")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (c, &color) in curves.iter().zip(&colours) {
            let style = if c.wide {
                color.mix(0.45).stroke_width(7)
            } else {
                color.stroke_width(2)
            };
            chart
                .draw_series(LineSeries::new(steps(&c.points), style))
                .map_err(|e| err(&e))?
                .label(c.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).context("plot buffer size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding the plot")?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(label: &str, points: &[(f64, f64)]) -> Curve {
        Curve {
            label: label.into(),
            points: points.to_vec(),
            wide: false,
        }
    }

    #[test]
    fn the_axis_ends_past_the_last_nonzero_step() {
        let radii: Vec<f64> = (0..=20).map(|i| i as f64 * 0.05).collect();
        let falling: Vec<(f64, f64)> = radii
            .iter()
            .map(|&r| (r, if r < 0.4 { 0.5 } else { 0.0 }))
            .collect();
        let x = x_extent(&[curve("a", &falling)]);
        assert!((x - 0.44).abs() < 1e-9, "{x}");
        assert_eq!(x_extent(&[curve("none", &[(0.0, 0.0), (1.0, 0.0)])]), 0.1);
    }

    #[test]
    fn a_curve_keeps_its_colour_whatever_is_beside_it() {
        let a = curve("photo-unet-0.25", &[]);
        let b = curve("no denoiser", &[]);
        let alone = colours(std::slice::from_ref(&a))[0];
        let first = colours(&[curve("photo-unet-0.25", &[]), curve("x", &[])])[0];
        let second = colours(&[b, a])[1];
        assert_eq!(alone, first);
        assert_eq!(alone, second);
        // Distinct within a plot.
        let many: Vec<Curve> = (0..6).map(|i| curve(&format!("run {i}"), &[])).collect();
        let cs = colours(&many);
        for i in 0..cs.len() {
            for j in 0..i {
                assert_ne!(cs[i], cs[j]);
            }
        }
    }
}
