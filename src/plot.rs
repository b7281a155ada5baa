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

/// Draws `curves` (certified accuracy against radius) as an 800×500 PNG.
pub fn certified_accuracy_png(title: &str, curves: &[Curve]) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (800u32, 500u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| anyhow::anyhow!("the bundled font is invalid"))?;
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let x_max = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0))
            .fold(0.0f64, f64::max)
            .max(0.1);
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
        for (i, c) in curves.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(steps(&c.points), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(c.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
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
