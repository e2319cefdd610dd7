//! The configuration as a JSON document, as the REST API changes it: a POST's
//! `{"<Type>": {"<Name>": {...}}}` merged into the document, a DELETE taking one object out.
//! The result is only a document: [`Config::parse`] then checks it whole, with the same code
//! as a file, so a change that would not load is refused before anything is written.
//!
//! Object types come in four shapes ([`Shape`]): named objects (`Endpoint`), singleton objects
//! (`Broker`), singleton values (`AdminUserID`) and lists (`TrustedCertificate`).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

pub use crate::fields::kind;
use crate::{Config, ConfigError};

/// How an object type sits in the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `{"Endpoint": {"<Name>": {attributes}}}`.
    Named,
    /// `{"Broker": {attributes}}`.
    Singleton,
    /// `{"AdminUserID": "admin"}`.
    Value,
    /// `{"TrustedCertificate": [{attributes}, ...]}`.
    List,
}

/// Every object type a configuration may hold ([`Config::parse`] reads exactly these).
pub const OBJECT_TYPES: &[(&str, Shape)] = &[
    ("AdminEndpoint", Shape::Singleton),
    ("AdminUserID", Shape::Value),
    ("AdminUserPassword", Shape::Value),
    ("Broker", Shape::Singleton),
    ("CRLProfile", Shape::Named),
    ("CertificateProfile", Shape::Named),
    ("ConfigurationPolicy", Shape::Named),
    ("ConnectionPolicy", Shape::Named),
    ("Endpoint", Shape::Named),
    ("JWTProfile", Shape::Named),
    ("LDAP", Shape::Singleton),
    ("MessageHub", Shape::Named),
    ("MessagingGroup", Shape::Named),
    ("MessagingUser", Shape::Named),
    ("OAuthProfile", Shape::Named),
    ("SecurityProfile", Shape::Named),
    ("Store", Shape::Singleton),
    ("SubscriptionPolicy", Shape::Named),
    ("TopicPolicy", Shape::Named),
    ("TrustedCertificate", Shape::List),
];

/// The shape of `object_type`, or `None` for a type ironsight does not have.
pub fn shape(object_type: &str) -> Option<Shape> {
    OBJECT_TYPES
        .iter()
        .find(|(t, _)| *t == object_type)
        .map(|(_, s)| *s)
}

/// A change that cannot even be merged: `not_found` when it names an object type or object
/// that does not exist (HTTP 404), otherwise a malformed request (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError {
    pub not_found: bool,
    pub error: ConfigError,
}

impl EditError {
    fn invalid(error: ConfigError) -> Self {
        EditError {
            not_found: false,
            error,
        }
    }

    fn unknown_type(object_type: &str) -> Self {
        EditError {
            not_found: true,
            error: ConfigError::document(format!("unknown object type \"{object_type}\"")),
        }
    }
}

