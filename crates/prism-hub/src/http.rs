//! The HTTP requests the client makes, and how the hub's answers map to [`HubProblem`]s.

use std::time::Duration;

use prism_core::HubProblem;
use ureq::http::{HeaderMap, Response};

/// Percent-encodes one URL path segment (RFC 3986 unreserved characters pass through).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a `/`-separated path, keeping the separators.
pub fn encode_path(p: &str) -> String {
    p.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// `scheme://host[:port]` of an absolute URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// A header as text (absent or not UTF-8: `None`).
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// An agent that reports HTTP errors as responses and follows no redirect by itself.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .user_agent(concat!("prism-hub/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// One request: `HEAD` or `GET`, the token sent only to the hub itself (never to the storage a
/// download is redirected to), optionally from byte `from` on.
pub struct Request<'a> {
    pub agent: &'a ureq::Agent,
    pub endpoint: &'a str,
    pub token: Option<&'a str>,
}

/// What a request ended in.
pub struct Answer {
    /// The last response (a redirect to another host when `follow_absolute` was false).
    pub response: Response<ureq::Body>,
    /// The URL that gave it.
    pub url: String,
}

impl Request<'_> {
    /// Sends `method` to `url`, following relative redirects (a renamed repository) and, when
    /// `follow_absolute`, redirects to other hosts (the storage serving large files).
    pub fn send(
        &self,
        head: bool,
        url: &str,
        from: Option<u64>,
        follow_absolute: bool,
    ) -> Result<Answer, HubProblem> {
        let mut url = url.to_string();
        for _ in 0..10 {
            let mut req = if head {
                self.agent.head(&url)
            } else {
                self.agent.get(&url)
            };
            if let Some(t) = self.token
                && origin(&url) == origin(self.endpoint)
            {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            if let Some(n) = from {
                req = req.header("Range", format!("bytes={n}-"));
            }
            let response = req.call().map_err(connection)?;
            if response.status().is_redirection()
                && let Some(loc) = header(response.headers(), "location")
            {
                if loc.starts_with('/') {
                    url = format!("{}{loc}", origin(&url));
                    continue;
                }
                if follow_absolute {
                    url = loc.to_string();
                    continue;
                }
            }
            return Ok(Answer { response, url });
        }
        Err(HubProblem::BadAnswer("more than 10 redirects".into()))
    }
}

/// A transport failure (no answer, or a broken one).
pub fn connection(e: ureq::Error) -> HubProblem {
    HubProblem::Connection(e.to_string())
}

/// The problem an error status stands for, from the hub's `X-Error-Code` and the status.
pub fn problem(response: &Response<ureq::Body>, about_file: bool) -> HubProblem {
    let h = response.headers();
    let message = header(h, "x-error-message").unwrap_or_default().to_string();
    let status = response.status().as_u16();
    match header(h, "x-error-code") {
        Some("RepoNotFound") => return HubProblem::RepoNotFound,
        Some("RevisionNotFound") => return HubProblem::RevisionNotFound,
        Some("EntryNotFound") => return HubProblem::EntryNotFound,
        Some("GatedRepo") => return HubProblem::Forbidden(message),
        _ => {}
    }
    match status {
        401 => HubProblem::Unauthorized,
        403 => HubProblem::Forbidden(message),
        404 if about_file => HubProblem::EntryNotFound,
        404 => HubProblem::RepoNotFound,
        _ => HubProblem::Http { status, message },
    }
}
