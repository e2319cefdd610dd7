//! Token profiles: how a SecurityProfile checks a CONNECT whose password is a token.
//!
//! - [`OAuthProfile`] is MessageSight's (Eclipse Amlen's schema, `serverConfigSchema.json`):
//!   the token is sent to an authorization server's `ResourceURL`, and the user id and groups
//!   come from its answer or from `UserInfoURL`'s.
//! - [`JwtProfile`] is ironsight's addition: a signed JWT checked against a local key set
//!   (a JWKS file), so that a connect needs no round trip to anyone.
//!
//! What ironsight does differently from MessageSight, and why, is said at each attribute.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use crate::fields::Fields;
use crate::ConfigError;

/// How the token travels to the authorization server (Amlen's `TokenSendMethod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TokenSendMethod {
    /// `GET ResourceURL?<AuthKey>=<token>`. Amlen's default; note that URLs (and so tokens)
    /// end up in web server logs.
    #[serde(rename = "URLParam")]
    UrlParam,
    /// `GET ResourceURL` with `Authorization: Bearer <token>` (RFC 6750).
    #[serde(rename = "HTTPHeader")]
    HttpHeader,
    /// `POST ResourceURL` with the form body `<AuthKey>=<token>` (as RFC 7662 introspection).
    #[serde(rename = "HTTPPost")]
    HttpPost,
}

/// How the authorization server's certificate is checked (Amlen's `CheckServerCert`).
/// Amlen's `DisableVerify` (its default) is refused: a bearer token sent to whoever answers
/// is a token given away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CheckServerCert {
    /// Only the CA certificates in `KeyFileName`.
    TrustStore,
    /// Mozilla's public roots (compiled in), and `KeyFileName`'s certificates if given.
    PublicTrust,
}

/// MessageSight's OAuthProfile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OAuthProfile {
    /// Where a token is checked: 2xx accepts it (unless a JSON answer says `"active": false`),
    /// 400, 401 and 403 refuse it, anything else means the server is unavailable.
    #[serde(rename = "ResourceURL")]
    pub resource_url: String,
    /// HTTP Basic credentials of the broker at the authorization server (as RFC 7662 asks).
    pub user_name: String,
    #[serde(skip_serializing)]
    pub user_password: String,
    /// A PEM file of CA certificates the authorization server's certificate chains to.
    pub key_file_name: String,
    /// The name of the URL parameter or form field that carries the token.
    pub auth_key: String,
    /// Where the user id and groups are read; empty: from ResourceURL's answer.
    #[serde(rename = "UserInfoURL")]
    pub user_info_url: String,
    /// The answer's member that holds the user id. Amlen lets it be empty; ironsight requires
    /// it: a token that names no user would let its holder claim any user name, and the
    /// policies' `${UserID}` would mean nothing.
    pub user_info_key: String,
    /// The answer's member that holds the groups (a string split at `GroupDelimiter`, or an
    /// array of strings); empty for none.
    pub group_info_key: String,
    pub token_send_method: TokenSendMethod,
    pub check_server_cert: CheckServerCert,
    pub group_delimiter: char,
    /// Seconds one check (both requests) may take; then the client is told the server is
    /// unavailable (ironsight's addition; the endpoint's authentication timeout still bounds
    /// the whole CONNECT).
    pub timeout: u32,
    /// Seconds a verified token is remembered, never past its `exp`; 0: ask every time
    /// (ironsight's addition: a reconnect storm of one app's users must not become a storm at
    /// the authorization server).
    pub cache_timeout: u32,
}

/// A locally verified JWT profile (ironsight's addition, named in MessageSight's style).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JwtProfile {
    /// The JWKS file (RFC 7517) of the public keys tokens are signed with; re-read on reload.
    pub key_file_name: String,
    /// The `iss` a token must carry (required: a key set may sign for more than one issuer).
    pub issuer: String,
    /// A value the token's `aud` must hold (required: a token minted for another service of
    /// the same identity provider must not open the broker).
    pub audience: String,
    /// The claim that is the user id.
    #[serde(rename = "UserIDClaim")]
    pub user_id_claim: String,
    /// The claim that lists the groups (an array of strings); empty for none.
    #[serde(rename = "GroupIDClaim")]
    pub group_id_claim: String,
    /// Seconds of clock difference forgiven on `exp` and `nbf`.
    pub clock_leeway: u32,
}

