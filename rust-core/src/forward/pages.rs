//! The responses the engine makes itself (the status table of DESIGN.md). Each carries an
//! [`EngineStatus`] extension so a host with substatus codes (IIS) can set them, and a host
//! without (the standalone host) can show them in a header.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::body::ResponseBody;

/// The header that carries IIS's status.substatus (e.g. `502.5`) on responses the engine made,
/// for hosts that speak plain HTTP, which has no substatus.
pub const STATUS_HEADER: header::HeaderName = header::HeaderName::from_static("x-ancm-status");

/// Marks a response the engine made, with IIS's status and substatus (e.g. 502 / 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStatus {
    /// The HTTP status.
    pub status: u16,
    /// IIS's substatus (0 when none).
    pub substatus: u16,
}

impl std::fmt::Display for EngineStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.substatus == 0 {
            write!(f, "{}", self.status)
        } else {
            write!(f, "{}.{}", self.status, self.substatus)
        }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(
    status: u16,
    substatus: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.extensions_mut()
        .insert(EngineStatus { status, substatus });
    r
}

fn html(title: &str, paragraphs: &[String], pre: Option<&str>) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body>\n<h1>{t}</h1>\n",
        t = html_escape(title)
    );
    for p in paragraphs {
        s.push_str("<p>");
        s.push_str(p);
        s.push_str("</p>\n");
    }
    if let Some(pre) = pre {
        s.push_str("<h2>Output of the process (first 30,000 characters)</h2>\n<pre>");
        s.push_str(&html_escape(pre));
        s.push_str("</pre>\n");
    }
    s.push_str("</body></html>\n");
    s
}

/// 502.5: the app could not be started. Shows the cause, the captured output and what to
/// check; a plain 502 when disableStartUpErrorPage is set.
pub fn startup_failure(cause: &str, output: &str, disable_page: bool) -> Response<ResponseBody> {
    if disable_page {
        return page(
            502,
            5,
            "text/html; charset=utf-8",
            html("502 Bad Gateway", &[], None),
        );
    }
    let checks = [
        "processPath and arguments in web.config point to the app, and the app runs when started by hand from the site root",
        "the app listens on 127.0.0.1 at the port given in ASPNETCORE_PORT",
        "the app's output below, or the stdout log (stdoutLogEnabled=\"true\") for what it said",
    ];
    let mut paras = vec![format!("<b>Cause:</b> {}", html_escape(cause))];
    paras.push(format!(
        "Check that:<ul>{}</ul>",
        checks
            .iter()
            .map(|c| format!("<li>{}</li>", html_escape(c)))
            .collect::<String>()
    ));
    let pre = (!output.is_empty()).then_some(output);
    page(
        502,
        5,
        "text/html; charset=utf-8",
        html(
            "HTTP Error 502.5 - ANCM Out-Of-Process Startup Failure",
            &paras,
            pre,
        ),
    )
}

/// 502 without a page: a configuration the request cannot be forwarded with (e.g. a bad
/// `ASPNETCORE_PORT`), named in the log rather than to the client.
pub fn plain_bad_gateway() -> Response<ResponseBody> {
    page(
        502,
        0,
        "text/html; charset=utf-8",
        html("502 Bad Gateway", &[], None),
    )
}

/// 502.3: forwarding failed before the response head was sent.
pub fn forward_failure(cause: &str) -> Response<ResponseBody> {
    page(
        502,
        3,
        "text/html; charset=utf-8",
        html(
            "HTTP Error 502.3 - Bad Gateway",
            &[format!(
                "The application did not answer this request: {}",
                html_escape(cause)
            )],
            None,
        ),
    )
}

/// 400: the request's framing is ambiguous (request smuggling shapes); it is never forwarded,
/// and the connection is closed since its next request cannot be found reliably.
pub fn bad_request(rule: &str) -> Response<ResponseBody> {
    refusal_page(400, rule)
}

