//! The CLI and the proxy write one certificate: same image, settings and seed, the same
//! bytes (both go through `robustify-pipeline`).

use std::io::{Read, Write};

use crate::util::{Standin, certify_args, command, fixture, run, spawn_listening, temp_dir};

const VENDOR_KEY: &str = "vendor-key-pipeline";
const CLIENT_KEY: &str = "client-key-pipeline";

/// `robustify serve` on a free loopback port; killed when dropped.
struct Proxy {
    child: std::process::Child,
    addr: String,
}

impl Proxy {
    fn start(config: &std::path::Path) -> Proxy {
        let mut cmd = command(["serve", "--addr", "127.0.0.1:0", "--config"]);
        cmd.arg(config).env("GOOGLE_API_KEY", VENDOR_KEY);
        let (child, url) = spawn_listening(cmd);
        let addr = url.trim_start_matches("http://").to_owned();
        Proxy { child, addr }
    }

    /// POSTs `body` to `path_and_query`; the status and the body's bytes.
    fn post(&self, path_and_query: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = std::net::TcpStream::connect(&self.addr).expect("connect");
        write!(
            stream,
            "POST {path_and_query} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {CLIENT_KEY}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        (status, response[split + 4..].to_vec())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cli_and_proxy_write_byte_identical_certificates() {
    let standin = Standin::start(&["--model", "cifar10", "--key", VENDOR_KEY]);
    let dir = temp_dir("pipeline-identical");
    let image = fixture("cifar10/ship/0000.jpg");
    let name = image.display().to_string();
    for (mode, extra) in [("fixed", ""), ("sequential", "&target_radius=0.1")] {
        // The CLI, its answers logged apart so nothing is reused.
        let mut cli = command(certify_args(&name, "google", &standin.url, "4", "28"));
        cli.args(["--seed", "5", "--json", "--log"])
            .arg(dir.join(format!("cli-{mode}.jsonl")))
            .env("GOOGLE_API_KEY", VENDOR_KEY);
        if mode == "sequential" {
            cli.args(["--target-radius", "0.1"]);
        }
        let cli_line = run(cli).ok();

        // The proxy, in front of the same vendor, with no log of its own.
        let config = dir.join(format!("proxy-{mode}.toml"));
        std::fs::write(
            &config,
            format!(
                "store = \"memory\"\n[[providers]]\nname = \"google\"\nendpoint = \"{}\"\ndenoisers = []\n\n\
                 [[clients]]\nname = \"team\"\nkey_sha256 = \"{}\"\nbudget_usd = 5.0\n",
                standin.url,
                robustify_proxy::hash_key(CLIENT_KEY)
            ),
        )
        .unwrap();
        let proxy = Proxy::start(&config);
        let query = format!(
            "/v1/certify?provider=google&sigma=0.25&n0=4&n=28&seed=5&denoiser=none&name={}{extra}",
            name.replace('/', "%2F")
        );
        let (status, body) = proxy.post(&query, &std::fs::read(&image).unwrap());
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 200, "{body}");

        assert_eq!(
            cli_line.trim_end(),
            body,
            "{mode}: the CLI and the proxy differ"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["mode"], mode);
        assert_eq!(v["image"], name.as_str());
        assert!(v["cost_usd"].as_f64().unwrap() > 0.0, "{v}");
    }
}
