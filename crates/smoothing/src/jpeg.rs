//! Whether a JPEG is whole: every segment from SOI to EOI, every baseline scan holding all
//! its MCUs, every coefficient of a progressive image refined to its last bit.
//!
//! Lenient decoders (ours included) fill what is missing with grey: the first 700 bytes
//! of a photo, or its first half with the end marker put back, decode "successfully" and
//! would be certified, and paid for, as a different picture. The segment walk catches a
//! file cut anywhere; the Huffman walk of each baseline scan (symbols and their extra bits
//! only, no IDCT) catches a scan that ends before its last MCU; the scan headers of a
//! progressive image must cover every coefficient of every component down to bit 0.
//!
//! Not checked: arithmetic-coded and lossless JPEGs (rare; the decoder refuses most), and
//! a progressive file cut inside its last refinement scan, which changes only the least
//! significant bit of some coefficients.

use crate::{Error, Result};

fn cut<T>(what: impl std::fmt::Display) -> Result<T> {
    Err(Error::Decode(format!("truncated or corrupt JPEG: {what}")))
}

/// One Huffman table, canonical: codes of each length in order.
#[derive(Clone, Default)]
struct Huffman {
    /// Codes of length 1..=16.
    counts: [u16; 16],
    symbols: Vec<u8>,
}

impl Huffman {
    fn parse(counts: &[u8], symbols: &[u8]) -> Huffman {
        let mut c = [0u16; 16];
        for (i, &n) in counts.iter().enumerate().take(16) {
            c[i] = u16::from(n);
        }
        Huffman {
            counts: c,
            symbols: symbols.to_vec(),
        }
    }

    /// Reads one symbol, bit by bit (a valid stream is never read past its last code).
    fn decode(&self, bits: &mut Bits<'_>) -> Result<u8> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0usize);
        for &count in &self.counts {
            code |= i32::from(bits.bit()?);
            let count = i32::from(count);
            if code - first < count {
                let at = index + (code - first) as usize;
                return match self.symbols.get(at) {
                    Some(&s) => Ok(s),
                    None => cut("a Huffman code outside its table"),
                };
            }
            index += count as usize;
            first = (first + count) << 1;
            code <<= 1;
        }
        cut("an invalid Huffman code")
    }
}

/// Entropy-coded bits, unstuffing 0xFF00; a marker ends them.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    byte: u8,
    left: u8,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits {
            data,
            pos,
            byte: 0,
            left: 0,
        }
    }

    fn bit(&mut self) -> Result<u8> {
        if self.left == 0 {
            let Some(&b) = self.data.get(self.pos) else {
                return cut(format!("image data cut at byte {}", self.data.len()));
            };
            if b == 0xFF {
                match self.data.get(self.pos + 1) {
                    Some(0x00) => self.pos += 1,
                    Some(&m) => {
                        return cut(format!(
                            "a scan ends (marker 0xFF{m:02X} at byte {}) before its last block",
                            self.pos
                        ));
                    }
                    None => return cut(format!("image data cut at byte {}", self.data.len())),
                }
            }
            self.pos += 1;
            self.byte = b;
            self.left = 8;
        }
        self.left -= 1;
        Ok((self.byte >> self.left) & 1)
    }

    fn skip(&mut self, n: u8) -> Result<()> {
        for _ in 0..n {
            self.bit()?;
        }
        Ok(())
    }

    /// At a restart marker: drops the padding bits and the marker `RSTn`.
    fn restart(&mut self) -> Result<()> {
        self.left = 0;
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (Some(0xFF), Some(0xD0..=0xD7)) => {
                self.pos += 2;
                Ok(())
            }
            _ => cut(format!("a restart marker is missing at byte {}", self.pos)),
        }
    }
}

#[derive(Clone, Copy)]
struct Component {
    id: u8,
    h: u8,
    v: u8,
}

struct Frame {
    progressive: bool,
    width: u32,
    height: u32,
    components: Vec<Component>,
}

