//! The command grammar: words (from `line::split`) to a typed [`Command`], and the help text
//! of every command ([`SPECS`]).
//!
//! A new command is a [`Command`] variant, a [`Spec`], an arm in [`parse`] and one in
//! `request::plan` (and, when it has arguments to complete, a line in `complete`).

use std::fmt;

use serde_json::{Map, Value};

use crate::line::Word;
use crate::objects::{self, MonitorObject, ObjectType, CLOSE_CONNECTION_FILTERS, MQTT_CLIENT};

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help(Option<&'static Spec>),
    Exit,
    Status,
    Show {
        object: &'static ObjectType,
        name: Option<String>,
    },
    List {
        object: &'static ObjectType,
    },
    Create {
        object: &'static ObjectType,
        name: String,
        attributes: Map<String, Value>,
    },
    /// `name` is None exactly for singleton types.
    Update {
        object: &'static ObjectType,
        name: Option<String>,
        attributes: Map<String, Value>,
    },
    Delete {
        object: &'static ObjectType,
        name: String,
    },
    /// `delete MQTTClient <ClientID>`: drop a disconnected client's session.
    DeleteMqttClient {
        client_id: String,
    },
    Stat {
        object: &'static MonitorObject,
        filters: Vec<(String, String)>,
    },
    CloseConnection {
        filters: Map<String, Value>,
    },
    Restart {
        force: bool,
    },
    Stop {
        force: bool,
    },
    /// `tune show`: answered by the shell from the machine's files ([`crate::tune`]).
    TuneShow,
}

impl Command {
    /// The question to confirm before running this command, for the commands that end every
    /// client's connection; None when it needs no confirmation or was given `force`.
    pub fn confirmation(&self) -> Option<&'static str> {
        match self {
            Command::Restart { force: false } => {
                Some("Restart the broker? Every client connection is closed.")
            }
            Command::Stop { force: false } => Some(
                "Stop the broker? Every client connection is closed, and it stays down until \
                 it is started again on the host.",
            ),
            _ => None,
        }
    }
}

/// One command's help: `usage` is its grammar, `summary` one line for `help`, `details` the
/// text of `help <command>`.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    pub usage: &'static str,
    pub summary: &'static str,
    pub details: &'static str,
}

