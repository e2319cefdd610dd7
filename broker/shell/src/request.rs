//! What a command asks of the admin endpoint: Amlen's routes under `/ima/v1`, as plain data
//! (no I/O here), so each one is tested without a server.

use serde_json::{json, Map, Value};

use crate::command::Command;

pub const API_ROOT: &str = "/ima/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One HTTP request: `path_and_query` is percent-encoded and starts with [`API_ROOT`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Method,
    pub path_and_query: String,
    pub body: Option<Value>,
}

/// What `create` and `update` check before they change anything, because the API's POST
/// creates and updates alike: `create` must not overwrite an object, and `update` must not
/// create one from a misspelt name.
#[derive(Debug, Clone, PartialEq)]
pub struct Existence {
    /// GET of the object; 404 means absent.
    pub probe: Request,
    pub must_exist: bool,
    /// "TopicPolicy \"P\"", for the refusal.
    pub object: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub check: Option<Existence>,
    pub request: Request,
}

/// The requests for a command; None for the commands the shell answers itself (help, exit,
/// tune show).
pub fn plan(command: &Command) -> Option<Plan> {
    let request = |method, path_and_query: String, body| Request {
        method,
        path_and_query,
        body,
    };
    let simple = |r| {
        Some(Plan {
            check: None,
            request: r,
        })
    };
    match command {
        Command::Help(_) | Command::Exit | Command::TuneShow => None,
        Command::Status => simple(request(Method::Get, route(&["service", "status"]), None)),
        Command::Show { object, name } => {
            let mut segments = vec!["configuration", object.name];
            segments.extend(name.as_deref());
            simple(request(Method::Get, route(&segments), None))
        }
        Command::List { object } => simple(request(
            Method::Get,
            route(&["configuration", object.name]),
            None,
        )),
        Command::Create {
            object,
            name,
            attributes,
        } => Some(Plan {
            check: Some(existence(object.name, name, false)),
            request: configure(object.name, Some(name), attributes),
        }),
        Command::Update {
            object,
            name,
            attributes,
        } => Some(Plan {
            check: name.as_deref().map(|n| existence(object.name, n, true)),
            request: configure(object.name, name.as_deref(), attributes),
        }),
        Command::Delete { object, name } => simple(request(
            Method::Delete,
            route(&["configuration", object.name, name]),
            None,
        )),
        Command::DeleteMqttClient { client_id } => simple(request(
            Method::Delete,
            route(&["service", "MQTTClient", client_id]),
            None,
        )),
        Command::Stat { object, filters } => {
            let mut path = route(&["monitor", object.name]);
            for (i, (key, value)) in filters.iter().enumerate() {
                path.push(if i == 0 { '?' } else { '&' });
                path.push_str(&percent_encode(key));
                path.push('=');
                path.push_str(&percent_encode(value));
            }
            simple(request(Method::Get, path, None))
        }
        Command::CloseConnection { filters } => simple(request(
            Method::Post,
            route(&["service", "close", "connection"]),
            Some(Value::Object(filters.clone())),
        )),
        Command::Restart { .. } => simple(request(
            Method::Post,
            route(&["service", "restart"]),
            Some(json!({"Service": "Server"})),
        )),
        Command::Stop { .. } => simple(request(
            Method::Post,
            route(&["service", "stop"]),
            Some(json!({"Service": "Server"})),
        )),
    }
}

fn existence(object_type: &str, name: &str, must_exist: bool) -> Existence {
    Existence {
        probe: Request {
            method: Method::Get,
            path_and_query: route(&["configuration", object_type, name]),
            body: None,
        },
        must_exist,
        object: format!("{object_type} \"{name}\""),
    }
}

/// Amlen's configuration POST: `{"<Type>": {"<Name>": {...}}}`, or `{"<Type>": {...}}` for a
/// singleton.
fn configure(object_type: &str, name: Option<&str>, attributes: &Map<String, Value>) -> Request {
    let attributes = Value::Object(attributes.clone());
    let object = match name {
        Some(name) => json!({ name: attributes }),
        None => attributes,
    };
    Request {
        method: Method::Post,
        path_and_query: route(&["configuration"]),
        body: Some(json!({ object_type: object })),
    }
}

