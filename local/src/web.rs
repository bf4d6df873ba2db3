//! The local stack's web page, served from its own origin as a CloudFront distribution would
//! serve it in AWS: `web/index.html`, `web/app.js` and `web/style.css`, embedded in the binary
//! (nothing is read at run time, nothing is built), and `/config.json`, which tells the page
//! where the HTTP API, the WebSocket API and the streamer are, so it works on any ports, and
//! which region served it among every region (`--regions N`), so it can follow a failover.
//!
//! The page's origin differs from the APIs', so its calls are cross-origin: the HTTP API
//! emulator and the streamer allow [`origins`] (CORS), as the deployed APIs allow the
//! frontend's.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::region_endpoints::RegionEndpoints;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");

/// What `/config.json` tells the page: where each API is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebConfig {
    /// The HTTP API's base URL (`/v1/...`).
    pub http_api: String,
    /// The dev-only token route of the HTTP API (`POST {"sub": ...}`).
    pub token_url: String,
    /// The WebSocket API (tickets name it; the page only shows it).
    pub ws_api: String,
    /// The streamer's base URL (tickets name it; the page only shows it).
    pub sse: String,
    /// The dev-only faults route of the HTTP API (`GET` lists the backend servers, `POST
    /// {"target", "fault"}` kills or restores one); the page shows its faults panel only when
    /// this is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults_url: Option<String>,
    /// The region that serves the page (and whose APIs the keys above name).
    pub region: String,
    /// Every region, this one included: where the page fails over to when its region does
    /// not answer (`docs/multi-region.md`, "What a client does when its region fails").
    pub regions: Vec<RegionEndpoints>,
}

/// The origins a browser sends for a page served at `addr`: the address itself and, on the
/// loopback address, `localhost` too, since a person may type either.
pub fn origins(addr: SocketAddr) -> Vec<String> {
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    origins
}

/// The page's routes.
pub fn router(config: &WebConfig) -> Router {
    let config_json =
        serde_json::to_string_pretty(config).unwrap_or_else(|_| unreachable!("strings serialise"));
    // Where the page may connect: the APIs' origins, every region's, nothing else (as a
    // CloudFront response headers policy would say).
    let mut connect_src = Vec::new();
    let regions = config
        .regions
        .iter()
        .map(|r| [&r.http_api, &r.sse, &r.ws_api]);
    for url in std::iter::once([&config.http_api, &config.sse, &config.ws_api])
        .chain(regions)
        .flatten()
    {
        let origin = origin_of(url);
        if !connect_src.contains(&origin) {
            connect_src.push(origin);
        }
    }
    let connect_src = connect_src.join(" ");
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {connect_src}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    let page = move |content_type: &'static str, body: &'static str| {
        let policy = policy.clone();
        move || {
            let policy = policy.clone();
            async move { file(content_type, body, Some(&policy)) }
        }
    };
    Router::new()
        .route("/", get(page("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/index.html",
            get(page("text/html; charset=utf-8", INDEX_HTML)),
        )
        .route(
            "/app.js",
            get(page("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/style.css",
            get(page("text/css; charset=utf-8", STYLE_CSS)),
        )
        .route(
            "/config.json",
            get(move || {
                let body = config_json.clone();
                async move { file("application/json", body, None) }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}

/// Serves the page on `listener` until `shutdown` resolves.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    config: &WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `scheme://host:port` of a URL (the part a CSP source names).
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..]
        .find('/')
        .map_or(url, |end| &url[..after_scheme + end])
}

fn file(
    content_type: &'static str,
    body: impl Into<axum::body::Body>,
    policy: Option<&str>,
) -> Response {
    let mut response = body.into().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Embedded files change only with the binary; a reload must still see a rebuilt one.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(policy) = policy.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    fn region(name: &str, port: u16) -> RegionEndpoints {
        RegionEndpoints {
            name: name.into(),
            http_api: format!("http://127.0.0.1:{port}"),
            ws_api: format!("ws://127.0.0.1:{}/local", port + 1),
            sse: format!("http://127.0.0.1:{}", port + 10),
            web: format!("http://127.0.0.1:{}", port - 10),
            token_url: format!("http://127.0.0.1:{port}/_local/tokens"),
        }
    }

    fn config() -> WebConfig {
        WebConfig {
            http_api: "http://127.0.0.1:8080".into(),
            token_url: "http://127.0.0.1:8080/_local/tokens".into(),
            faults_url: Some("http://127.0.0.1:8080/_local/faults".into()),
            ws_api: "ws://127.0.0.1:8081/local".into(),
            sse: "http://127.0.0.1:8090".into(),
            region: "local-a".into(),
            regions: vec![region("local-a", 8080), region("local-b", 8180)],
        }
    }

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        get_from(&config(), path).await
    }

    async fn get_from(
        config: &WebConfig,
        path: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router(config)
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_page_its_module_and_its_styles_are_served_with_their_types() {
        let (status, headers, body) = get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(
            body.contains(r#"<script type="module" src="app.js">"#),
            "{body}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains(
                "connect-src 'self' http://127.0.0.1:8080 http://127.0.0.1:8090 \
                 ws://127.0.0.1:8081 http://127.0.0.1:8180 http://127.0.0.1:8190 \
                 ws://127.0.0.1:8181;"
            ),
            "{policy}"
        );
        assert_eq!(
            get("/app.js").await.1["content-type"],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            get("/style.css").await.1["content-type"],
            "text/css; charset=utf-8"
        );
        assert_eq!(get("/nope").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_config_names_every_endpoint_the_page_uses() {
        let (status, _, body) = get("/config.json").await;

        assert_eq!(status, StatusCode::OK);
        let config: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(config["http_api"], "http://127.0.0.1:8080");
        assert_eq!(config["token_url"], "http://127.0.0.1:8080/_local/tokens");
        assert_eq!(config["ws_api"], "ws://127.0.0.1:8081/local");
        assert_eq!(config["sse"], "http://127.0.0.1:8090");
        assert_eq!(config["faults_url"], "http://127.0.0.1:8080/_local/faults");
        assert_eq!(config["region"], "local-a");
        assert_eq!(config["regions"][1]["name"], "local-b");
        assert_eq!(config["regions"][1]["http_api"], "http://127.0.0.1:8180");
        assert_eq!(
            config["regions"][1]["token_url"],
            "http://127.0.0.1:8180/_local/tokens"
        );
    }

    #[tokio::test]
    async fn a_single_region_page_connects_to_its_own_apis_only() {
        let single = WebConfig {
            regions: vec![region("local", 8080)],
            region: "local".into(),
            ..config()
        };

        let (_, headers, _) = get_from(&single, "/").await;

        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains(
                "connect-src 'self' http://127.0.0.1:8080 http://127.0.0.1:8090 \
                 ws://127.0.0.1:8081;"
            ),
            "{policy}"
        );
    }

    #[test]
    fn loopback_pages_are_allowed_under_both_names() {
        assert_eq!(
            origins(SocketAddr::from(([127, 0, 0, 1], 8070))),
            ["http://127.0.0.1:8070", "http://localhost:8070"]
        );
        assert_eq!(
            origin_of("ws://127.0.0.1:8081/local"),
            "ws://127.0.0.1:8081"
        );
        assert_eq!(origin_of("http://127.0.0.1:8090"), "http://127.0.0.1:8090");
    }
}