/// The longest URL, as Amlen's schema allows.
const URL_LEN_MAX: usize = 2048;

impl OAuthProfile {
    pub(crate) fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("OAuthProfile", name, value)?;
        let send = match f.choice(
            "TokenSendMethod",
            "URLParam",
            &["URLParam", "HTTPHeader", "HTTPPost"],
        )? {
            "HTTPHeader" => TokenSendMethod::HttpHeader,
            "HTTPPost" => TokenSendMethod::HttpPost,
            _ => TokenSendMethod::UrlParam,
        };
        let key_file_name = f.string("KeyFileName", "")?;
        let default_check = if key_file_name.is_empty() {
            "PublicTrust"
        } else {
            "TrustStore"
        };
        let check = match f.choice(
            "CheckServerCert",
            default_check,
            &["TrustStore", "PublicTrust", "DisableVerify"],
        )? {
            "DisableVerify" => {
                return Err(f.error(
                    "CheckServerCert",
                    "DisableVerify is refused: tokens would go to whoever answers; use \
                     TrustStore with KeyFileName, or PublicTrust",
                ))
            }
            "TrustStore" => CheckServerCert::TrustStore,
            _ => CheckServerCert::PublicTrust,
        };
        let delimiter = f.string("GroupDelimiter", ",")?;
        let group_delimiter = match delimiter.chars().collect::<Vec<_>>()[..] {
            [c] if !c.is_control() => c,
            _ => {
                return Err(f.error(
                    "GroupDelimiter",
                    "must be one character, not a control character",
                ))
            }
        };
        let profile = OAuthProfile {
            resource_url: f.required_string("ResourceURL")?,
            user_name: f.string("UserName", "")?,
            user_password: f.string("UserPassword", "")?,
            key_file_name,
            auth_key: f.string("AuthKey", "access_token")?,
            user_info_url: f.string("UserInfoURL", "")?,
            user_info_key: f.required_string("UserInfoKey")?,
            group_info_key: f.string("GroupInfoKey", "")?,
            token_send_method: send,
            check_server_cert: check,
            group_delimiter,
            timeout: f
                .integer("Timeout", Some(5), 1, 60)?
                .expect("has a default") as u32,
            cache_timeout: f
                .integer("CacheTimeout", Some(60), 0, 3600)?
                .expect("has a default") as u32,
        };
        check_url(&f, "ResourceURL", &profile.resource_url)?;
        if !profile.user_info_url.is_empty() {
            check_url(&f, "UserInfoURL", &profile.user_info_url)?;
        }
        for (attribute, key) in [
            ("AuthKey", &profile.auth_key),
            ("UserInfoKey", &profile.user_info_key),
            ("GroupInfoKey", &profile.group_info_key),
        ] {
            check_key_name(&f, attribute, key)?;
        }
        if profile.auth_key.is_empty() {
            return Err(f.error("AuthKey", "must not be empty"));
        }
        if !profile.user_password.is_empty() && profile.user_name.is_empty() {
            return Err(f.error("UserName", "is required when UserPassword is set"));
        }
        if !profile.user_name.is_empty() && send == TokenSendMethod::HttpHeader {
            return Err(f.error(
                "UserName",
                "cannot be used with TokenSendMethod HTTPHeader: the token and the broker's \
                 credentials would both need the Authorization header; use HTTPPost",
            ));
        }
        if check == CheckServerCert::TrustStore && profile.key_file_name.is_empty() {
            return Err(f.error(
                "KeyFileName",
                "is required with CheckServerCert TrustStore: the CA certificates the \
                 authorization server's certificate must chain to",
            ));
        }
        f.finish()?;
        Ok(profile)
    }
}

