//! The engine through its Rust API (as a host embeds it), against a real backend process.

use ancm_core::config::{ConfigBuilder, Dialect};
use ancm_core::{App, ClientInfo, HostInfo, RequestBody};
use http_body_util::BodyExt;

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

async fn headers_seen(dialect: Dialect, token_hex: &str) -> Vec<(String, String)> {
    let mut b = ConfigBuilder::new("settings", dialect);
    b.set("processPath", "python3").unwrap();
    b.set(
        "arguments",
        &repo()
            .join("tests/backends/env_dump.py")
            .display()
            .to_string(),
    )
    .unwrap();
    let config = b.build().unwrap();
    let app = App::new(
        config,
        HostInfo::new(repo()),
        tokio::runtime::Handle::current(),
    );
    let mut client = ClientInfo::http("10.1.2.3:4567".parse().unwrap());
    client.windows_auth_token_hex = Some(token_hex.to_owned());
    let req = http::Request::builder()
        .uri("/")
        .header("host", "t")
        .body(RequestBody::Empty)
        .unwrap();
    let resp = app.handle(req, &client).await;
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    app.shutdown().await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_lowercase(),
                h[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_windows_token_header_is_named_by_the_dialect() {
    let ancm = headers_seen(Dialect::AspNetCore, "1f2e").await;
    assert!(
        ancm.contains(&("ms-aspnetcore-winauthtoken".into(), "1f2e".into())),
        "{ancm:?}"
    );
    assert!(!ancm.iter().any(|(k, _)| k == "x-iis-windowsauthtoken"));
    assert!(
        ancm.contains(&("x-forwarded-for".into(), "10.1.2.3:4567".into())),
        "{ancm:?}"
    );

    let hph = headers_seen(Dialect::HttpPlatform, "3a4b").await;
    assert!(
        hph.contains(&("x-iis-windowsauthtoken".into(), "3a4b".into())),
        "{hph:?}"
    );
    assert!(!hph.iter().any(|(k, _)| k == "ms-aspnetcore-winauthtoken"));
}
