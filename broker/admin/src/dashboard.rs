//! The web dashboard: one page, its scripts and its style sheet (`broker/admin/dashboard/`),
//! written here and compiled into the binary, served by the admin endpoint at `/dashboard/`.
//! The page draws its charts itself (a canvas each, `charts.js`) from what it reads from the
//! API once a second, like any other client of `/ima/v1/monitor/...` and `/metrics`.
//!
//! # Authentication: a login form, not the browser's basic-auth prompt
//! The files hold no data about the broker, so they are served to anyone (like a login page);
//! everything the page shows comes from API calls, each of which is authenticated and checked
//! against the ConfigurationPolicies like any other request. The page asks for the user and
//! password in a form of its own, keeps the `Authorization` header it makes from them in the
//! tab's sessionStorage (gone when the tab closes; "Log out" removes it) and sends it with each
//! call, made with `credentials: "omit"`.
//!
//! Why not answer the page itself with 401 and `WWW-Authenticate`, and let the browser ask?
//! The browser would then remember the credentials and attach them to every request to this
//! origin, including the POST a form on any other web site can make to
//! `/ima/v1/service/stop` or `/ima/v1/configuration` (the API reads a JSON body whatever its
//! Content-Type, so no CORS preflight stops it): cross-site request forgery with the
//! administrator's rights, and credentials no page can make the browser forget. Requests made
//! with `credentials: "omit"` neither send remembered credentials nor make the browser prompt
//! on a 401, so the browser never holds them.
//!
//! What guards the credentials in sessionStorage is that no other script runs in the page:
//! the Content-Security-Policy ([`CONTENT_SECURITY_POLICY`]) allows only these files' scripts
//! (no inline script, no `eval`, nothing from elsewhere), and the page writes what the broker
//! reports (client ids, topics: peer-chosen text) as text, never as HTML.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// Where the dashboard is.
pub const PATH: &str = "/dashboard/";

/// Scripts, styles, images and API calls from this origin only; no inline script or style, no
/// forms sent anywhere (the login form is read by the script), not framed by another page (no
/// clickjacking of its Close buttons), no `<base>` to redirect its relative links.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The page's files: path under `/dashboard/`, media type, contents.
const FILES: [(&str, &str, &str); 5] = [
    (
        "",
        "text/html; charset=utf-8",
        include_str!("../dashboard/index.html"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/dashboard.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/charts.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/dashboard.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../dashboard/icon.svg"),
    ),
];

/// The dashboard's routes: its files, and `/` and `/dashboard` leading to it.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route("/", get(|| async { Redirect::to(PATH) }))
        .route("/dashboard", get(|| async { Redirect::to(PATH) }));
    for (name, media_type, body) in FILES {
        router = router.route(
            &format!("{PATH}{name}"),
            get(move || async move { file(media_type, body) }),
        );
    }
    router
}

fn file(media_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, media_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        // The files change only with the binary; asked again each time (they are small), so
        // that a browser never runs an old script against a new broker.
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves every file served beside the page is named by the page or its script (a
    /// renamed file would leave the page without it, which a browser reports only in its
    /// console), that the page loads one script, its own, and that nothing in the files would
    /// need the policy to allow inline code.
    #[test]
    fn the_page_loads_only_its_own_files() {
        let (page, script) = (FILES[0].2, FILES[1].2);
        for (name, _, _) in &FILES[1..] {
            let quoted = format!("\"{PATH}{name}\"");
            assert!(page.contains(&quoted) || script.contains(&quoted), "{name}");
        }
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<script type=\"module\" src=\"/dashboard/dashboard.js\">"));
        for (name, _, body) in FILES {
            for inline in [
                "style=",
                "onclick",
                "onload",
                "onsubmit",
                "javascript:",
                "eval(",
            ] {
                assert!(!body.contains(inline), "{name} has {inline}");
            }
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
