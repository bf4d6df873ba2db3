//! The OpenAPI 3.1 document, generated from the handlers' annotations (`docs/openapi.json` is
//! this document; a test fails when they drift).
//!
//! The answers every operation shares (API Gateway's 401/403, validation, not found, body
//! limits, idempotency, 5xx) are added here, once, instead of on each handler; so are the
//! patterns of the inputs, from the constants of the domain's parsers, so that the document
//! allows exactly what the server accepts.

use std::fmt::Write as _;
use std::sync::OnceLock;

use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, Required, Response};
use utoipa::{Modify, OpenApi};

use session_core::auth::Scope;
use session_core::domain::{EventId, SessionId, SessionName, SimulatorId, Symbol};
use utoipa::openapi::schema::{ArrayItems, Schema};

use super::dto;
use super::problem::{PROBLEM_JSON, Problem};

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Session service API",
        description = "Control plane of the exchange simulator's session service: sessions, simulators, connect tickets and reconnects.",
        version = "1.0.0"
    ),
    paths(
        super::sessions::create, super::sessions::list, super::sessions::get, super::sessions::close,
        super::simulators::start, super::simulators::get, super::simulators::book, super::simulators::stop,
        super::connect::ticket, super::connect::reconnect,
        super::admin::revoke,
        super::meta::health, super::meta::openapi,
    ),
    components(schemas(Problem, dto::GatewayMessage)),
    modifiers(&SharedAnswers, &DomainRules),
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The document as pretty JSON, built once per process.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut json = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serialises");
        json.push('\n');
        json
    })
}

struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(scopes_description()))
                    .build(),
            ),
        );
        for (path, item) in &mut doc.paths.paths {
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.delete, false),
            ];
            for (operation, is_post) in operations {
                if let Some(operation) = operation.as_mut() {
                    add_shared(path, operation, is_post);
                }
            }
            for (method, operation) in [
                (axum::http::Method::POST, &mut item.post),
                (axum::http::Method::DELETE, &mut item.delete),
            ] {
                if let Some(operation) = operation.as_mut()
                    && super::maintenance::paused(&method, path)
                {
                    maintenance(&mut operation.responses.responses);
                }
            }
        }
    }
}

/// A paused write's `503` `maintenance` (see `maintenance.rs`), joined to the shared `503`.
fn maintenance(answers: &mut std::collections::BTreeMap<String, RefOr<Response>>) {
    let Some(RefOr::T(response)) = answers.get_mut("503") else {
        return;
    };
    response
        .description
        .push_str("; or writes are paused for maintenance (`maintenance`, with `Retry-After`)");
    response.headers.insert(
        "Retry-After".to_owned(),
        utoipa::openapi::HeaderBuilder::new()
            .schema(
                utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Integer),
            )
            .description(Some(
                "Whole seconds until the maintenance flag is next read",
            ))
            .build(),
    );
}

fn add_shared(path: &str, operation: &mut Operation, is_post: bool) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_input = path.contains('{')
        || operation.request_body.is_some()
        || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let answers = &mut operation.responses.responses;
    let mut add = |status: &str, response: Response| {
        answers
            .entry(status.to_owned())
            .or_insert(RefOr::T(response));
    };
    if secured {
        add(
            "401",
            Response::builder()
                .description(
                    "No valid token: refused by API Gateway, expired since, or revoked \
                     (`token-revoked`)",
                )
                .content("application/json", gateway_message())
                .content(PROBLEM_JSON, problem())
                .build(),
        );
        add(
            "403",
            Response::builder()
                .description(
                    "The token was refused by the authorizer, or lacks the operation's scope \
                     (`insufficient-scope`, naming it in `scope`)",
                )
                .content("application/json", gateway_message())
                .content(PROBLEM_JSON, problem())
                .build(),
        );
    }
    if has_input {
        add("400", problem_response("Invalid input; `field` names it"));
    }
    if path.contains('{') {
        add(
            "404",
            problem_response(
                "No such resource for this caller (`not-found`), or it was deleted: a closed \
                 session, a stopped simulator (`deleted`)",
            ),
        );
    }
    if operation.request_body.is_some() {
        add("413", problem_response("Body larger than 16 KiB"));
        add("415", problem_response("Body is not application/json"));
    }
    if is_post {
        operation.parameters.get_or_insert_with(Vec::new).push(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Makes retries of this request return its first response (1 to 255 printable ASCII characters).",
                ))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[\\x21-\\x7E]+$")),
                ))
                .build(),
        );
    }
    add("500", problem_response("Internal error"));
    add(
        "503",
        problem_response("A dependency is unavailable; retry later"),
    );
    rate_limited(&mut operation.responses.responses, secured);
    if is_post {
        key_conflict(&mut operation.responses.responses);
        answering_region(&mut operation.responses.responses);
    }
}

