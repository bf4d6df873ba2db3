//! API Gateway HTTP API's `CorsConfiguration`, emulated, so that a page served from another
//! origin (CloudFront in AWS, the `web` endpoint locally) calls the API as it would in AWS.
//!
//! What API Gateway documents, and so what this does when at least one origin is allowed:
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered by
//!   the gateway itself, `204`, on any path that has no `OPTIONS` route of its own: no
//!   authorizer, no integration. An allowed origin gets the configured methods, headers and
//!   max age; any other origin gets no CORS headers, so the browser refuses.
//! - Every other response to a request whose `Origin` is allowed — the integration's and the
//!   gateway's own (401, 403, 404, ...) — gets `Access-Control-Allow-Origin` and the exposed
//!   headers. CORS headers the integration returned are dropped: the configuration wins.
//! - Origins match exactly (ASCII case aside), or by the wildcards API Gateway accepts: `*`,
//!   `https://*` and `http://*`.
//!
//! The requested method and headers are not checked against the lists: the lists are sent and
//! the browser decides, which is what a browser sees from API Gateway. `AllowCredentials` is
//! not emulated (the template does not set it). tower-http's `CorsLayer` is not used: it takes
//! every `OPTIONS` for a preflight, answers `200`, adds `Vary` and keeps the integration's CORS
//! headers, none of which API Gateway does.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use axum::middleware::Next;

use super::RouteTable;

/// The API's CORS configuration, as `CorsConfiguration` of `AWS::Serverless::HttpApi` declares
/// it; with no allowed origin, CORS is off (the template's `CorsAllowOrigins` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfiguration {
    /// `AllowOrigins`: origins (`https://app.example.com`), `*`, `https://*` or `http://*`.
    pub allow_origins: Vec<String>,
    /// `AllowMethods`.
    pub allow_methods: Vec<String>,
    /// `AllowHeaders` (lower case, as the template spells them).
    pub allow_headers: Vec<String>,
    /// `ExposeHeaders`: response headers a page's script may read.
    pub expose_headers: Vec<String>,
    /// `MaxAge`: how long a browser may cache a preflight's answer.
    pub max_age: Option<Duration>,
}

impl Default for CorsConfiguration {
    /// What `infra/template.yaml` declares, with no origin allowed (a test keeps them equal).
    fn default() -> Self {
        let words = |list: &[&str]| list.iter().map(|&w| w.to_owned()).collect();
        Self {
            allow_origins: Vec::new(),
            allow_methods: words(&["GET", "POST", "DELETE"]),
            allow_headers: words(&[
                "authorization",
                "content-type",
                "idempotency-key",
                "traceparent",
                "tracestate",
            ]),
            expose_headers: words(&[
                "location",
                "x-session-home",
                "x-replica-lag-ms",
                "idempotency-region",
            ]),
            max_age: Some(Duration::from_secs(600)),
        }
    }
}

impl CorsConfiguration {
    /// Whether CORS is configured at all.
    pub fn enabled(&self) -> bool {
        !self.allow_origins.is_empty()
    }

    /// Whether `origin` (an `Origin` header's value) may call the API.
    pub fn allows(&self, origin: &str) -> bool {
        self.allow_origins
            .iter()
            .any(|allowed| match allowed.as_str() {
                "*" => true,
                "https://*" | "http://*" => {
                    let scheme = allowed.trim_end_matches('*');
                    origin
                        .get(..scheme.len())
                        .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
                }
                _ => allowed.eq_ignore_ascii_case(origin),
            })
    }

    /// The `Access-Control-Allow-Origin` value for an allowed `origin`.
    fn allow_origin_value(&self, origin: &str) -> Option<HeaderValue> {
        if self.allow_origins.iter().any(|o| o == "*") {
            Some(HeaderValue::from_static("*"))
        } else {
            HeaderValue::from_str(origin).ok()
        }
    }

    /// The gateway's answer to a preflight from `origin`.
    fn preflight(&self, origin: &str) -> Response<Body> {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        if !self.allows(origin) {
            return response;
        }
        let headers = response.headers_mut();
        if let Some(value) = self.allow_origin_value(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        put_list(
            headers,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            &self.allow_methods,
        );
        put_list(
            headers,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            &self.allow_headers,
        );
        if let Some(max_age) = self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.as_secs().into());
        }
        response
    }

    /// Replaces whatever CORS headers `response` has with the configuration's for `origin`.
    fn decorate(&self, origin: Option<&str>, response: &mut Response<Body>) {
        let headers = response.headers_mut();
        let integration_cors: Vec<_> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in integration_cors {
            headers.remove(name);
        }
        let Some(origin) = origin.filter(|o| self.allows(o)) else {
            return;
        };
        if let Some(value) = self.allow_origin_value(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        put_list(
            headers,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            &self.expose_headers,
        );
    }
}

