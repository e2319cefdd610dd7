//! The `LDAP` object: the enterprise directory that checks messaging users' passwords and
//! names their groups, with Eclipse Amlen's attributes, defaults and ranges.
//!
//! ```json
//! "LDAP": { "URL": "ldaps://ldap.example.com", "Certificate": "ldap-ca.pem",
//!           "BaseDN": "dc=example,dc=com", "BindDN": "cn=broker,dc=example,dc=com",
//!           "BindPassword": "...", "UserIdMap": "*:uid", "GroupSuffix": "ou=groups,dc=example,dc=com",
//!           "GroupIdMap": "*:cn", "GroupMemberIdMap": "member" }
//! ```
//!
//! Sources: Amlen's REST reference "Create or update an LDAP server connection"
//! (eclipse.dev/amlen/docs/Reference/SecurityCmd/cmd_create_update_LDAP.html) for the
//! attributes, its configuration schema (`server_main/config/serverConfigSchema.json`) for
//! the ranges, and the object a new server starts with (`server_main/config/server_dynamic.json`,
//! which is also what "Viewing the LDAP connection by using a REST Administration API" shows)
//! for the defaults. Amlen's behaviour, which `ironsight_auth::ldap` follows:
//! - With `UserSuffix`, a user's DN is `<UserIdMap attribute>=<user id>,<UserSuffix>` and the
//!   broker binds to it directly; without, it binds as `BindDN`, searches `BaseDN` for
//!   `(<UserIdMap attribute>=<user id>)` and binds to the one entry found.
//! - A user's groups are the entries under `GroupSuffix` whose `GroupMemberIdMap` attribute
//!   holds the user's DN; with `NestedGroupSearch`, also the groups that hold those groups.
//! - A map is an attribute name, optionally after an object class and a colon (`*:cn`,
//!   `inetOrgPerson:uid`); only the attribute is used, as in Amlen.
//!
//! There is one LDAP object; Amlen names it `ldapconfig`, and errors here do too.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::fields::Fields;
use crate::ConfigError;

/// What Amlen calls the one LDAP object, in its messages and here.
const NAME: &str = "ldapconfig";

/// How the directory's certificate is checked on `ldaps://` (Amlen's `CheckServerCert`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CheckServerCert {
    /// Any certificate is accepted: the connection is encrypted, but not to a known server.
    DisableVerify,
    /// Signed by the CA in `Certificate`.
    TrustStore,
    /// Signed by one of the operating system's public CAs.
    PublicTrust,
}

/// A value the configuration holds but never shows: serialized (for the REST API) and
/// debug-printed as Amlen's mask `XXXXXX` when set, as `""` when not.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// What Amlen shows in place of a secret; as input it is refused, so that a configuration
    /// read back and written again cannot turn the mask into the password.
    pub const MASK: &'static str = "XXXXXX";

    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it (the directory bind).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shown(&self) -> &'static str {
        if self.0.is_empty() {
            ""
        } else {
            Self::MASK
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?})", self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

/// The `LDAP` object. Times are seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ldap {
    /// Amlen's schema default for a new object (its shipped configuration holds a disabled,
    /// empty one): writing an LDAP object means using it.
    pub enabled: bool,
    /// `ldap://host[:port]` or `ldaps://host[:port]`; several, separated by commas or spaces
    /// (as OpenLDAP's `ldap_initialize`, which Amlen hands it to, accepts), are tried in
    /// order when a connection is opened. See [`Ldap::urls`].
    #[serde(rename = "URL")]
    pub url: String,
    /// PEM file of the CA that signed the directory's certificate (CheckServerCert
    /// TrustStore); relative to the configuration file's directory.
    pub certificate: String,
    pub check_server_cert: CheckServerCert,
    /// User ids and group names are compared without case: the principal's user id and groups
    /// are lowercased, one spelling per directory entry.
    pub ignore_case: bool,
    #[serde(rename = "BaseDN")]
    pub base_dn: String,
    #[serde(rename = "BindDN")]
    pub bind_dn: String,
    pub bind_password: Secret,
    pub user_suffix: String,
    pub group_suffix: String,
    pub user_id_map: String,
    pub group_id_map: String,
    pub group_member_id_map: String,
    /// Verified credentials are kept (as a keyed hash) for `CacheTimeout` seconds.
    pub enable_cache: bool,
    pub cache_timeout: u32,
    pub group_cache_timeout: u32,
    /// The bound on one verification, in seconds.
    pub timeout: u32,
    /// Connections open to the directory at most.
    pub max_connections: u32,
    pub nested_group_search: bool,
}

