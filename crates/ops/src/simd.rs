//! Which vector instructions the hot loops use, chosen at run time.
//!
//! The crate is compiled for the baseline x86-64 (SSE2), so that the binary runs on any
//! x86-64 CPU; left at that, the compiler vectorises the transform and elementwise loops
//! four floats wide. [`run`] calls a closure through a function compiled with AVX-512
//! (or AVX2 + FMA) enabled when the CPU has it, so that whatever the closure inlines — the
//! loops are `#[inline(always)]` for this reason — is vectorised 16 (or 8) floats wide.
//! The compiler keeps the order of every floating-point operation (no fast-math), so the
//! three levels give the same bits; the tests compare them.
//!
//! `ROBUSTIFY_SIMD=avx2` or `=baseline` caps the level for a whole process (to compare,
//! or to try the fallback on an AVX-512 machine); [`set_simd`] does so from code.

use std::sync::atomic::{AtomicU8, Ordering};

/// The widest instructions the hot loops may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    /// SSE2 only: what every x86-64 CPU (and any other target) runs.
    Baseline = 1,
    /// AVX2 and FMA (x86-64-v3).
    Avx2 = 2,
    /// AVX-512 F/VL/BW/DQ (x86-64-v4).
    Avx512 = 3,
}

/// 0 until the first call of [`simd`] detects the CPU.
static LEVEL: AtomicU8 = AtomicU8::new(0);

impl Simd {
    fn from_u8(v: u8) -> Simd {
        match v {
            3 => Simd::Avx512,
            2 => Simd::Avx2,
            _ => Simd::Baseline,
        }
    }

    /// The widest level this CPU supports.
    pub fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    }

    /// `ROBUSTIFY_SIMD`'s cap (`avx512`, `avx2`, `baseline`), if set and known.
    fn from_env() -> Option<Simd> {
        match std::env::var("ROBUSTIFY_SIMD")
            .ok()?
            .to_ascii_lowercase()
            .as_str()
        {
            "avx512" => Some(Simd::Avx512),
            "avx2" => Some(Simd::Avx2),
            "baseline" | "sse2" => Some(Simd::Baseline),
            _ => None,
        }
    }
}

/// The level in use: the CPU's, capped by `ROBUSTIFY_SIMD` or [`set_simd`].
pub fn simd() -> Simd {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let detected = Simd::detect();
            let level = Simd::from_env().map_or(detected, |cap| cap.min(detected));
            LEVEL.store(level as u8, Ordering::Relaxed);
            level
        }
        v => Simd::from_u8(v),
    }
}

/// Uses at most `cap` from now on (never more than the CPU has); returns the level now in
/// use. For benchmarks and tests of the fallback paths.
pub fn set_simd(cap: Simd) -> Simd {
    let level = cap.min(Simd::detect());
    LEVEL.store(level as u8, Ordering::Relaxed);
    level
}

/// Runs `f` compiled for the level in use: what `f` inlines is vectorised that wide.
///
/// The crate's only `unsafe`: calling a function compiled for instructions the CPU may
/// lack, after checking that it has them.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> R {
    match simd() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `simd()` never reports a level the CPU lacks (`detect` checked it).
        Simd::Avx512 => unsafe { avx512(f) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Simd::Avx2 => unsafe { avx2(f) },
        _ => f(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
