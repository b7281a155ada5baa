//! Where tensors live: the CPU (our kernels) or a CUDA GPU (candle's own kernels; every
//! op of this crate falls back to candle's off the CPU). One choice per process, made once
//! from `--device` (or `ROBUSTIFY_DEVICE`), read by every model that loads afterwards.

use std::sync::OnceLock;

use candle_core::Device;

static CHOSEN: OnceLock<Device> = OnceLock::new();

/// A device that cannot be had: an unknown name, a build without CUDA, no GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceError(String);

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceError {}

/// Parses a device name: `cpu`, `cuda` (the first GPU), `cuda:N`, or `auto` (the first
/// GPU when this build has CUDA and one is present, else the CPU). A GPU asked for by name
/// that this build or this machine cannot give is an error, never a silent CPU run.
pub fn parse_device(name: &str) -> Result<Device, DeviceError> {
    let name = name.trim().to_ascii_lowercase();
    let ordinal = match name.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "auto" => return Ok(auto()),
        "cuda" | "gpu" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(DeviceError(format!(
                    "unknown device {name:?}: use cpu, cuda, cuda:N or auto"
                )));
            }
        },
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(DeviceError(format!(
            "device {name:?}: this build has no CUDA support (build with `--features cuda`; \
             scripts/install-cuda.sh installs the compiler)"
        )));
    }
    Device::new_cuda(ordinal)
        .map_err(|e| DeviceError(format!("device {name:?}: no usable CUDA GPU here ({e})")))
}

fn auto() -> Device {
    if candle_core::utils::cuda_is_available()
        && let Ok(d) = Device::new_cuda(0)
    {
        return d;
    }
    Device::Cpu
}

/// Makes `device` the process's device (before any model loads); an error if one was
/// already chosen.
pub fn set_device(device: Device) -> Result<(), DeviceError> {
    CHOSEN
        .set(device)
        .map_err(|_| DeviceError("the device was already chosen".into()))
}

/// The process's device: the one set with [`set_device`], else `ROBUSTIFY_DEVICE` if set
/// and valid, else `auto`.
pub fn device() -> Device {
    CHOSEN
        .get_or_init(|| {
            std::env::var("ROBUSTIFY_DEVICE")
                .ok()
                .and_then(|name| parse_device(&name).ok())
                .unwrap_or_else(auto)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_a_missing_gpu_is_an_error_not_a_cpu_run() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device(" CPU ").unwrap().is_cpu());
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let e = parse_device(bad).unwrap_err().to_string();
            assert!(e.contains("unknown device"), "{bad}: {e}");
        }
        // No GPU on this machine (or no CUDA in this build): asked for, refused.
        if !candle_core::utils::cuda_is_available() || Device::new_cuda(0).is_err() {
            for name in ["cuda", "cuda:0", "gpu"] {
                let e = parse_device(name).unwrap_err().to_string();
                assert!(e.contains("CUDA"), "{name}: {e}");
            }
            assert!(parse_device("auto").unwrap().is_cpu());
        }
    }
}
