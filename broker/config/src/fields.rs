//! Reading one configuration object's attributes with MessageSight's types and rules, so every
//! error names the object type, the object, and the attribute.

use serde_json::{Map, Value};

use crate::ConfigError;

/// The attributes of one named object, consumed as they are read; what is left is unknown.
pub(crate) struct Fields<'a> {
    object: &'static str,
    name: &'a str,
    attrs: Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(
        object: &'static str,
        name: &'a str,
        value: &Value,
    ) -> Result<Self, ConfigError> {
        match value {
            Value::Object(attrs) => Ok(Fields {
                object,
                name,
                attrs: attrs.clone(),
            }),
            other => Err(ConfigError::object(
                object,
                name,
                format!("must be a JSON object, got {}", kind(other)),
            )),
        }
    }

    pub(crate) fn error(&self, attribute: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::attribute(self.object, self.name, attribute, message)
    }

    fn take(&mut self, attribute: &str) -> Option<Value> {
        self.attrs.remove(attribute).filter(|v| !v.is_null())
    }

    pub(crate) fn string(&mut self, attribute: &str, default: &str) -> Result<String, ConfigError> {
        match self.take(attribute) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s),
            Some(other) => {
                Err(self.error(attribute, format!("must be a string, got {}", kind(&other))))
            }
        }
    }

    pub(crate) fn required_string(&mut self, attribute: &str) -> Result<String, ConfigError> {
        let value = self.string(attribute, "")?;
        if value.trim().is_empty() {
            return Err(self.error(attribute, "is required"));
        }
        Ok(value)
    }

    pub(crate) fn boolean(&mut self, attribute: &str, default: bool) -> Result<bool, ConfigError> {
        match self.take(attribute) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(self.error(
                attribute,
                format!("must be true or false, got {}", kind(&other)),
            )),
        }
    }

    /// An integer in `min..=max`; MessageSight also accepts it written as a string of digits.
    pub(crate) fn integer(
        &mut self,
        attribute: &str,
        default: Option<u64>,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        let value = match self.take(attribute) {
            None => return Ok(default),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(other) => {
                return Err(self.error(
                    attribute,
                    format!("must be an integer, got {}", kind(&other)),
                ))
            }
        };
        match value {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(self.error(attribute, format!("must be an integer from {min} to {max}"))),
        }
    }

    /// A size: bytes as an integer, or MessageSight's `"<n>"`, `"<n>KB"`, `"<n>MB"` strings.
    pub(crate) fn size(
        &mut self,
        attribute: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let bytes = match self.take(attribute) {
            None => return Ok(default),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => parse_size(&s),
            Some(other) => {
                return Err(self.error(
                    attribute,
                    format!("must be a size such as \"4096KB\", got {}", kind(&other)),
                ))
            }
        };
        match bytes {
            Some(b) if (min..=max).contains(&b) => Ok(b),
            _ => Err(self.error(
                attribute,
                format!(
                    "must be a size from {min} to {max} bytes, written as bytes or with KB or MB"
                ),
            )),
        }
    }

    /// One of `choices`, compared without case; returns the choice as spelled in `choices`.
    pub(crate) fn choice(
        &mut self,
        attribute: &str,
        default: &'static str,
        choices: &[&'static str],
    ) -> Result<&'static str, ConfigError> {
        let value = self.string(attribute, default)?;
        choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(value.trim()))
            .copied()
            .ok_or_else(|| {
                self.error(
                    attribute,
                    format!("must be one of {}, got \"{value}\"", choices.join(", ")),
                )
            })
    }

    /// Ends reading: any attribute not read is unknown (MessageSight's CWLNA0138).
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        match self.attrs.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(ConfigError::attribute(
                self.object,
                self.name,
                unknown,
                crate::objects::UNKNOWN_ATTRIBUTE,
            )),
        }
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = if let Some(d) = text.strip_suffix("KB") {
        (d, 1024)
    } else if let Some(d) = text.strip_suffix("MB") {
        (d, 1024 * 1024)
    } else {
        (text, 1)
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(unit)
}

/// How an error names the JSON type of a value it did not expect.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_messagesight_units() {
        assert_eq!(parse_size("4096KB"), Some(4 * 1024 * 1024));
        assert_eq!(parse_size("256MB"), Some(256 * 1024 * 1024));
        assert_eq!(parse_size(" 1000 "), Some(1000));
        assert_eq!(parse_size("4 K"), None);
        assert_eq!(parse_size("KB"), None);
        assert_eq!(parse_size("99999999999999999999MB"), None);
    }
}