impl Ldap {
    /// Reads and checks the object. A disabled object may leave the attributes a connection
    /// needs empty (as in Amlen); values given are checked all the same.
    pub(crate) fn parse(value: &Value) -> Result<Ldap, ConfigError> {
        let mut f = Fields::new("LDAP", NAME, value)?;
        let check_server_cert = match f.choice(
            "CheckServerCert",
            "TrustStore",
            &["DisableVerify", "TrustStore", "PublicTrust"],
        )? {
            "DisableVerify" => CheckServerCert::DisableVerify,
            "PublicTrust" => CheckServerCert::PublicTrust,
            _ => CheckServerCert::TrustStore,
        };
        let seconds = |f: &mut Fields, attribute: &str, default: u64, max: u64| {
            f.integer(attribute, Some(default), 1, max)
                .map(|v| v.expect("has a default") as u32)
        };
        let ldap = Ldap {
            enabled: f.boolean("Enabled", true)?,
            url: f.string("URL", "")?,
            certificate: f.string("Certificate", "")?,
            check_server_cert,
            ignore_case: f.boolean("IgnoreCase", true)?,
            base_dn: f.string("BaseDN", "")?,
            bind_dn: f.string("BindDN", "")?,
            bind_password: Secret::new(f.string("BindPassword", "")?),
            user_suffix: f.string("UserSuffix", "")?,
            group_suffix: f.string("GroupSuffix", "")?,
            user_id_map: f.string("UserIdMap", "")?,
            group_id_map: f.string("GroupIdMap", "")?,
            group_member_id_map: f.string("GroupMemberIdMap", "")?,
            enable_cache: f.boolean("EnableCache", true)?,
            cache_timeout: seconds(&mut f, "CacheTimeout", 10, 60)?,
            group_cache_timeout: seconds(&mut f, "GroupCacheTimeout", 300, 86_400)?,
            timeout: seconds(&mut f, "Timeout", 30, 60)?,
            max_connections: seconds(&mut f, "MaxConnections", 100, 100)?,
            nested_group_search: f.boolean("NestedGroupSearch", false)?,
        };
        ldap.check(&f)?;
        f.finish()?;
        Ok(ldap)
    }

    /// The URLs, in the order they are tried.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.url
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|u| !u.is_empty())
    }

    /// Whether any URL is `ldaps://`.
    pub fn uses_tls(&self) -> bool {
        self.urls().any(|u| scheme_is(u, "ldaps://"))
    }

    /// The attribute that holds a user's id (`UserIdMap` without its object class).
    pub fn user_attribute(&self) -> &str {
        map_attribute(&self.user_id_map)
    }

    /// The attribute that names a group (`GroupIdMap` without its object class).
    pub fn group_attribute(&self) -> &str {
        map_attribute(&self.group_id_map)
    }

    /// The group attribute that holds its members' DNs (`GroupMemberIdMap`).
    pub fn member_attribute(&self) -> &str {
        map_attribute(&self.group_member_id_map)
    }

    fn check(&self, f: &Fields) -> Result<(), ConfigError> {
        for url in self.urls() {
            if !scheme_is(url, "ldap://") && !scheme_is(url, "ldaps://") {
                return Err(f.error(
                    "URL",
                    format!("must start with ldap:// or ldaps://, got \"{url}\""),
                ));
            }
        }
        if self.bind_password.expose() == Secret::MASK {
            return Err(f.error(
                "BindPassword",
                "is the mask the configuration shows in place of the password; give the password itself",
            ));
        }
        for (attribute, map) in [
            ("UserIdMap", &self.user_id_map),
            ("GroupIdMap", &self.group_id_map),
            ("GroupMemberIdMap", &self.group_member_id_map),
        ] {
            if !map.is_empty() && !is_attribute_name(map_attribute(map)) {
                return Err(f.error(
                    attribute,
                    format!(
                        "must name an attribute, optionally after an object class and a colon \
                         (\"uid\", \"*:cn\"), got \"{map}\""
                    ),
                ));
            }
        }
        for (attribute, dn) in [
            ("BaseDN", &self.base_dn),
            ("BindDN", &self.bind_dn),
            ("UserSuffix", &self.user_suffix),
            ("GroupSuffix", &self.group_suffix),
        ] {
            if !dn.is_empty() && (!dn.contains('=') || dn.contains('\0')) {
                return Err(f.error(
                    attribute,
                    format!(
                        "must be a distinguished name such as \"dc=example,dc=com\", got \"{dn}\""
                    ),
                ));
            }
        }
        // A bind with a name and no password is an "unauthenticated bind" (RFC 4513 5.1.2),
        // which many directories answer with success and anonymous rights: the broker would
        // search as nobody without saying so.
        if !self.bind_dn.is_empty() && self.bind_password.is_empty() {
            return Err(f.error(
                "BindPassword",
                "is required with BindDN: a bind with a name and no password is an \
                 unauthenticated bind, which a directory answers as anonymous",
            ));
        }
        if self.bind_dn.is_empty() && !self.bind_password.is_empty() {
            return Err(f.error("BindDN", "is required with BindPassword"));
        }
        if !self.enabled {
            return Ok(());
        }
        let required = [
            ("URL", &self.url),
            ("BaseDN", &self.base_dn),
            ("GroupSuffix", &self.group_suffix),
            // Amlen defaults these to "", which makes filters such as "(=alice)": required.
            ("UserIdMap", &self.user_id_map),
            ("GroupIdMap", &self.group_id_map),
            ("GroupMemberIdMap", &self.group_member_id_map),
        ];
        for (attribute, value) in required {
            if value.trim().is_empty() {
                return Err(f.error(attribute, "is required when Enabled is true"));
            }
        }
        if self.uses_tls()
            && self.check_server_cert == CheckServerCert::TrustStore
            && self.certificate.trim().is_empty()
        {
            return Err(f.error(
                "Certificate",
                "must name the PEM file of the CA that signed the directory's certificate when \
                 URL is ldaps:// and CheckServerCert is TrustStore (or set CheckServerCert to \
                 PublicTrust)",
            ));
        }
        Ok(())
    }
}

