//! Helpers the proxy's tests share: a stand-in vendor and a proxy on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::sync::Arc;

use robustify_proxy::{Config, ProxyState, serve};
use robustify_smoothing::Image;
use robustify_standin::model::BrightestChannel;
use robustify_standin::server::{AppState, FaultConfig, ServerConfig};

pub const VENDOR_KEY: &str = "vendor-key-7";

pub async fn listen() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

/// An identity denoiser for σ = 0.25 (a U-Net whose last conv is zero), in a folder of this
/// test process.
pub fn identity_denoiser() -> std::path::PathBuf {
    // Written once per test process: tests run in parallel threads, and one rewriting the
    // files while another's proxy reads them made that proxy fail to load the denoiser.
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(write_identity_denoiser).clone()
}

fn write_identity_denoiser() -> std::path::PathBuf {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use robustify_denoiser::{Arch, Card, Net};
    let dir = std::env::temp_dir().join(format!("robustify-proxy-den-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let arch = Arch::parse("unet-8-x1").unwrap();
    let varmap = VarMap::new();
    Net::new(
        &arch,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    for name in Net::zero_init(&arch) {
        let v = varmap.data().lock().unwrap()[&name].clone();
        v.set(&v.as_tensor().zeros_like().unwrap()).unwrap();
    }
    varmap.save(dir.join("model.safetensors")).unwrap();
    Card {
        name: "identity-test".into(),
        arch,
        sigma: 0.25,
        data: "photo".into(),
        psnr_floor: None,
        extra: Default::default(),
    }
    .write(&dir.join("card.json"))
    .unwrap();
    dir
}

pub fn png() -> Vec<u8> {
    let mut data = vec![0.2f32; 64];
    data.extend(vec![0.7f32; 64]);
    data.extend(vec![0.3f32; 64]);
    Image::new(8, 8, data).unwrap().to_png().unwrap()
}

/// A stand-in playing Google on loopback with `faults`; stops when the sender is dropped.
pub async fn vendor(
    faults: FaultConfig,
) -> (Arc<AppState>, String, tokio::sync::oneshot::Sender<()>) {
    let vendor = AppState::new(
        Arc::new(BrightestChannel),
        &ServerConfig {
            keys: robustify_standin::server::Keys {
                key: Some(VENDOR_KEY.into()),
                aws: None,
            },
            faults,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let (l, url) = listen().await;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(robustify_standin::server::serve(l, vendor.clone(), async {
        let _ = rx.await;
    }));
    (vendor, url, stop)
}

/// The proxy for `config` (TOML) on loopback; stops when the sender is dropped.
pub async fn proxy(config: &str) -> (Arc<ProxyState>, String, tokio::sync::oneshot::Sender<()>) {
    let config = Config::parse(config, Path::new("test.toml")).unwrap();
    let state = ProxyState::new(&config, |var| {
        (var == "GOOGLE_API_KEY").then(|| VENDOR_KEY.to_string())
    })
    .unwrap();
    let (l, url) = listen().await;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(l, state.clone(), async {
        let _ = rx.await;
    }));
    let _ = rustls::crypto::ring::default_provider().install_default();
    (state, url, stop)
}

/// `GET /v1/spend` with `key` (a client's or the operator's): the JSON, after a 200.
pub async fn spend(url: &str, key: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/spend"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}