/// Amlen's rule for key names: no leading or trailing space, no control characters or comma.
fn check_key_name(f: &Fields, attribute: &str, key: &str) -> Result<(), ConfigError> {
    if key.trim() != key || key.chars().any(|c| c.is_control() || c == ',') {
        return Err(f.error(
            attribute,
            "must have no leading or trailing space, no control characters and no comma",
        ));
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host and no credentials in it. Plain `http://` is
/// allowed only to a loopback address (a sidecar on the same machine): elsewhere it would
/// carry bearer tokens in clear over the network, for anyone on the path to replay.
fn check_url(f: &Fields, attribute: &str, url: &str) -> Result<(), ConfigError> {
    if url.len() > URL_LEN_MAX {
        return Err(f.error(attribute, format!("is longer than {URL_LEN_MAX} bytes")));
    }
    let (plain, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else {
        return Err(f.error(
            attribute,
            format!("must start with https:// or http://, got \"{url}\""),
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(f.error(
            attribute,
            "must not hold credentials; use UserName and UserPassword",
        ));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(f.error(attribute, format!("is not a URL with a host: \"{url}\"")));
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if plain && !loopback {
        return Err(f.error(
            attribute,
            "http:// would send tokens in clear; use https://, or http:// to a loopback \
             address only",
        ));
    }
    Ok(())
}

impl JwtProfile {
    pub(crate) fn parse(name: &str, value: &Value) -> Result<Self, ConfigError> {
        let mut f = Fields::new("JWTProfile", name, value)?;
        let profile = JwtProfile {
            key_file_name: f.required_string("KeyFileName")?,
            issuer: f.required_string("Issuer")?,
            audience: f.required_string("Audience")?,
            user_id_claim: f.string("UserIDClaim", "sub")?,
            group_id_claim: f.string("GroupIDClaim", "groups")?,
            clock_leeway: f
                .integer("ClockLeeway", Some(30), 0, 300)?
                .expect("has a default") as u32,
        };
        if profile.user_id_claim.is_empty() {
            return Err(f.error("UserIDClaim", "must name a claim"));
        }
        f.finish()?;
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn oauth(attrs: Value) -> Result<OAuthProfile, String> {
        OAuthProfile::parse("Auth", &attrs).map_err(|e| e.to_string())
    }

    fn base() -> Value {
        json!({"ResourceURL": "https://auth.example.com/introspect", "UserInfoKey": "sub"})
    }

    fn with(mut v: Value, attrs: Value) -> Value {
        for (k, a) in attrs.as_object().unwrap() {
            v[k] = a.clone();
        }
        v
    }

    /// Proves Amlen's defaults: token as the `access_token` URL parameter, groups split at
    /// commas; and ironsight's: public roots without a KeyFileName, TrustStore with one.
    #[test]
    fn oauth_defaults_follow_amlen() {
        let p = oauth(base()).unwrap();
        assert_eq!(p.auth_key, "access_token");
        assert_eq!(p.token_send_method, TokenSendMethod::UrlParam);
        assert_eq!(p.group_delimiter, ',');
        assert_eq!(p.check_server_cert, CheckServerCert::PublicTrust);
        assert_eq!((p.timeout, p.cache_timeout), (5, 60));
        let p = oauth(with(base(), json!({"KeyFileName": "ca.pem"}))).unwrap();
        assert_eq!(p.check_server_cert, CheckServerCert::TrustStore);
        let p = oauth(with(
            base(),
            json!({"TokenSendMethod": "HTTPPost", "GroupDelimiter": " ",
                   "ResourceURL": "http://127.0.0.1:8080/x", "UserName": "broker",
                   "UserPassword": "s3cret"}),
        ))
        .unwrap();
        assert_eq!(p.token_send_method, TokenSendMethod::HttpPost);
        assert_eq!(p.group_delimiter, ' ');
        let shown = serde_json::to_value(&p).unwrap();
        assert!(shown.get("UserPassword").is_none(), "{shown}");
        assert_eq!(shown["TokenSendMethod"], "HTTPPost");
    }

    #[test]
    fn oauth_mistakes_name_the_attribute() {
        let cases = [
            (json!({"ResourceURL": "ftp://auth.example.com/"}),
             "OAuthProfile \"Auth\", attribute ResourceURL: must start with https:// or http://, got \"ftp://auth.example.com/\""),
            (json!({"ResourceURL": "http://auth.example.com/"}),
             "OAuthProfile \"Auth\", attribute ResourceURL: http:// would send tokens in clear; use https://, or http:// to a loopback address only"),
            (json!({"UserInfoURL": "https://u:p@auth.example.com/"}),
             "OAuthProfile \"Auth\", attribute UserInfoURL: must not hold credentials; use UserName and UserPassword"),
            (json!({"ResourceURL": "https:///path"}),
             "OAuthProfile \"Auth\", attribute ResourceURL: is not a URL with a host: \"https:///path\""),
            (json!({"ResourceURL": ""}),
             "OAuthProfile \"Auth\", attribute ResourceURL: is required"),
            (json!({"UserInfoKey": ""}),
             "OAuthProfile \"Auth\", attribute UserInfoKey: is required"),
            (json!({"CheckServerCert": "DisableVerify"}),
             "OAuthProfile \"Auth\", attribute CheckServerCert: DisableVerify is refused: tokens would go to whoever answers; use TrustStore with KeyFileName, or PublicTrust"),
            (json!({"CheckServerCert": "TrustStore"}),
             "OAuthProfile \"Auth\", attribute KeyFileName: is required with CheckServerCert TrustStore: the CA certificates the authorization server's certificate must chain to"),
            (json!({"TokenSendMethod": "Carrier pigeon"}),
             "OAuthProfile \"Auth\", attribute TokenSendMethod: must be one of URLParam, HTTPHeader, HTTPPost, got \"Carrier pigeon\""),
            (json!({"UserPassword": "x"}),
             "OAuthProfile \"Auth\", attribute UserName: is required when UserPassword is set"),
            (json!({"UserName": "broker", "TokenSendMethod": "HTTPHeader"}),
             "OAuthProfile \"Auth\", attribute UserName: cannot be used with TokenSendMethod HTTPHeader: the token and the broker's credentials would both need the Authorization header; use HTTPPost"),
            (json!({"GroupDelimiter": ",;"}),
             "OAuthProfile \"Auth\", attribute GroupDelimiter: must be one character, not a control character"),
            (json!({"GroupInfoKey": "a,b"}),
             "OAuthProfile \"Auth\", attribute GroupInfoKey: must have no leading or trailing space, no control characters and no comma"),
            (json!({"Timeout": 0}),
             "OAuthProfile \"Auth\", attribute Timeout: must be an integer from 1 to 60"),
        ];
        for (attrs, expected) in cases {
            assert_eq!(oauth(with(base(), attrs)).unwrap_err(), expected);
        }
    }

    #[test]
    fn jwt_profile_requires_issuer_audience_and_keys() {
        let ok = json!({"KeyFileName": "jwks.json", "Issuer": "https://id.example.com",
                        "Audience": "mqtt"});
        let p = JwtProfile::parse("Jwt", &ok).unwrap();
        assert_eq!(p.user_id_claim, "sub");
        assert_eq!(p.group_id_claim, "groups");
        assert_eq!(p.clock_leeway, 30);
        for (missing, expected) in [
            (
                "KeyFileName",
                "JWTProfile \"Jwt\", attribute KeyFileName: is required",
            ),
            (
                "Issuer",
                "JWTProfile \"Jwt\", attribute Issuer: is required",
            ),
            (
                "Audience",
                "JWTProfile \"Jwt\", attribute Audience: is required",
            ),
        ] {
            let mut attrs = ok.clone();
            attrs.as_object_mut().unwrap().remove(missing);
            let e = JwtProfile::parse("Jwt", &attrs).unwrap_err().to_string();
            assert_eq!(e, expected);
        }
        let e = JwtProfile::parse("Jwt", &with(ok.clone(), json!({"ClockLeeway": 3600})))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "JWTProfile \"Jwt\", attribute ClockLeeway: must be an integer from 0 to 300"
        );
        let e = JwtProfile::parse("Jwt", &with(ok, json!({"Algorithm": "HS256"})))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "JWTProfile \"Jwt\", attribute Algorithm: is not an attribute of this object"
        );
    }
}