/// Every POST's successful answers: `Idempotency-Region`, in a multi-region deployment.
fn answering_region(answers: &mut std::collections::BTreeMap<String, RefOr<Response>>) {
    for (status, answer) in answers.iter_mut() {
        let RefOr::T(answer) = answer else {
            continue;
        };
        if status.starts_with('2') {
            answer.headers.insert(
                "Idempotency-Region".to_owned(),
                utoipa::openapi::HeaderBuilder::new()
                    .schema(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::Type::String),
                    )
                    .description(Some(
                        "Multi-region deployments only, on the answer to a request with an \
                         `Idempotency-Key`: the region that answered, which holds the key's \
                         claim; retries sent there are never new requests",
                    ))
                    .build(),
            );
        }
    }
}

/// Every POST's `409` for its `Idempotency-Key`, joined to the operation's own `409` where it
/// has one.
fn key_conflict(answers: &mut std::collections::BTreeMap<String, RefOr<Response>>) {
    const KEY_CONFLICT: &str = "A request with this Idempotency-Key is in progress \
        (`idempotency-in-progress`), or the key was used with another request \
        (`idempotency-key-reused`)";
    let answer = answers
        .entry("409".to_owned())
        .or_insert_with(|| RefOr::T(problem_response(KEY_CONFLICT)));
    if let RefOr::T(response) = answer
        && response.description != KEY_CONFLICT
    {
        response.description = format!("{}; or {KEY_CONFLICT}", response.description);
    }
}

/// The scheme's description: the scopes tokens carry, each operation's `security` naming the
/// one it needs (OpenAPI 3.1 lets a non-OAuth2 requirement list them).
fn scopes_description() -> String {
    let mut text = String::from(
        "A bearer token from the auth service. Each operation's `security` names the scope it \
         needs; a token without it gets `403` `insufficient-scope` (with `WWW-Authenticate: \
         Bearer error=\"insufficient_scope\", scope=\"...\"`); a revoked token gets `401` \
         `token-revoked`.\n\n| scope | grants |\n| --- | --- |\n",
    );
    for scope in Scope::ALL {
        let _ = writeln!(text, "| `{scope}` | {} |", scope.description());
    }
    text
}

/// Every operation's `429`: a rate limit (per source address, and per user in the route's class),
/// with its headers; API Gateway's throttling on the secured ones; joined to a handler's own
/// `429` (a quota) where it has one.
fn rate_limited(answers: &mut std::collections::BTreeMap<String, RefOr<Response>>, secured: bool) {
    const LIMITED: &str = "Rate limited: over the caller's or the source address's limit \
        (`rate-limited`; `Retry-After`, `RateLimit-Policy`, `RateLimit`)";
    let answer = answers
        .entry("429".to_owned())
        .or_insert_with(|| RefOr::T(problem_response(LIMITED)));
    let RefOr::T(response) = answer else {
        return;
    };
    if response.description != LIMITED {
        response.description = format!("{}; or {LIMITED}", response.description);
    }
    response
        .content
        .entry(PROBLEM_JSON.to_owned())
        .or_insert_with(problem);
    if secured {
        response
            .content
            .entry("application/json".to_owned())
            .or_insert_with(gateway_message);
        response
            .description
            .push_str("; or throttled by API Gateway");
    }
    for (name, description) in [
        (
            "Retry-After",
            "Whole seconds until a request of this class would be admitted",
        ),
        (
            "RateLimit-Policy",
            "The limit that refused: `\"<class>\";q=<burst>;w=<seconds to refill>` (draft-ietf-httpapi-ratelimit-headers)",
        ),
        (
            "RateLimit",
            "Its state: `\"<class>\";r=0;t=<seconds until full>` (draft-ietf-httpapi-ratelimit-headers)",
        ),
    ] {
        let header = utoipa::openapi::HeaderBuilder::new()
            .schema(
                utoipa::openapi::ObjectBuilder::new().schema_type(if name == "Retry-After" {
                    utoipa::openapi::Type::Integer
                } else {
                    utoipa::openapi::Type::String
                }),
            )
            .description(Some(description))
            .build();
        response.headers.insert(name.to_owned(), header);
    }
}