/// `/ima/v1/<segment>/...`, each segment percent-encoded (object names may hold `/`, `?`, `%`,
/// spaces and any Unicode).
fn route(segments: &[&str]) -> String {
    let mut path = API_ROOT.to_string();
    for segment in segments {
        path.push('/');
        path.push_str(&percent_encode(segment));
    }
    path
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (and `*`, which
/// monitoring filters use as a wildcard and which needs no encoding in a query or a path).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~*".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;
    use crate::line::split;

    fn plan_of(line: &str) -> Plan {
        let command = parse(&split(line).unwrap()).unwrap().unwrap();
        plan(&command).expect("a command with a request")
    }

    fn get(path: &str) -> Request {
        Request {
            method: Method::Get,
            path_and_query: path.into(),
            body: None,
        }
    }

    #[test]
    fn reads_are_gets_of_amlens_routes() {
        assert_eq!(plan_of("status").request, get("/ima/v1/service/status"));
        assert_eq!(
            plan_of("show Endpoint DemoEndpoint").request,
            get("/ima/v1/configuration/Endpoint/DemoEndpoint")
        );
        assert_eq!(
            plan_of("show broker").request,
            get("/ima/v1/configuration/Broker")
        );
        assert_eq!(
            plan_of("list TopicPolicy").request,
            get("/ima/v1/configuration/TopicPolicy")
        );
        assert_eq!(
            plan_of("stat Server").request,
            get("/ima/v1/monitor/Server")
        );
        assert_eq!(
            plan_of("stat Connection ResultCount=10 ClientID=\"a b&c=d\" UserID=*").request,
            get("/ima/v1/monitor/Connection?ResultCount=10&ClientID=a%20b%26c%3Dd&UserID=*")
        );
        assert!(plan_of("status").check.is_none());
    }

    #[test]
    fn names_are_percent_encoded_in_paths() {
        assert_eq!(
            plan_of("show MessageHub \"a/b ?%\"").request,
            get("/ima/v1/configuration/MessageHub/a%2Fb%20%3F%25")
        );
        assert_eq!(
            plan_of("delete MQTTClient Zürich/1").request,
            Request {
                method: Method::Delete,
                path_and_query: "/ima/v1/service/MQTTClient/Z%C3%BCrich%2F1".into(),
                body: None
            }
        );
    }

    #[test]
    fn create_checks_absence_then_posts_the_object() {
        let plan = plan_of("create TopicPolicy P Topic=a/# MaxMessages=10");
        assert_eq!(
            plan.request,
            Request {
                method: Method::Post,
                path_and_query: "/ima/v1/configuration".into(),
                body: Some(json!({"TopicPolicy": {"P": {"Topic": "a/#", "MaxMessages": 10}}}))
            }
        );
        let check = plan.check.unwrap();
        assert_eq!(check.probe, get("/ima/v1/configuration/TopicPolicy/P"));
        assert!(!check.must_exist);
        assert_eq!(check.object, "TopicPolicy \"P\"");
    }

    #[test]
    fn update_checks_existence_except_for_singletons() {
        let plan = plan_of("update Endpoint E Enabled=false");
        assert_eq!(
            plan.request.body,
            Some(json!({"Endpoint": {"E": {"Enabled": false}}}))
        );
        assert!(plan.check.unwrap().must_exist);
        let plan = plan_of("update Broker MaxInflightMessages=64");
        assert_eq!(
            plan.request.body,
            Some(json!({"Broker": {"MaxInflightMessages": 64}}))
        );
        assert_eq!(plan.check, None);
    }

    #[test]
    fn service_calls() {
        assert_eq!(
            plan_of("delete TopicPolicy P").request,
            Request {
                method: Method::Delete,
                path_and_query: "/ima/v1/configuration/TopicPolicy/P".into(),
                body: None
            }
        );
        assert_eq!(
            plan_of("close connection ClientAddress=10.0.0.1").request,
            Request {
                method: Method::Post,
                path_and_query: "/ima/v1/service/close/connection".into(),
                body: Some(json!({"ClientAddress": "10.0.0.1"}))
            }
        );
        for (line, path) in [
            ("restart force", "/ima/v1/service/restart"),
            ("stop", "/ima/v1/service/stop"),
        ] {
            assert_eq!(
                plan_of(line).request,
                Request {
                    method: Method::Post,
                    path_and_query: path.into(),
                    body: Some(json!({"Service": "Server"}))
                }
            );
        }
        let help = parse(&split("help").unwrap()).unwrap().unwrap();
        assert_eq!(plan(&help), None);
    }
}