/// A request head the admission rules refuse (`forward::admission`: 400, 414, 431 or 501),
/// never forwarded; the connection is closed after it, as HTTP.sys does after refusing a head
/// (what follows may be the rest of a message nobody framed).
pub fn refused(r: super::admission::Refusal) -> Response<ResponseBody> {
    refusal_page(r.status, r.cause)
}

fn refusal_page(status: u16, rule: &str) -> Response<ResponseBody> {
    let title = match StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    };
    let mut r = page(
        status,
        0,
        "text/html; charset=utf-8",
        html(&title, &[html_escape(rule)], None),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// 503 while app_offline.htm is present: its bytes, as text/html.
pub fn app_offline(contents: Bytes) -> Response<ResponseBody> {
    page(503, 0, "text/html", contents)
}

/// 503 while the application is shutting down.
pub fn shutting_down() -> Response<ResponseBody> {
    page(
        503,
        0,
        "text/html; charset=utf-8",
        html(
            "503 Service Unavailable",
            &["The application is shutting down.".to_owned()],
            None,
        ),
    )
}

/// 500: the configuration is invalid; names the attribute and the rule it broke.
pub fn config_error(message: &str) -> Response<ResponseBody> {
    page(
        500,
        0,
        "text/html; charset=utf-8",
        html(
            "HTTP Error 500 - ANCM configuration error",
            &[html_escape(message)],
            None,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: Response<ResponseBody>) -> String {
        match r.into_body() {
            ResponseBody::Full(Some(b)) => String::from_utf8(b.to_vec()).unwrap(),
            _ => String::new(),
        }
    }

    #[test]
    fn startup_failure_escapes_everything_from_the_child() {
        let r = startup_failure(
            "process 7 exited with code 1",
            "<script>alert(1)</script> & \"x\"",
            false,
        );
        assert_eq!(r.status(), 502);
        assert_eq!(
            r.extensions().get::<EngineStatus>(),
            Some(&EngineStatus {
                status: 502,
                substatus: 5
            })
        );
        let b = body(r);
        assert!(b.contains("ANCM Out-Of-Process Startup Failure"));
        assert!(b.contains("exited with code 1"));
        assert!(b.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
        assert!(!b.contains("<script>"));
    }

    /// Every page goes through `page`, so every engine-made response carries `EngineStatus`,
    /// which the C ABI reports as `from_engine` (the 400 and the 503s have substatus 0).
    #[test]
    fn every_page_is_marked_as_the_engines() {
        let pages = [
            startup_failure("c", "o", false),
            startup_failure("c", "o", true),
            plain_bad_gateway(),
            forward_failure("c"),
            bad_request("rule"),
            app_offline(Bytes::from_static(b"x")),
            shutting_down(),
            config_error("m"),
        ];
        for p in pages {
            let e = p.extensions().get::<EngineStatus>().copied();
            assert_eq!(e.map(|e| e.status), Some(p.status().as_u16()));
        }
    }

    #[test]
    fn refusals_name_their_rule_and_close() {
        use crate::forward::admission::Refusal;
        for (status, title) in [
            (400, "400 Bad Request"),
            (414, "414 URI Too Long"),
            (431, "431 Request Header Fields Too Large"),
            (501, "501 Not Implemented"),
        ] {
            let r = refused(Refusal {
                status,
                cause: "the <rule>",
            });
            assert_eq!(r.status(), status);
            assert_eq!(r.headers()[header::CONNECTION], "close");
            assert_eq!(
                r.extensions().get::<EngineStatus>(),
                Some(&EngineStatus {
                    status,
                    substatus: 0
                })
            );
            let b = body(r);
            assert!(b.contains(title) && b.contains("the &lt;rule&gt;"), "{b}");
        }
    }

    #[test]
    fn disabled_page_is_plain() {
        let b = body(startup_failure("secret cause", "secret output", true));
        assert!(!b.contains("secret"));
    }

    #[test]
    fn substatus_display() {
        assert_eq!(
            EngineStatus {
                status: 502,
                substatus: 3
            }
            .to_string(),
            "502.3"
        );
        assert_eq!(
            EngineStatus {
                status: 503,
                substatus: 0
            }
            .to_string(),
            "503"
        );
    }
}