fn problem() -> Content {
    Content::new(Some(Ref::from_schema_name("Problem")))
}

fn gateway_message() -> Content {
    Content::new(Some(Ref::from_schema_name("GatewayMessage")))
}

fn problem_response(description: &str) -> Response {
    Response::builder()
        .description(description)
        .content(PROBLEM_JSON, problem())
        .build()
}

/// The patterns of the inputs the domain parses, taken from its parsers' constants: path and
/// query parameters, and the properties of request bodies, by name.
struct DomainRules;

impl Modify for DomainRules {
    fn modify(&self, doc: &mut Document) {
        let mut request_schemas = Vec::new();
        for item in doc.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let (Some(pattern), Some(schema)) =
                        (pattern_of(&parameter.name), parameter.schema.as_mut())
                    {
                        set_pattern(schema, pattern);
                    }
                }
                let bodies = operation
                    .request_body
                    .iter_mut()
                    .flat_map(|b| b.content.values_mut());
                for content in bodies {
                    let Some(schema) = content.schema.as_mut() else {
                        continue;
                    };
                    absent_not_null(schema);
                    if let RefOr::Ref(r) = schema {
                        request_schemas.push(r.ref_location.rsplit('/').next().map(str::to_owned));
                    }
                }
            }
        }
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        for name in request_schemas.into_iter().flatten() {
            let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(&name) else {
                continue;
            };
            for (property, schema) in &mut object.properties {
                if let Some(pattern) = pattern_of(property) {
                    set_pattern(schema, pattern);
                }
                if property == "symbols"
                    && let RefOr::T(Schema::Array(array)) = schema
                {
                    // The parser refuses a symbol listed twice.
                    array.unique_items = true;
                    if let ArrayItems::RefOrSchema(items) = &mut array.items {
                        set_pattern(items, Symbol::PATTERN);
                    }
                }
            }
        }
    }
}

/// An optional body (`Option<T>` in `request_body`, so not `required`) is absent or a `T`, not
/// `null`: the server reads an empty body as `{}` and refuses a JSON `null`. utoipa writes
/// `oneOf: [null, T]`; this leaves `T`.
fn absent_not_null(schema: &mut RefOr<Schema>) {
    let RefOr::T(Schema::OneOf(one_of)) = schema else {
        return;
    };
    let mut refs = one_of.items.iter().filter(|s| matches!(s, RefOr::Ref(_)));
    if let (Some(only), None) = (refs.next(), refs.next()) {
        *schema = only.clone();
    }
}

/// The pattern of the input named `name`, wherever it appears.
fn pattern_of(name: &str) -> Option<&'static str> {
    match name {
        "session_id" | "cursor" => Some(SessionId::PATTERN),
        "simulator_id" => Some(SimulatorId::PATTERN),
        "symbol" => Some(Symbol::PATTERN),
        "last_event_id" => Some(EventId::PATTERN),
        "name" => Some(SessionName::PATTERN),
        _ => None,
    }
}

fn set_pattern(schema: &mut RefOr<Schema>, pattern: &str) {
    if let RefOr::T(Schema::Object(object)) = schema {
        object.pattern = Some(pattern.to_owned());
    }
}