/// Checks `bytes` (which start with SOI) as the module page says.
pub(crate) fn check(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return cut("no start-of-image marker");
    }
    let mut dc: [Huffman; 4] = Default::default();
    let mut ac: [Huffman; 4] = Default::default();
    let mut frame: Option<Frame> = None;
    let mut restart_interval = 0u32;
    // Progressive: per component, the lowest Al reached by each coefficient.
    let mut refined: Vec<[u8; 64]> = Vec::new();
    let mut i = 2;
    loop {
        while i < bytes.len() && bytes[i] == 0xFF && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(i), bytes.get(i + 1)) else {
            return cut(format!("no end-of-image marker ({} bytes)", bytes.len()));
        };
        i += 2;
        match marker {
            0xD9 => break,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let (Some(&hi), Some(&lo)) = (bytes.get(i), bytes.get(i + 1)) else {
            return cut(format!("segment 0x{marker:02X} cut at byte {i}"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len < 2 || i + len > bytes.len() {
            return cut(format!("segment 0x{marker:02X} cut at byte {i}"));
        }
        let body = &bytes[i + 2..i + len];
        i += len;
        match marker {
            0xC4 => read_huffman(body, &mut dc, &mut ac)?,
            0xDD if body.len() >= 2 => {
                restart_interval = u32::from(u16::from_be_bytes([body[0], body[1]]));
            }
            0xC0..=0xC2 => {
                let f = read_frame(body, marker == 0xC2)?;
                refined = vec![[u8::MAX; 64]; f.components.len()];
                frame = Some(f);
            }
            0xDA => {
                let Some(f) = &frame else {
                    return cut("a scan before its frame header");
                };
                let scan = read_scan(body, f)?;
                if f.progressive {
                    for &(c, _, _) in &scan.components {
                        for k in scan.ss..=scan.se.min(63) {
                            let r = &mut refined[c][usize::from(k)];
                            *r = (*r).min(scan.al);
                        }
                    }
                    i = skip_entropy(bytes, i)?;
                } else {
                    let mut bits = Bits::new(bytes, i);
                    walk_baseline(&mut bits, f, &scan, &dc, &ac, restart_interval)?;
                    i = skip_entropy(bytes, bits.pos)?;
                }
            }
            _ => {}
        }
    }
    if let Some(f) = &frame
        && f.progressive
    {
        for (c, coefficients) in refined.iter().enumerate() {
            if let Some(k) = coefficients.iter().position(|&al| al != 0) {
                return cut(format!(
                    "a progressive image whose scans stop short (component {} coefficient {k} \
                     is never refined to its last bit)",
                    f.components[c].id
                ));
            }
        }
    }
    Ok(())
}

/// Skips entropy-coded data from `i` to the next marker that is not stuffing or RSTn.
fn skip_entropy(bytes: &[u8], mut i: usize) -> Result<usize> {
    loop {
        match (bytes.get(i), bytes.get(i + 1)) {
            (Some(&0xFF), Some(&(0x00 | 0xD0..=0xD7))) => i += 2,
            (Some(&0xFF), Some(_)) => return Ok(i),
            (Some(_), _) => i += 1,
            (None, _) => return cut(format!("image data cut at byte {}", bytes.len())),
        }
    }
}

fn read_huffman(mut body: &[u8], dc: &mut [Huffman; 4], ac: &mut [Huffman; 4]) -> Result<()> {
    while !body.is_empty() {
        if body.len() < 17 {
            return cut("a Huffman table cut short");
        }
        let (class, id) = (body[0] >> 4, usize::from(body[0] & 15));
        let total: usize = body[1..17].iter().map(|&n| usize::from(n)).sum();
        if id > 3 || body.len() < 17 + total {
            return cut("a Huffman table cut short or misnumbered");
        }
        let table = Huffman::parse(&body[1..17], &body[17..17 + total]);
        match class {
            0 => dc[id] = table,
            1 => ac[id] = table,
            _ => return cut("a Huffman table of unknown class"),
        }
        body = &body[17 + total..];
    }
    Ok(())
}

fn read_frame(body: &[u8], progressive: bool) -> Result<Frame> {
    if body.len() < 6 {
        return cut("a frame header cut short");
    }
    let height = u32::from(u16::from_be_bytes([body[1], body[2]]));
    let width = u32::from(u16::from_be_bytes([body[3], body[4]]));
    let n = usize::from(body[5]);
    if n == 0 || n > 4 || body.len() < 6 + 3 * n || width == 0 || height == 0 {
        return cut("a frame header with no components or no size");
    }
    let components = (0..n)
        .map(|c| {
            let b = &body[6 + 3 * c..9 + 3 * c];
            Component {
                id: b[0],
                h: (b[1] >> 4).clamp(1, 4),
                v: (b[1] & 15).clamp(1, 4),
            }
        })
        .collect();
    Ok(Frame {
        progressive,
        width,
        height,
        components,
    })
}

struct Scan {
    /// (frame component index, DC table, AC table).
    components: Vec<(usize, usize, usize)>,
    ss: u8,
    se: u8,
    al: u8,
}

fn read_scan(body: &[u8], frame: &Frame) -> Result<Scan> {
    let n = usize::from(*body.first().unwrap_or(&0));
    if n == 0 || body.len() < 1 + 2 * n + 3 {
        return cut("a scan header cut short");
    }
    let mut components = Vec::with_capacity(n);
    for s in 0..n {
        let (id, tables) = (body[1 + 2 * s], body[2 + 2 * s]);
        let Some(c) = frame.components.iter().position(|c| c.id == id) else {
            return cut(format!(
                "a scan names component {id}, which the frame lacks"
            ));
        };
        components.push((
            c,
            usize::from(tables >> 4) & 3,
            usize::from(tables & 15) & 3,
        ));
    }
    let tail = &body[1 + 2 * n..];
    Ok(Scan {
        components,
        ss: tail[0],
        se: tail[1],
        al: tail[2] & 15,
    })
}

/// Decodes every block of a baseline scan's MCUs (symbols and extra bits, no IDCT).
fn walk_baseline(
    bits: &mut Bits<'_>,
    frame: &Frame,
    scan: &Scan,
    dc: &[Huffman; 4],
    ac: &[Huffman; 4],
    restart_interval: u32,
) -> Result<()> {
    let h_max = u32::from(frame.components.iter().map(|c| c.h).max().unwrap_or(1));
    let v_max = u32::from(frame.components.iter().map(|c| c.v).max().unwrap_or(1));
    // (MCUs, blocks per MCU per scan component)
    let (mcus, blocks): (u64, Vec<u32>) = if scan.components.len() == 1 {
        // One component: its own 8×8 blocks, in raster order.
        let c = frame.components[scan.components[0].0];
        let w = (frame.width * u32::from(c.h)).div_ceil(h_max).div_ceil(8);
        let h = (frame.height * u32::from(c.v)).div_ceil(v_max).div_ceil(8);
        (u64::from(w) * u64::from(h), vec![1])
    } else {
        let w = frame.width.div_ceil(8 * h_max);
        let h = frame.height.div_ceil(8 * v_max);
        let per: Vec<u32> = scan
            .components
            .iter()
            .map(|&(c, _, _)| {
                let c = frame.components[c];
                u32::from(c.h) * u32::from(c.v)
            })
            .collect();
        (u64::from(w) * u64::from(h), per)
    };
    for mcu in 0..mcus {
        if restart_interval > 0 && mcu > 0 && mcu % u64::from(restart_interval) == 0 {
            bits.restart()?;
        }
        for (&(_, d, a), &n) in scan.components.iter().zip(&blocks) {
            for _ in 0..n {
                let s = dc[d].decode(bits)?;
                bits.skip(s & 15)?;
                let mut k = 1;
                while k < 64 {
                    let rs = ac[a].decode(bits)?;
                    let (r, s) = (rs >> 4, rs & 15);
                    if s == 0 {
                        if r != 15 {
                            break;
                        }
                        k += 16;
                    } else {
                        k += usize::from(r);
                        bits.skip(s)?;
                        k += 1;
                    }
                }
            }
        }
    }
    Ok(())
}