pub const SPECS: &[Spec] = &[
    Spec {
        name: "status",
        usage: "status",
        summary: "the broker's state and uptime",
        details: "GET /ima/v1/service/status.",
    },
    Spec {
        name: "show",
        usage: "show <Type> [<Name>]",
        summary: "one object, or all of a type",
        details: "GET /ima/v1/configuration/<Type>[/<Name>]. Single objects (Broker, Store, \
                  LDAP, AdminEndpoint) take no name.\n\
                  Examples:\n  show Endpoint DemoEndpoint\n  show TopicPolicy\n  show Broker",
    },
    Spec {
        name: "list",
        usage: "list <Type>",
        summary: "the names of the objects of a type",
        details: "GET /ima/v1/configuration/<Type>, names only.\nExample:\n  list Endpoint",
    },
    Spec {
        name: "create",
        usage: "create <Type> <Name> [<Attr>=<Value> ...]",
        summary: "a new object (refused if it exists)",
        details: "Checks that <Name> does not exist, then POST /ima/v1/configuration with \
                  {\"<Type>\":{\"<Name>\":{<attributes>}}}.\n\
                  Values: true and false are booleans, integers are numbers, anything quoted \
                  is a string, and so is the value of a text attribute (Description, ClientID, \
                  Topic, ...); quote a value that contains spaces or ; | & $ < > ( ) { } !\n\
                  Examples:\n  create MessageHub Sensors Description=\"sensor data\"\n  \
                  create TopicPolicy Sensors Topic=sensors/* ActionList=Publish,Subscribe",
    },
    Spec {
        name: "update",
        usage: "update <Type> [<Name>] <Attr>=<Value> ...",
        summary: "change an object that exists",
        details: "Checks that <Name> exists, then POST /ima/v1/configuration with the \
                  attributes given; the others keep their values. Values are typed as for \
                  create. Single objects (Broker, Store, LDAP, AdminEndpoint) take no name.\n\
                  Examples:\n  update Endpoint DemoEndpoint Enabled=false\n  \
                  update Broker MaxInflightMessages=256",
    },
    Spec {
        name: "delete",
        usage: "delete <Type> <Name>",
        summary: "delete an object or client session",
        details: "DELETE /ima/v1/configuration/<Type>/<Name>.\n\
                  delete MQTTClient <ClientID> drops the session a disconnected client left \
                  (DELETE /ima/v1/service/MQTTClient/<ClientID>).\n\
                  Example:\n  delete TopicPolicy Sensors",
    },
    Spec {
        name: "stat",
        usage: "stat <Object> [<Filter>=<Value> ...]",
        summary: "monitoring figures",
        details: "GET /ima/v1/monitor/<Object>?<Filter>=<Value>&... The objects are Server, \
                  Endpoint, Connection, Subscription, MQTTClient and Memory. Filters as Amlen's: \
                  ResultCount (10, 25, 50, 100), StatType (what to sort by), SortOrder, and per \
                  object Endpoint, ClientID, UserID, ClientAddress, SubName, TopicString, \
                  ConnectionState, SubType, Duration; * is a wildcard where the API allows it.\n\
                  Examples:\n  stat Server\n  stat Connection ResultCount=10 StatType=NewestConnection\n  \
                  stat Subscription ClientID=sensor-*",
    },
    Spec {
        name: "close",
        usage: "close connection <Filter>=<Value> ...",
        summary: "close client connections",
        details: "POST /ima/v1/service/close/connection. The filters are ClientID, UserID and \
                  ClientAddress, at least one; a comma-separated list or a * wildcard selects \
                  several.\n\
                  Example:\n  close connection ClientID=sensor-17",
    },
    Spec {
        name: "restart",
        usage: "restart [force]",
        summary: "restart the broker (asks first)",
        details: "POST /ima/v1/service/restart. Every client connection is closed. \
                  Interactively the shell asks for confirmation; in `ssh admin@host restart` \
                  there is nobody to ask, so it is refused unless written `restart force`.",
    },
    Spec {
        name: "stop",
        usage: "stop [force]",
        summary: "stop the broker (asks first)",
        details: "POST /ima/v1/service/stop. Every client connection is closed and the broker \
                  stays down until it is started on the host. Interactively the shell asks for \
                  confirmation; non-interactively it is refused unless written `stop force`.",
    },
    Spec {
        name: "tune",
        usage: "tune show",
        summary: "kernel tuning and CPU layout",
        details: "Read from this machine, not from the broker: the CPU layout ironsight-tune \
                  wrote at boot (the shards' CPUs and the housekeeping CPUs that take the \
                  network card's interrupts), and each setting of the sysctl drop-in beside \
                  the value the kernel reports now; a setting not in force is marked.",
    },
    Spec {
        name: "help",
        usage: "help [<command>]",
        summary: "this list, or one command's details",
        details: "Also: the object types, by `help show`.",
    },
    Spec {
        name: "exit",
        usage: "exit",
        summary: "leave the shell (also quit, Ctrl-D)",
        details: "",
    },
];

/// The spec of the command named `name` (`quit` is `exit`), compared without case.
pub fn spec(name: &str) -> Option<&'static Spec> {
    let name = if name.eq_ignore_ascii_case("quit") {
        "exit"
    } else {
        name
    };
    SPECS.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// A command refused before anything is sent: what was wrong, and the usage to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub usage: Option<&'static str>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(usage) = self.usage {
            write!(f, "\nusage: {usage}")?;
        }
        Ok(())
    }
}

