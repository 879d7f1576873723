//! Health probes: a GET of `healthCheckPath` on a backend, with the pairing token (as every
//! request the engine sends carries it), answered 2xx within a time limit.

use std::time::Duration;

use super::backend::Backend;

/// Probes `backend` once: `Ok` if a GET of `path` answers 2xx within `limit`, else the reason.
pub async fn probe(
    backend: &Backend,
    path: &str,
    limit: Duration,
    client: &reqwest::Client,
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{}{path}", backend.port);
    let sent = client
        .get(&url)
        .header("MS-ASPNETCORE-TOKEN", backend.token.expose())
        .timeout(limit.max(Duration::from_millis(10)))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("GET {path} answered {}", r.status())),
        Err(e) if e.is_timeout() => Err(format!(
            "GET {path} got no answer within {} ms",
            limit.as_millis()
        )),
        Err(e) => Err(format!("GET {path} failed: {e}")),
    }
}