fn scheme_is(url: &str, scheme: &str) -> bool {
    url.get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
}

/// `*:cn` and `groupOfNames:cn` name `cn`; `cn` names itself (Amlen takes what follows the
/// first colon).
fn map_attribute(map: &str) -> &str {
    let map = map.trim();
    match map.split_once(':') {
        Some((_, attribute)) if !attribute.is_empty() => attribute,
        _ => map,
    }
}

/// An attribute description as RFC 4512 writes one (`descr` or a numeric OID): nothing that
/// could change the meaning of a search filter it is put into.
fn is_attribute_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => chars.all(|c| c.is_ascii_alphanumeric() || c == '-'),
        Some(c) if c.is_ascii_digit() => name
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Config;

    use super::*;

    fn parse(ldap: Value) -> Result<Config, ConfigError> {
        let mut doc: Value = serde_json::from_str(crate::DEFAULT_CONFIG).unwrap();
        doc["LDAP"] = ldap;
        Config::parse(&doc.to_string())
    }

    fn minimal() -> Value {
        json!({
            "URL": "ldap://127.0.0.1:389",
            "BaseDN": "dc=example,dc=com",
            "BindDN": "cn=broker,dc=example,dc=com",
            "BindPassword": "secret",
            "UserIdMap": "*:uid",
            "GroupSuffix": "ou=groups,dc=example,dc=com",
            "GroupIdMap": "*:cn",
            "GroupMemberIdMap": "member",
        })
    }

    fn error(edit: impl FnOnce(&mut Value)) -> String {
        let mut ldap = minimal();
        edit(&mut ldap);
        parse(ldap).unwrap_err().to_string()
    }

    /// Proves the defaults are those of a new Amlen server and the maps yield their attributes.
    #[test]
    fn defaults_are_amlens() {
        let ldap = parse(minimal()).unwrap().ldap.unwrap();
        assert!(ldap.enabled);
        assert!(ldap.ignore_case);
        assert!(ldap.enable_cache);
        assert!(!ldap.nested_group_search);
        assert_eq!(ldap.cache_timeout, 10);
        assert_eq!(ldap.group_cache_timeout, 300);
        assert_eq!(ldap.timeout, 30);
        assert_eq!(ldap.max_connections, 100);
        assert_eq!(ldap.check_server_cert, CheckServerCert::TrustStore);
        assert_eq!(ldap.user_attribute(), "uid");
        assert_eq!(ldap.group_attribute(), "cn");
        assert_eq!(ldap.member_attribute(), "member");
        assert!(!ldap.uses_tls());
    }

    #[test]
    fn no_ldap_object_is_none() {
        let config = Config::builtin();
        assert_eq!(config.ldap, None);
        let json = serde_json::to_value(&config).unwrap();
        assert!(json.get("LDAP").is_none());
    }

    /// Proves the bind password is never shown: the REST view and the debug print hold the
    /// mask, and the mask itself is refused as a password.
    #[test]
    fn the_bind_password_is_masked() {
        let config = parse(minimal()).unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["LDAP"]["BindPassword"], "XXXXXX");
        assert_eq!(json["LDAP"]["URL"], "ldap://127.0.0.1:389");
        assert_eq!(json["LDAP"]["CheckServerCert"], "TrustStore");
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("XXXXXX"), "{debug}");
        assert_eq!(config.ldap.unwrap().bind_password.expose(), "secret");
        let e = error(|l| l["BindPassword"] = "XXXXXX".into());
        assert!(
            e.starts_with("LDAP \"ldapconfig\", attribute BindPassword: is the mask"),
            "{e}"
        );
    }

    #[test]
    fn ranges_are_amlens_and_errors_name_the_attribute() {
        let cases = [
            ("Timeout", json!(61), "must be an integer from 1 to 60"),
            ("CacheTimeout", json!(0), "must be an integer from 1 to 60"),
            (
                "GroupCacheTimeout",
                json!(86_401),
                "must be an integer from 1 to 86400",
            ),
            (
                "MaxConnections",
                json!(101),
                "must be an integer from 1 to 100",
            ),
            (
                "IgnoreCase",
                json!("yes"),
                "must be true or false, got a string",
            ),
            (
                "CheckServerCert",
                json!("Sometimes"),
                "must be one of DisableVerify, TrustStore, PublicTrust, got \"Sometimes\"",
            ),
        ];
        for (attribute, value, message) in cases {
            let e = error(|l| l[attribute] = value);
            assert_eq!(
                e,
                format!("LDAP \"ldapconfig\", attribute {attribute}: {message}")
            );
        }
        let e = error(|l| l["Verify"] = true.into());
        assert_eq!(
            e,
            "LDAP \"ldapconfig\", attribute Verify: is not an attribute of this object"
        );
    }

    #[test]
    fn mistakes_are_refused_with_the_attribute() {
        type Edit = fn(&mut Value);
        let cases: [(Edit, &str); 9] = [
            (
                |l| l["URL"] = "http://ldap".into(),
                "URL: must start with ldap:// or ldaps://, got \"http://ldap\"",
            ),
            (
                |l| l["URL"] = "".into(),
                "URL: is required when Enabled is true",
            ),
            (
                |l| l["GroupSuffix"] = "".into(),
                "GroupSuffix: is required when Enabled is true",
            ),
            (
                |l| l["UserIdMap"] = "".into(),
                "UserIdMap: is required when Enabled is true",
            ),
            (
                |l| l["UserIdMap"] = "*:uid)(objectClass=*".into(),
                "UserIdMap: must name an attribute",
            ),
            (
                |l| l["BaseDN"] = "example.com".into(),
                "BaseDN: must be a distinguished name",
            ),
            (
                |l| l["BindPassword"] = "".into(),
                "BindPassword: is required with BindDN",
            ),
            (
                |l| {
                    l["BindDN"] = "".into();
                },
                "BindDN: is required with BindPassword",
            ),
            (
                |l| l["URL"] = "ldaps://ldap.example.com".into(),
                "Certificate: must name the PEM file",
            ),
        ];
        for (edit, expected) in cases {
            let e = error(edit);
            let expected = format!("LDAP \"ldapconfig\", attribute {expected}");
            assert!(e.starts_with(&expected), "{e}\nexpected: {expected}");
        }
    }

    /// Proves a disabled object may be incomplete (as Amlen ships one), and that ldaps with a
    /// CA file, or with the public CAs, is accepted, as is a list of URLs.
    #[test]
    fn disabled_incomplete_and_tls_variants_are_accepted() {
        let disabled = parse(json!({"Enabled": false})).unwrap().ldap.unwrap();
        assert!(!disabled.enabled);
        let mut ldap = minimal();
        ldap["URL"] = "ldaps://a.example.com:636, ldap://b.example.com".into();
        ldap["Certificate"] = "ldap-ca.pem".into();
        let config = parse(ldap.clone()).unwrap().ldap.unwrap();
        assert!(config.uses_tls());
        assert_eq!(
            config.urls().collect::<Vec<_>>(),
            ["ldaps://a.example.com:636", "ldap://b.example.com"]
        );
        ldap["Certificate"] = "".into();
        ldap["CheckServerCert"] = "PublicTrust".into();
        assert_eq!(
            parse(ldap).unwrap().ldap.unwrap().check_server_cert,
            CheckServerCert::PublicTrust
        );
    }

    #[test]
    fn attribute_names_are_descriptors_or_oids() {
        for good in ["uid", "cn", "sAMAccountName", "x-attr", "2.5.4.3"] {
            assert!(is_attribute_name(good), "{good}");
        }
        for bad in [
            "", "-uid", "u id", "uid=", "uid)", "2.5..3", "2.5.4.3x", "*",
        ] {
            assert!(!is_attribute_name(bad), "{bad}");
        }
        assert_eq!(map_attribute("*:cn"), "cn");
        assert_eq!(map_attribute("inetOrgPerson:uid"), "uid");
        assert_eq!(map_attribute("member"), "member");
    }
}