/// The command the words say; None for an empty line.
pub fn parse(words: &[Word]) -> Result<Option<Command>, ParseError> {
    let Some((verb, args)) = words.split_first() else {
        return Ok(None);
    };
    let Some(spec) = spec(&verb.text) else {
        return Err(ParseError {
            message: format!(
                "unknown command \"{}\": this shell runs only its own commands; type help",
                verb.text
            ),
            usage: None,
        });
    };
    let fail = |message: String| ParseError {
        message,
        usage: Some(spec.usage),
    };
    let command = match spec.name {
        "help" => match args {
            [] => Command::Help(None),
            [name] => {
                Command::Help(Some(self::spec(&name.text).ok_or_else(|| {
                    fail(format!("no command is named \"{}\"", name.text))
                })?))
            }
            _ => return Err(fail("help takes at most one command name".into())),
        },
        "exit" => no_arguments(args, Command::Exit).map_err(fail)?,
        "status" => no_arguments(args, Command::Status).map_err(fail)?,
        "tune" => match args {
            [what] if what.text.eq_ignore_ascii_case("show") => Command::TuneShow,
            _ => return Err(fail("tune takes: show".into())),
        },
        "show" => {
            let (object, rest) = object_type(args).map_err(fail)?;
            let name = optional_name(object, rest).map_err(fail)?;
            if !rest.is_empty() && name.is_none() || rest.len() > 1 {
                return Err(fail("show takes a type and at most one name".into()));
            }
            Command::Show { object, name }
        }
        "list" => {
            let (object, rest) = object_type(args).map_err(fail)?;
            if !rest.is_empty() {
                return Err(fail("list takes a type only".into()));
            }
            if object.singleton {
                return Err(fail(format!(
                    "{} is a single object with no names to list: use show {}",
                    object.name, object.name
                )));
            }
            Command::List { object }
        }
        "create" => {
            let (object, rest) = object_type(args).map_err(fail)?;
            if object.singleton {
                return Err(fail(format!(
                    "{} is a single object that always exists: use update {} <Attr>=<Value>",
                    object.name, object.name
                )));
            }
            let (name, rest) = required_name(object, rest).map_err(fail)?;
            Command::Create {
                object,
                name,
                attributes: attributes(rest).map_err(fail)?,
            }
        }
        "update" => {
            let (object, rest) = object_type(args).map_err(fail)?;
            let (name, rest) = if object.singleton {
                (None, rest)
            } else {
                let (name, rest) = required_name(object, rest).map_err(fail)?;
                (Some(name), rest)
            };
            let attributes = attributes(rest).map_err(fail)?;
            if attributes.is_empty() {
                return Err(fail("update needs at least one <Attr>=<Value>".into()));
            }
            Command::Update {
                object,
                name,
                attributes,
            }
        }
        "delete" => parse_delete(args).map_err(fail)?,
        "stat" => {
            let (first, rest) = args
                .split_first()
                .ok_or_else(|| fail("stat needs an object".into()))?;
            let object = objects::monitor_object(&first.text)
                .ok_or_else(|| fail(format!("\"{}\" is not a monitoring object", first.text)))?;
            Command::Stat {
                object,
                filters: pairs(rest)
                    .map_err(fail)?
                    .into_iter()
                    .map(|(k, v, _)| (k, v))
                    .collect(),
            }
        }
        "close" => {
            let (what, rest) = args
                .split_first()
                .ok_or_else(|| fail("close needs: connection".into()))?;
            if !what.text.eq_ignore_ascii_case("connection") {
                return Err(fail(format!("close \"{}\": only connection", what.text)));
            }
            let mut filters = Map::new();
            for (key, value, _) in pairs(rest).map_err(fail)? {
                if !CLOSE_CONNECTION_FILTERS.contains(&key.as_str()) {
                    return Err(fail(format!(
                        "close connection selects by {}, not {key}",
                        CLOSE_CONNECTION_FILTERS.join(", ")
                    )));
                }
                filters.insert(key, Value::String(value));
            }
            if filters.is_empty() {
                return Err(fail(
                    "close connection needs at least one of ClientID, UserID, ClientAddress".into(),
                ));
            }
            Command::CloseConnection { filters }
        }
        "restart" => Command::Restart {
            force: force(args).map_err(fail)?,
        },
        "stop" => Command::Stop {
            force: force(args).map_err(fail)?,
        },
        other => unreachable!("spec {other} has no parser"),
    };
    Ok(Some(command))
}

