//! An embedded AWS Cloud Map registry for the local stack: the subset of the Cloud Map API
//! (`servicediscovery`, JSON 1.1 over `POST /` with `X-Amz-Target`) that the service's
//! discovery client and the stack's registration use — `DiscoverInstances`, `RegisterInstance`,
//! `DeregisterInstance` and `UpdateInstanceCustomHealthStatus` — in memory, so a real
//! `aws-sdk-servicediscovery` client works against it.
//!
//! Layout: [`Registry`] (namespaces' services and their instances, the model), the API server
//! here ([`CloudMapApi`]), and [`Registrar`] (the stack's side: registering its servers and
//! flipping their health, on this registry or on another Cloud Map API such as moto's).

mod registrar;
mod registry;
mod self_registration;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use registrar::{Registrar, RegistrarError};
pub use registry::{HealthFilter, Registry, RegistryError, service_id};
pub use self_registration::{Registered, SelfRegistration, SelfRegistrationError};

/// The `X-Amz-Target` prefix of every Cloud Map operation.
const TARGET_PREFIX: &str = "Route53AutoNaming_v20170314.";

/// The content type of JSON 1.1 requests and answers.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A running registry API; dropping it stops the server.
#[derive(Debug)]
pub struct CloudMapApi {
    addr: SocketAddr,
    registry: Arc<Registry>,
    task: JoinHandle<()>,
}

impl CloudMapApi {
    /// Serves `registry` on `listener`.
    ///
    /// # Errors
    /// The listener has no local address.
    pub fn spawn(listener: TcpListener, registry: Arc<Registry>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route("/", post(operation))
            .with_state(Arc::clone(&registry));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the Cloud Map registry API stopped");
            }
        });
        Ok(Self {
            addr,
            registry,
            task,
        })
    }

    /// The API's endpoint (`discovery.cloudmap_endpoint`), e.g. `http://127.0.0.1:8060`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registry it serves.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}

impl Drop for CloudMapApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One call: the operation named by `X-Amz-Target`, its input the JSON body.
async fn operation(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(name) = target.strip_prefix(TARGET_PREFIX) else {
        return error(
            "UnknownOperationException",
            &format!("X-Amz-Target {target:?} is no Cloud Map operation"),
        );
    };
    let input: Value = match serde_json::from_slice(&body) {
        Ok(input @ Value::Object(_)) => input,
        _ => {
            return error(
                "SerializationException",
                &format!("the body of {name} is not a JSON object"),
            );
        }
    };
    match answer(&registry, name, &input) {
        Ok(output) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            output.to_string(),
        )
            .into_response(),
        Err(e) => error(e.code(), &e.to_string()),
    }
}

/// The output of operation `name` on `input`.
fn answer(registry: &Registry, name: &str, input: &Value) -> Result<Value, RegistryError> {
    let text = |field: &'static str| {
        input
            .get(field)
            .and_then(Value::as_str)
            .ok_or(RegistryError::MissingField(field))
    };
    match name {
        "DiscoverInstances" => {
            let filter = match input.get("HealthStatus").and_then(Value::as_str) {
                None => HealthFilter::All,
                Some(status) => HealthFilter::parse(status)?,
            };
            let (instances, revision) =
                registry.discover(text("NamespaceName")?, text("ServiceName")?, filter)?;
            Ok(json!({"Instances": instances, "InstancesRevision": revision}))
        }
        "RegisterInstance" => {
            let attributes = input
                .get("Attributes")
                .and_then(Value::as_object)
                .ok_or(RegistryError::MissingField("Attributes"))?
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(v) => Ok((k.clone(), v.to_owned())),
                    None => Err(RegistryError::MissingField("Attributes")),
                })
                .collect::<Result<_, _>>()?;
            let operation =
                registry.register(text("ServiceId")?, text("InstanceId")?, attributes)?;
            Ok(json!({"OperationId": operation}))
        }
        "DeregisterInstance" => {
            let operation = registry.deregister(text("ServiceId")?, text("InstanceId")?)?;
            Ok(json!({"OperationId": operation}))
        }
        "UpdateInstanceCustomHealthStatus" => {
            let healthy = match text("Status")? {
                "HEALTHY" => true,
                "UNHEALTHY" => false,
                other => {
                    return Err(RegistryError::InvalidInput(format!(
                        "Status must be HEALTHY or UNHEALTHY, not {other:?}"
                    )));
                }
            };
            registry.set_health(text("ServiceId")?, text("InstanceId")?, healthy)?;
            Ok(json!({}))
        }
        other => Err(RegistryError::UnknownOperation(other.to_owned())),
    }
}

/// An error in the JSON 1.1 shape the SDK reads: `__type` and `message`, status 400.
fn error(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        json!({"__type": code, "message": message}).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new("session.internal", &["simulator", "auth"])
    }

    #[test]
    fn an_unknown_operation_is_named_in_the_error() {
        let err = answer(&registry(), "CreateService", &json!({})).unwrap_err();
        assert_eq!(err.code(), "UnknownOperationException");
        assert!(err.to_string().contains("CreateService"), "{err}");
    }

    #[test]
    fn a_missing_field_is_named_in_the_error() {
        let err = answer(
            &registry(),
            "DiscoverInstances",
            &json!({"NamespaceName": "session.internal"}),
        )
        .unwrap_err();
        assert_eq!(err.code(), "InvalidInput");
        assert!(err.to_string().contains("ServiceName"), "{err}");
    }

    #[test]
    fn discovery_answers_the_registered_instances_in_the_api_shape() {
        let registry = registry();
        answer(
            &registry,
            "RegisterInstance",
            &json!({"ServiceId": service_id("simulator"), "InstanceId": "simulator-server-1",
                    "Attributes": {"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": "5001"}}),
        )
        .unwrap();

        let out = answer(
            &registry,
            "DiscoverInstances",
            &json!({"NamespaceName": "session.internal", "ServiceName": "simulator",
                    "HealthStatus": "HEALTHY"}),
        )
        .unwrap();

        assert_eq!(out["Instances"][0]["InstanceId"], "simulator-server-1");
        assert_eq!(out["Instances"][0]["HealthStatus"], "HEALTHY");
        assert_eq!(out["Instances"][0]["ServiceName"], "simulator");
        assert_eq!(
            out["Instances"][0]["Attributes"]["AWS_INSTANCE_PORT"],
            "5001"
        );
        assert!(out["InstancesRevision"].as_i64().unwrap() > 0);
    }
}
