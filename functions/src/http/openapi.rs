//! The OpenAPI 3.1 document, generated from the handlers' annotations (`docs/openapi.json` is
//! this document; a test fails when they drift).
//!
//! The answers every operation shares (API Gateway's 401/403, validation, not found, body
//! limits, idempotency, 5xx) are added here, once, instead of on each handler.

use std::sync::OnceLock;

use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, Required, Response};
use utoipa::{Modify, OpenApi};

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
        super::meta::health, super::meta::openapi,
    ),
    components(schemas(Problem, dto::GatewayMessage)),
    modifiers(&SharedAnswers),
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
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
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
        }
    }
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
                .description("No valid token: refused by API Gateway, or expired since")
                .content("application/json", gateway_message())
                .content(PROBLEM_JSON, problem())
                .build(),
        );
        add("403", gateway("The token was refused by the authorizer"));
        add("429", gateway("Throttled by API Gateway"));
    }
    if has_input {
        add("400", problem_response("Invalid input; `field` names it"));
    }
    if path.contains('{') {
        add("404", problem_response("No such resource for this caller"));
    }
    if operation.request_body.is_some() {
        add("413", problem_response("Body larger than 16 KiB"));
        add("415", problem_response("Body is not application/json"));
    }
    if is_post {
        add(
            "409",
            problem_response("A request with this Idempotency-Key is in progress"),
        );
        add(
            "422",
            problem_response("Idempotency-Key reused with another request"),
        );
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

fn gateway(description: &str) -> Response {
    Response::builder()
        .description(description)
        .content("application/json", gateway_message())
        .build()
}