fn no_arguments(args: &[Word], command: Command) -> Result<Command, String> {
    match args.first() {
        None => Ok(command),
        Some(extra) => Err(format!("unexpected \"{}\"", extra.text)),
    }
}

fn force(args: &[Word]) -> Result<bool, String> {
    match args {
        [] => Ok(false),
        [w] if w.text.eq_ignore_ascii_case("force") => Ok(true),
        [w, ..] => Err(format!(
            "unexpected \"{}\": the only option is force",
            w.text
        )),
    }
}

fn object_type(args: &[Word]) -> Result<(&'static ObjectType, &[Word]), String> {
    let (first, rest) = args
        .split_first()
        .ok_or_else(|| "an object type is needed (help show lists them)".to_string())?;
    let object = objects::object_type(&first.text).ok_or_else(|| unknown_type(&first.text))?;
    Ok((object, rest))
}

fn unknown_type(name: &str) -> String {
    let types: Vec<&str> = objects::OBJECT_TYPES.iter().map(|t| t.name).collect();
    format!(
        "\"{name}\" is not a configuration object type; the types are {}",
        types.join(", ")
    )
}

/// The object name, written `Name` or MessageSight's `Name=Name`; None if the next word is an
/// attribute (or absent). A singleton takes no name.
fn optional_name(object: &ObjectType, rest: &[Word]) -> Result<Option<String>, String> {
    let Some(word) = rest.first() else {
        return Ok(None);
    };
    let name = match word.assignment() {
        Some(("Name", name)) => name.to_string(),
        Some(_) => return Ok(None),
        None => word.text.clone(),
    };
    if object.singleton {
        return Err(format!(
            "{} is a single object and takes no name",
            object.name
        ));
    }
    check_name(&name)?;
    Ok(Some(name))
}

/// A name goes into a URL path as one segment: it must not be empty, and `.` or `..` would
/// be read as a step up the path by whatever normalizes it (DELETE .../TopicPolicy/.. must
/// never reach .../configuration).
fn check_name(name: &str) -> Result<(), String> {
    match name {
        "" => Err("the object name is empty".into()),
        "." | ".." => Err(format!("\"{name}\" is not an object name")),
        _ => Ok(()),
    }
}

fn required_name<'w>(
    object: &ObjectType,
    rest: &'w [Word],
) -> Result<(String, &'w [Word]), String> {
    match optional_name(object, rest)? {
        Some(name) => Ok((name, &rest[1..])),
        None => Err(format!("the name of the {} is needed", object.name)),
    }
}

fn parse_delete(args: &[Word]) -> Result<Command, String> {
    if let [first, client_id] = args {
        if first.text.eq_ignore_ascii_case(MQTT_CLIENT) {
            check_name(&client_id.text)?;
            return Ok(Command::DeleteMqttClient {
                client_id: client_id.text.clone(),
            });
        }
    }
    let (object, rest) = object_type(args).map_err(|e| {
        if args
            .first()
            .is_some_and(|w| w.text.eq_ignore_ascii_case(MQTT_CLIENT))
        {
            "delete MQTTClient takes one client id".to_string()
        } else {
            e
        }
    })?;
    if object.singleton {
        return Err(format!(
            "{} is a single object and cannot be deleted",
            object.name
        ));
    }
    let (name, rest) = required_name(object, rest)?;
    if let Some(extra) = rest.first() {
        return Err(format!("unexpected \"{}\"", extra.text));
    }
    Ok(Command::Delete { object, name })
}

