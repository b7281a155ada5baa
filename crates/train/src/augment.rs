//! Seeded data augmentation on 8-bit CHW images.

use rand::Rng;

/// A random `out_h × out_w` crop of the image zero-padded by `pad` on every side, flipped
/// horizontally with probability 1/2. `image` is CHW with 3 channels.
pub fn random_crop_flip(
    image: &[u8],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
    pad: usize,
    rng: &mut impl Rng,
) -> Vec<u8> {
    let max_y = h + 2 * pad - out_h;
    let max_x = w + 2 * pad - out_w;
    let oy = rng.random_range(0..=max_y) as isize - pad as isize;
    let ox = rng.random_range(0..=max_x) as isize - pad as isize;
    let flip = rng.random_bool(0.5);
    let mut out = vec![0u8; 3 * out_h * out_w];
    for c in 0..3 {
        for y in 0..out_h {
            let sy = y as isize + oy;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            for x in 0..out_w {
                let xx = if flip { out_w - 1 - x } else { x };
                let sx = xx as isize + ox;
                if sx < 0 || sx >= w as isize {
                    continue;
                }
                out[(c * out_h + y) * out_w + x] = image[(c * h + sy as usize) * w + sx as usize];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crops_stay_inside_the_padded_image_and_flip() {
        // A 1-pixel-wide gradient: value = x.
        let (h, w) = (2, 5);
        let img: Vec<u8> = (0..3)
            .flat_map(|_| (0..h).flat_map(|_| 0..w as u8))
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut flips = 0;
        for _ in 0..200 {
            let out = random_crop_flip(&img, h, w, h, w, 0, &mut rng);
            let row: Vec<u8> = out[..w].to_vec();
            if row == vec![4, 3, 2, 1, 0] {
                flips += 1;
            } else {
                assert_eq!(row, vec![0, 1, 2, 3, 4]);
            }
        }
        assert!((70..=130).contains(&flips), "{flips}");
        // With padding, some pixels are zero.
        let out = random_crop_flip(&[9u8; 3 * 4 * 4], 4, 4, 4, 4, 4, &mut rng);
        assert!(out.iter().all(|v| *v == 0 || *v == 9));
    }
}