/// Merges a POST's `{"<Type>": ...}` into `doc`: named objects are created or updated, an
/// attribute set to `null` goes back to its default, attributes not given keep their values;
/// singleton objects are updated the same way; a value is replaced; list entries are added
/// unless the list holds them already.
pub fn merge(doc: &mut Map<String, Value>, change: &Map<String, Value>) -> Result<(), EditError> {
    if change.is_empty() {
        return Err(EditError::invalid(ConfigError::document(
            "the request names no object; send {\"<Type>\": {\"<Name>\": {...}}}",
        )));
    }
    for (object_type, value) in change {
        let shape = shape(object_type).ok_or_else(|| EditError::unknown_type(object_type))?;
        match shape {
            Shape::Named => {
                let objects = as_object(object_type, None, value)?;
                let slot = object_slot(doc, object_type);
                for (name, attrs) in objects {
                    let attrs = as_object(object_type, Some(name), attrs)?;
                    let target = object_slot(slot, name);
                    merge_attributes(target, attrs);
                }
            }
            Shape::Singleton => {
                let attrs = as_object(object_type, Some(object_type), value)?;
                merge_attributes(object_slot(doc, object_type), attrs);
            }
            Shape::Value => {
                doc.insert(object_type.clone(), value.clone());
            }
            Shape::List => {
                let Value::Array(items) = value else {
                    return Err(EditError::invalid(ConfigError::document(format!(
                        "{object_type} must be a list of {object_type} objects, got {}",
                        kind(value)
                    ))));
                };
                let list = doc
                    .entry(object_type.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    for item in items {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Takes the named object `object_type`/`name` out of `doc`. Only named objects can be
/// deleted: a singleton is changed by a POST of its attributes.
pub fn remove(
    doc: &mut Map<String, Value>,
    object_type: &str,
    name: &str,
) -> Result<(), EditError> {
    match shape(object_type) {
        None => Err(EditError::unknown_type(object_type)),
        Some(Shape::Named) => {
            let removed = doc
                .get_mut(object_type)
                .and_then(Value::as_object_mut)
                .and_then(|objects| objects.remove(name));
            match removed {
                Some(_) => Ok(()),
                None => Err(EditError {
                    not_found: true,
                    error: ConfigError::object(object_type, name, "does not exist"),
                }),
            }
        }
        Some(_) => Err(EditError::invalid(ConfigError::document(format!(
            "{object_type} is not a named object and cannot be deleted; POST its attributes to change it"
        )))),
    }
}

/// The objects that differ between two checked configurations, as `Type "Name"` (or `Type`
/// for a singleton), in type order: added, removed and changed alike.
pub fn changed_objects(old: &Config, new: &Config) -> Vec<String> {
    let (old, new) = (as_document(old), as_document(new));
    let mut changed = Vec::new();
    for (object_type, shape) in OBJECT_TYPES {
        let (a, b) = (old.get(*object_type), new.get(*object_type));
        if a == b {
            continue;
        }
        match (shape, a, b) {
            (Shape::Named, a, b) => {
                let empty = Map::new();
                let a = a.and_then(Value::as_object).unwrap_or(&empty);
                let b = b.and_then(Value::as_object).unwrap_or(&empty);
                let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for name in names {
                    if a.get(name) != b.get(name) {
                        changed.push(format!("{object_type} \"{name}\""));
                    }
                }
            }
            _ => changed.push((*object_type).to_string()),
        }
    }
    changed
}

/// A checked configuration as the document it would be written as, defaults filled in.
pub fn as_document(config: &Config) -> Map<String, Value> {
    match serde_json::to_value(config).expect("a configuration serializes") {
        Value::Object(doc) => doc,
        _ => unreachable!("a configuration serializes as an object"),
    }
}

fn as_object<'a>(
    object_type: &str,
    name: Option<&str>,
    value: &'a Value,
) -> Result<&'a Map<String, Value>, EditError> {
    value.as_object().ok_or_else(|| {
        let message = format!("must be a JSON object, got {}", kind(value));
        EditError::invalid(match name {
            Some(name) => ConfigError::object(object_type, name, message),
            None => ConfigError::document(format!(
                "{object_type} must be an object of named {object_type} objects, got {}",
                kind(value)
            )),
        })
    })
}

/// The object at `key` in `map`, made an empty one if absent or not an object (a malformed
/// document is then refused by the check that follows, naming what is wrong).
fn object_slot<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("made an object above")
}

fn merge_attributes(target: &mut Map<String, Value>, attrs: &Map<String, Value>) {
    for (attribute, value) in attrs {
        if value.is_null() {
            target.remove(attribute);
        } else {
            target.insert(attribute.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Map<String, Value> {
        serde_json::from_str(crate::DEFAULT_CONFIG).unwrap()
    }

    fn json(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    /// Proves the list of object types is the one `Config::parse` reads: each type is
    /// accepted in a document, and everything a configuration writes is listed.
    #[test]
    fn object_types_are_those_the_parser_reads() {
        let config = Config::builtin();
        for key in as_document(&config).keys() {
            assert!(shape(key).is_some(), "{key} is not in OBJECT_TYPES");
        }
        for (object_type, _) in OBJECT_TYPES {
            let mut doc = demo();
            doc.insert((*object_type).to_string(), Value::Null);
            let text = Value::Object(doc).to_string();
            if let Err(e) = Config::parse(&text) {
                assert!(!e.message.contains("unknown object type"), "{e}");
            }
        }
        assert_eq!(shape("Endpont"), None);
    }

    /// Proves a POST creates and updates named objects, keeps attributes not given, resets
    /// those given as null, updates singletons, replaces values and adds list entries once.
    #[test]
    fn merging_creates_and_updates() {
        let mut doc = demo();
        let change = json(serde_json::json!({
            "Endpoint": {
                "DemoEndpoint": {"Port": 1884, "MaxMessageSize": null},
                "Second": {"Port": 1885, "MessageHub": "DemoHub",
                    "ConnectionPolicies": "DemoConnectionPolicy", "TopicPolicies": "DemoTopicPolicy"}},
            "Broker": {"MaxInflightMessages": 10},
            "AdminUserID": "root",
            "TrustedCertificate": [{"SecurityProfileName": "S", "TrustedCertificate": "ca.pem"}],
        }));
        merge(&mut doc, &change).unwrap();
        merge(&mut doc, &change).unwrap();
        let demo_endpoint = &doc["Endpoint"]["DemoEndpoint"];
        assert_eq!(demo_endpoint["Port"], 1884);
        assert_eq!(demo_endpoint["MessageHub"], "DemoHub", "kept");
        assert!(demo_endpoint.get("MaxMessageSize").is_none(), "reset");
        assert_eq!(doc["Endpoint"]["Second"]["Port"], 1885);
        assert_eq!(doc["Broker"]["MaxInflightMessages"], 10);
        assert_eq!(doc["AdminUserID"], "root");
        assert_eq!(doc["TrustedCertificate"].as_array().unwrap().len(), 1);
    }

    /// Proves malformed changes are refused before anything is checked: an unknown type (not
    /// found), an object that is not an object, an empty change.
    #[test]
    fn malformed_changes_are_refused() {
        let mut doc = demo();
        let e = merge(&mut doc, &json(serde_json::json!({"Endpont": {}}))).unwrap_err();
        assert!(e.not_found);
        assert_eq!(
            e.error.to_string(),
            "configuration: unknown object type \"Endpont\""
        );
        let e = merge(
            &mut doc,
            &json(serde_json::json!({"Endpoint": {"E": "port 1"}})),
        )
        .unwrap_err();
        assert!(!e.not_found);
        assert_eq!(
            e.error.to_string(),
            "Endpoint \"E\": must be a JSON object, got a string"
        );
        let e = merge(&mut doc, &Map::new()).unwrap_err();
        assert!(e.error.message.starts_with("the request names no object"));
        let e = merge(
            &mut doc,
            &json(serde_json::json!({"TrustedCertificate": {}})),
        )
        .unwrap_err();
        assert!(e.error.message.contains("must be a list"), "{e:?}");
        assert_eq!(doc, demo(), "nothing merged");
    }

    /// Proves a DELETE takes out exactly the named object, and refuses what is not there or
    /// is not a named object.
    #[test]
    fn removing_named_objects() {
        let mut doc = demo();
        remove(&mut doc, "TopicPolicy", "DemoTopicPolicy").unwrap();
        assert!(doc["TopicPolicy"].as_object().unwrap().is_empty());
        let e = remove(&mut doc, "TopicPolicy", "DemoTopicPolicy").unwrap_err();
        assert!(e.not_found);
        assert_eq!(
            e.error.to_string(),
            "TopicPolicy \"DemoTopicPolicy\": does not exist"
        );
        assert!(remove(&mut doc, "Nope", "x").unwrap_err().not_found);
        let e = remove(&mut doc, "Broker", "Broker").unwrap_err();
        assert!(!e.not_found);
        // The check that follows sees the endpoint's reference to what is gone.
        let e = Config::parse(&Value::Object(doc).to_string()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Endpoint \"DemoEndpoint\", attribute TopicPolicies: names TopicPolicy \"DemoTopicPolicy\", which does not exist"
        );
    }

    /// Proves the changed objects are named one by one: an added endpoint, a changed policy,
    /// a changed singleton; unchanged ones are not listed.
    #[test]
    fn changes_are_listed_by_object() {
        let old = Config::builtin();
        let mut doc = demo();
        merge(
            &mut doc,
            &json(serde_json::json!({
                "TopicPolicy": {"DemoTopicPolicy": {"MaxMessages": 10}},
                "Broker": {"MaxInflightMessages": 10},
            })),
        )
        .unwrap();
        let new = Config::parse(&Value::Object(doc).to_string()).unwrap();
        assert_eq!(
            changed_objects(&old, &new),
            ["Broker", "TopicPolicy \"DemoTopicPolicy\""]
        );
        assert!(changed_objects(&old, &old).is_empty());
    }
}