/// `Key=Value` words: (key, value, value was quoted). Keys are names, each given once.
fn pairs(words: &[Word]) -> Result<Vec<(String, String, bool)>, String> {
    let mut out: Vec<(String, String, bool)> = Vec::with_capacity(words.len());
    for word in words {
        let Some((key, value)) = word.assignment() else {
            return Err(format!("\"{}\" is not <Name>=<Value>", word.text));
        };
        if !objects::is_attribute_name(key) {
            return Err(format!("\"{key}\" is not an attribute name"));
        }
        if out.iter().any(|(k, _, _)| k == key) {
            return Err(format!("{key} is given twice"));
        }
        out.push((key.to_string(), value.to_string(), word.quoted()));
    }
    Ok(out)
}

fn attributes(words: &[Word]) -> Result<Map<String, Value>, String> {
    let mut attributes = Map::new();
    for (key, value, quoted) in pairs(words)? {
        let value = objects::typed_value(&key, &value, quoted)?;
        attributes.insert(key, value);
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::split;
    use serde_json::json;

    fn parse_line(line: &str) -> Result<Option<Command>, ParseError> {
        parse(&split(line).expect("the line splits"))
    }

    fn command(line: &str) -> Command {
        parse_line(line).unwrap().unwrap()
    }

    fn error(line: &str) -> String {
        parse_line(line).unwrap_err().message
    }

    #[test]
    fn simple_commands() {
        assert_eq!(parse_line("").unwrap(), None);
        assert_eq!(command("status"), Command::Status);
        assert_eq!(command("STATUS"), Command::Status);
        assert_eq!(command("quit"), Command::Exit);
        assert_eq!(command("help"), Command::Help(None));
        assert_eq!(command("help stat"), Command::Help(spec("stat")));
        assert_eq!(command("stop"), Command::Stop { force: false });
        assert_eq!(command("restart force"), Command::Restart { force: true });
        assert!(error("status now").contains("unexpected \"now\""));
        assert!(error("stop now").contains("the only option is force"));
        assert!(error("help bash").contains("no command is named \"bash\""));
    }

    #[test]
    fn programs_are_unknown_commands() {
        for line in [
            "bash",
            "/bin/sh",
            "sh -c id",
            "id",
            "exec bash",
            "vi",
            "less x",
        ] {
            let e = error(line);
            assert!(e.starts_with("unknown command"), "{line}: {e}");
        }
    }

    #[test]
    fn show_and_list() {
        let endpoint = objects::object_type("Endpoint").unwrap();
        assert_eq!(
            command("show endpoint DemoEndpoint"),
            Command::Show {
                object: endpoint,
                name: Some("DemoEndpoint".into())
            }
        );
        assert_eq!(
            command("show Endpoint Name=DemoEndpoint"),
            command("show Endpoint DemoEndpoint")
        );
        assert_eq!(
            command("show Endpoint"),
            Command::Show {
                object: endpoint,
                name: None
            }
        );
        assert_eq!(command("list Endpoint"), Command::List { object: endpoint });
        assert!(error("show Endpiont").contains("not a configuration object type"));
        assert!(error("show").contains("an object type is needed"));
        assert!(error("show Endpoint a b").contains("at most one name"));
        assert!(error("list Endpoint a").contains("a type only"));
        assert!(error("list Broker").contains("use show Broker"));
        // A forgotten name is not made from the first attribute, quoted or not.
        assert!(error("create TopicPolicy Description=\"x y\"").contains("the name of the"));
        assert!(error("update Endpoint Enabled=false").contains("the name of the"));
        assert!(error("update Endpoint E \"Port=1\"").contains("is not <Name>=<Value>"));
        assert!(error("show Broker x").contains("takes no name"));
        // A name with spaces is quoted; a quoted name with = is still a name.
        assert_eq!(
            command("show MessageHub \"a=b c\""),
            Command::Show {
                object: objects::object_type("MessageHub").unwrap(),
                name: Some("a=b c".into())
            }
        );
    }

    #[test]
    fn create_and_update_type_their_values() {
        let Command::Create {
            object,
            name,
            attributes,
        } = command(
            "create TopicPolicy P Topic=a/* ActionList=Publish MaxMessages=100 \
             Description=\"two words\"",
        )
        else {
            panic!("not a create")
        };
        assert_eq!(object.name, "TopicPolicy");
        assert_eq!(name, "P");
        assert_eq!(
            Value::Object(attributes),
            json!({"Topic": "a/*", "ActionList": "Publish", "MaxMessages": 100,
                   "Description": "two words"})
        );
        let Command::Update {
            name, attributes, ..
        } = command("update Broker MaxInflightMessages=256")
        else {
            panic!("not an update")
        };
        assert_eq!(name, None);
        assert_eq!(
            Value::Object(attributes),
            json!({"MaxInflightMessages": 256})
        );
        assert!(matches!(
            command("create MessageHub H"),
            Command::Create { attributes, .. } if attributes.is_empty()
        ));
    }

    #[test]
    fn create_and_update_refusals() {
        assert!(error("create Endpoint").contains("the name of the Endpoint is needed"));
        assert!(error("create Endpoint Port=1883").contains("the name of the Endpoint is needed"));
        assert!(error("create Broker X").contains("use update Broker"));
        assert!(error("update Endpoint E").contains("at least one"));
        assert!(error("update Endpoint E Enabled=maybe").contains("true or false"));
        assert!(error("update Endpoint E Port").contains("is not <Name>=<Value>"));
        assert!(error("update Endpoint E Port=1 Port=2").contains("Port is given twice"));
        assert!(error("update Endpoint E 9x=1").contains("not an attribute name"));
        assert!(error("update Endpoint \"\" Port=1").contains("name is empty"));
        assert!(error("delete TopicPolicy ..").contains("not an object name"));
        assert!(error("show MessageHub .").contains("not an object name"));
        assert!(error("delete MQTTClient ..").contains("not an object name"));
    }

    #[test]
    fn delete() {
        assert_eq!(
            command("delete TopicPolicy P"),
            Command::Delete {
                object: objects::object_type("TopicPolicy").unwrap(),
                name: "P".into()
            }
        );
        assert_eq!(
            command("delete MQTTClient sensor-1"),
            Command::DeleteMqttClient {
                client_id: "sensor-1".into()
            }
        );
        assert!(error("delete MQTTClient").contains("one client id"));
        assert!(error("delete Broker").contains("cannot be deleted"));
        assert!(error("delete TopicPolicy P Q").contains("unexpected \"Q\""));
    }

    #[test]
    fn stat_and_close() {
        let Command::Stat { object, filters } =
            command("stat connection ResultCount=10 ClientID=a*")
        else {
            panic!("not a stat")
        };
        assert_eq!(object.name, "Connection");
        assert_eq!(
            filters,
            [
                ("ResultCount".to_string(), "10".to_string()),
                ("ClientID".to_string(), "a*".to_string())
            ]
        );
        assert!(error("stat").contains("needs an object"));
        assert!(error("stat Topic").contains("not a monitoring object"));
        assert!(error("stat Server x").contains("is not <Name>=<Value>"));
        assert_eq!(
            command("close connection ClientID=a,b UserID=u"),
            Command::CloseConnection {
                filters: json!({"ClientID": "a,b", "UserID": "u"})
                    .as_object()
                    .unwrap()
                    .clone()
            }
        );
        assert!(error("close connection").contains("at least one"));
        assert!(error("close connection Port=1").contains("not Port"));
        assert!(error("close session ClientID=a").contains("only connection"));
    }

    #[test]
    fn errors_carry_the_usage() {
        let e = parse_line("show").unwrap_err();
        assert_eq!(e.usage, Some("show <Type> [<Name>]"));
        assert!(e.to_string().ends_with("usage: show <Type> [<Name>]"));
        assert_eq!(parse_line("bash").unwrap_err().usage, None);
    }
}
