//! The emulated API's routes, read from the OpenAPI document so the emulator, the router and
//! the SAM template cannot disagree on which routes exist and which need the authorizer.

use std::collections::HashMap;

use http::Method;

/// Why an OpenAPI document could not be turned into routes.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The document is not JSON or has no `paths` object.
    #[error("the OpenAPI document has no `paths` object")]
    NoPaths,
    /// A method key that is not an HTTP method.
    #[error("{path}: {method:?} is not an HTTP method")]
    Method {
        /// The path it was found under.
        path: String,
        /// The key.
        method: String,
    },
}

/// One route: `GET /v1/sessions/{session_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path template, API Gateway style (`{name}` segments).
    pub template: String,
    /// Whether the REQUEST authorizer guards it.
    pub secured: bool,
}

impl Route {
    /// API Gateway's route key, e.g. `GET /v1/sessions/{session_id}`, or `$default`.
    pub fn key(&self) -> String {
        if self.template == DEFAULT_ROUTE {
            return DEFAULT_ROUTE.to_owned();
        }
        format!("{} {}", self.method, self.template)
    }

    /// The path parameters if `path` matches the template. Like API Gateway, a parameter
    /// matches one non-empty segment, and a trailing slash is a different path.
    fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        let mut params = HashMap::new();
        let mut segments = path.split('/');
        for expected in self.template.split('/') {
            let segment = segments.next()?;
            match expected.strip_prefix('{').and_then(|e| e.strip_suffix('}')) {
                Some(name) if !segment.is_empty() => {
                    params.insert(name.to_owned(), segment.to_owned());
                }
                None if segment == expected => {}
                Some(_) | None => return None,
            }
        }
        segments.next().is_none().then_some(params)
    }
}

/// A matched route and its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a> {
    /// The route.
    pub route: &'a Route,
    /// `{name}` → the request's segment.
    pub path_parameters: HashMap<String, String>,
}

/// API Gateway's catch-all route key: it takes every request no other route matches.
pub const DEFAULT_ROUTE: &str = "$default";

/// Every route of the API.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// The `$default` route, when the API has one.
    default: Option<Route>,
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

impl RouteTable {
    /// The routes of an OpenAPI 3 document: one per operation, secured when the operation (or
    /// the document) asks for a non-empty security requirement.
    ///
    /// # Errors
    /// The document has no paths, or a method key is not an HTTP method.
    pub fn from_openapi(document: &serde_json::Value) -> Result<Self, RouteError> {
        let paths = document
            .get("paths")
            .and_then(|p| p.as_object())
            .ok_or(RouteError::NoPaths)?;
        let global_security = document.get("security");
        let mut routes = Vec::new();
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (key, operation) in item {
                if !METHODS.contains(&key.as_str()) {
                    continue; // `parameters`, `summary`, ... apply to the path, not a method.
                }
                let method =
                    Method::from_bytes(key.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        RouteError::Method {
                            path: path.clone(),
                            method: key.clone(),
                        }
                    })?;
                let security = operation.get("security").or(global_security);
                let secured = security.and_then(|s| s.as_array()).is_some_and(|s| {
                    s.iter()
                        .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
                });
                routes.push(Route {
                    method,
                    template: path.clone(),
                    secured,
                });
            }
        }
        // Literal segments win over parameters, as in API Gateway ("most specific first").
        routes.sort_by_key(|r| r.template.matches('{').count());
        Ok(Self {
            routes,
            default: None,
        })
    }

    /// The same with a `$default` route behind the authorizer, as the SAM template deploys it
    /// to the REST function: a request no documented route matches reaches the function (given
    /// a valid token), which answers `404`, or `405` with `Allow` on a documented path.
    #[must_use]
    pub fn with_default_route(mut self) -> Self {
        self.default = Some(Route {
            method: Method::GET,
            template: DEFAULT_ROUTE.to_owned(),
            secured: true,
        });
        self
    }

    /// The route API Gateway selects for `method path`: a documented one, else `$default`.
    pub fn select(&self, method: &Method, path: &str) -> Option<Matched<'_>> {
        self.find(method, path).or_else(|| {
            self.default.as_ref().map(|route| Matched {
                route,
                path_parameters: HashMap::new(),
            })
        })
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route `method path` selects, if any.
    pub fn find(&self, method: &Method, path: &str) -> Option<Matched<'_>> {
        self.routes
            .iter()
            .filter(|r| r.method == method)
            .find_map(|route| {
                route.matches(path).map(|path_parameters| Matched {
                    route,
                    path_parameters,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::from_openapi(&serde_json::json!({
            "paths": {
                "/v1/sessions": {
                    "get": {"security": [{"bearer": []}]},
                    "post": {"security": [{"bearer": []}]}
                },
                "/v1/sessions/{session_id}": {"get": {"security": [{"bearer": []}]}},
                "/v1/health": {"get": {}, "parameters": []}
            }
        }))
        .unwrap()
    }

    #[test]
    fn routes_match_on_method_and_template_with_path_parameters() {
        let table = table();
        let matched = table.find(&Method::GET, "/v1/sessions/ses_1").unwrap();
        assert_eq!(matched.route.key(), "GET /v1/sessions/{session_id}");
        assert_eq!(matched.path_parameters["session_id"], "ses_1");
        assert!(matched.route.secured);
        assert!(
            !table
                .find(&Method::GET, "/v1/health")
                .unwrap()
                .route
                .secured
        );
    }

    #[test]
    fn other_methods_trailing_slashes_empty_and_extra_segments_do_not_match() {
        let table = table();
        assert!(table.find(&Method::DELETE, "/v1/health").is_none());
        assert!(table.find(&Method::GET, "/v1/sessions/").is_none());
        assert!(table.find(&Method::GET, "/v1/sessions/a/b").is_none());
        assert!(table.find(&Method::GET, "/v1/health/").is_none());
        assert_eq!(table.routes().len(), 4);
    }

    #[test]
    fn the_default_route_takes_what_no_route_matches_behind_the_authorizer() {
        let without = table();
        let with = table().with_default_route();

        let documented = with.select(&Method::GET, "/v1/health").unwrap();
        let undeclared = with.select(&Method::DELETE, "/v1/health").unwrap();
        let unknown = with.select(&Method::GET, "/v1/nothing").unwrap();

        assert_eq!(documented.route.key(), "GET /v1/health");
        for fallen_back in [&undeclared, &unknown] {
            assert_eq!(fallen_back.route.key(), "$default");
            assert!(fallen_back.route.secured);
            assert!(fallen_back.path_parameters.is_empty());
        }
        assert!(without.select(&Method::DELETE, "/v1/health").is_none());
        // Only documented routes count as the API's own (CORS asks `find` for OPTIONS routes).
        assert!(with.find(&Method::OPTIONS, "/v1/health").is_none());
    }
}