fn put_list(headers: &mut HeaderMap, name: header::HeaderName, list: &[String]) {
    if list.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&list.join(",")) {
        headers.insert(name, value);
    }
}

/// What the middleware needs: the configuration, and the routes (an `OPTIONS` route of the API
/// takes its own preflights, as in API Gateway).
#[derive(Debug, Clone)]
pub(super) struct Cors {
    pub(super) config: Arc<CorsConfiguration>,
    pub(super) routes: Arc<RouteTable>,
}

/// The middleware in front of the whole API (its local-only routes included).
pub(super) async fn apply(
    State(cors): State<Cors>,
    request: Request,
    next: Next,
) -> Response<Body> {
    if !cors.config.enabled() {
        return next.run(request).await;
    }
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if let (true, Some(origin)) = (is_preflight, origin.as_deref())
        && cors
            .routes
            .find(&Method::OPTIONS, request.uri().path())
            .is_none()
    {
        let mut response = cors.config.preflight(origin);
        if let Ok(id) = HeaderValue::from_str(&ulid::Ulid::new().to_string()) {
            response.headers_mut().insert("apigw-requestid", id);
        }
        return response;
    }
    let mut response = next.run(request).await;
    cors.config.decorate(origin.as_deref(), &mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configuration(origins: &[&str]) -> CorsConfiguration {
        CorsConfiguration {
            allow_origins: origins.iter().map(|&o| o.to_owned()).collect(),
            ..CorsConfiguration::default()
        }
    }

    #[test]
    fn origins_match_exactly_or_by_the_wildcards_api_gateway_accepts() {
        let exact = configuration(&["http://127.0.0.1:8070"]);
        assert!(exact.allows("http://127.0.0.1:8070"));
        assert!(exact.allows("HTTP://127.0.0.1:8070"));
        assert!(!exact.allows("http://127.0.0.1:8071"));
        assert!(!exact.allows("http://127.0.0.1:8070.evil.example"));
        assert!(!exact.allows("null"));

        let https = configuration(&["https://*"]);
        assert!(https.allows("https://app.example.com"));
        assert!(!https.allows("http://app.example.com"));
        assert!(configuration(&["*"]).allows("null"));
        assert!(!CorsConfiguration::default().enabled());
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_gets_the_configured_lists() {
        let cors = configuration(&["http://127.0.0.1:8070"]);

        let allowed = cors.preflight("http://127.0.0.1:8070");
        let refused = cors.preflight("https://elsewhere.example");

        assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
        let h = allowed.headers();
        assert_eq!(h["access-control-allow-origin"], "http://127.0.0.1:8070");
        assert_eq!(h["access-control-allow-methods"], "GET,POST,DELETE");
        assert_eq!(
            h["access-control-allow-headers"],
            "authorization,content-type,idempotency-key,traceparent,tracestate"
        );
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(refused.status(), StatusCode::NO_CONTENT);
        assert!(refused.headers().is_empty(), "{:?}", refused.headers());
    }

    #[test]
    fn the_configuration_replaces_the_integrations_cors_headers() {
        let cors = configuration(&["*"]);
        let mut response = Response::new(Body::empty());
        response.headers_mut().insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );

        cors.decorate(Some("https://a.example"), &mut response);

        let h = response.headers();
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(
            h["access-control-expose-headers"],
            "location,x-session-home,x-replica-lag-ms,idempotency-region"
        );
        assert!(h.get("access-control-allow-credentials").is_none());
    }

    /// The gateway with counting stand-ins for the authorizer and the function behind it.
    mod through_the_gateway {
        use std::net::SocketAddr;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use axum::Router;
        use axum::extract::ConnectInfo;
        use axum::routing::get;
        use session_core::auth::{AuthError, Principal, TokenValidator};
        use tower::ServiceExt as _;

        use super::*;
        use crate::http_api::{HttpApi, HttpApiSettings};

        const PAGE: &str = "http://127.0.0.1:8070";

        #[derive(Debug, Default)]
        struct Refuser(AtomicUsize);

        #[async_trait::async_trait]
        impl TokenValidator for Refuser {
            async fn validate(&self, _: &str) -> Result<Principal, AuthError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Err(AuthError::Rejected { reason: "test" })
            }
        }

        struct Gateway {
            router: Router,
            authorizer: Arc<Refuser>,
            invoked: Arc<AtomicUsize>,
        }

        fn gateway(origins: &[&str]) -> Gateway {
            let routes = RouteTable::from_openapi(&serde_json::json!({"paths": {
                "/v1/open": {"get": {}},
                "/v1/secret": {"get": {"security": [{"bearer": []}]}},
            }}))
            .unwrap();
            let invoked = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&invoked);
            let function = move || {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    // A function's own CORS header, which API Gateway ignores.
                    (
                        [("access-control-allow-origin", "https://other.example")],
                        "ok",
                    )
                }
            };
            let integration = Router::new()
                .route("/v1/open", get(function.clone()))
                .route("/v1/secret", get(function));
            let authorizer = Arc::new(Refuser::default());
            let settings = HttpApiSettings {
                cors: configuration(origins),
                ..HttpApiSettings::default()
            };
            let api = HttpApi::new(routes, integration, authorizer.clone(), settings);
            Gateway {
                router: api.into_router(Router::new()),
                authorizer,
                invoked,
            }
        }

        async fn send(
            gateway: &Gateway,
            method: Method,
            path: &str,
            headers: &[(&str, &str)],
        ) -> Response<Body> {
            let mut request = Request::builder().method(method).uri(path);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let mut request = request.body(Body::empty()).unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50000))));
            gateway.router.clone().oneshot(request).await.unwrap()
        }

        fn preflight_headers(origin: &str) -> [(&str, &str); 4] {
            [
                ("origin", origin),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
                ("authorization", "Bearer not-checked"),
            ]
        }

        #[tokio::test]
        async fn preflights_are_answered_without_the_authorizer_or_the_function() {
            let gateway = gateway(&[PAGE]);

            let allowed = send(
                &gateway,
                Method::OPTIONS,
                "/v1/secret",
                &preflight_headers(PAGE),
            )
            .await;
            let refused = send(
                &gateway,
                Method::OPTIONS,
                "/v1/secret",
                &preflight_headers("http://evil.example"),
            )
            .await;
            let unrouted = send(
                &gateway,
                Method::OPTIONS,
                "/v1/nothing-here",
                &preflight_headers(PAGE),
            )
            .await;

            assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
            assert_eq!(allowed.headers()["access-control-allow-origin"], PAGE);
            assert!(allowed.headers().contains_key("apigw-requestid"));
            assert_eq!(refused.status(), StatusCode::NO_CONTENT);
            assert!(
                refused
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none()
            );
            assert_eq!(unrouted.status(), StatusCode::NO_CONTENT);
            assert_eq!(
                gateway.authorizer.0.load(Ordering::SeqCst),
                0,
                "authorizer invoked"
            );
            assert_eq!(
                gateway.invoked.load(Ordering::SeqCst),
                0,
                "function invoked"
            );
        }

        #[tokio::test]
        async fn responses_to_an_allowed_origin_carry_the_configuration_not_the_functions_headers()
        {
            let gateway = gateway(&[PAGE]);

            let open = send(&gateway, Method::GET, "/v1/open", &[("origin", PAGE)]).await;
            let refused = send(
                &gateway,
                Method::GET,
                "/v1/secret",
                &[("origin", PAGE), ("authorization", "Bearer x")],
            )
            .await;
            let missing = send(&gateway, Method::GET, "/v1/secret", &[("origin", PAGE)]).await;
            let other = send(
                &gateway,
                Method::GET,
                "/v1/open",
                &[("origin", "http://evil.example")],
            )
            .await;

            assert_eq!(open.status(), StatusCode::OK);
            assert_eq!(open.headers()["access-control-allow-origin"], PAGE);
            assert_eq!(
                open.headers()["access-control-expose-headers"],
                "location,x-session-home,x-replica-lag-ms,idempotency-region"
            );
            assert_eq!(refused.status(), StatusCode::FORBIDDEN);
            assert_eq!(refused.headers()["access-control-allow-origin"], PAGE);
            assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(missing.headers()["access-control-allow-origin"], PAGE);
            assert_eq!(other.status(), StatusCode::OK);
            assert!(
                other.headers().get("access-control-allow-origin").is_none(),
                "the function's header was kept"
            );
            assert_eq!(gateway.authorizer.0.load(Ordering::SeqCst), 1);
        }

        #[tokio::test]
        async fn without_allowed_origins_an_options_request_is_routed_like_any_other() {
            let gateway = gateway(&[]);

            let preflight = send(
                &gateway,
                Method::OPTIONS,
                "/v1/secret",
                &preflight_headers(PAGE),
            )
            .await;
            let plain = send(&gateway, Method::GET, "/v1/open", &[("origin", PAGE)]).await;

            assert_eq!(preflight.status(), StatusCode::NOT_FOUND);
            assert!(
                preflight
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none()
            );
            assert_eq!(
                plain.headers()["access-control-allow-origin"],
                "https://other.example",
                "CORS off: the function's headers pass"
            );
        }
    }
}
