//! The one grammar for the URL paths of a model server (`endpoints.chat`,
//! `endpoints.health`, the proxy's `health_check_path`, ...) and for
//! endpoint URLs (`target.api_endpoint.url`), checked at their config line.
//!
//! A path reaches a curl command line, the HAProxy configuration (one
//! directive per line, `#` starts a comment, `'` and `"` quote) and the
//! harness's run config (JSON). So it is `/` followed by RFC 3986 path
//! characters only: letters, digits, `-._~!$&()*+,;=:@/` and `%XX`
//! escapes; anything else (spaces, newlines, quotes, `#`, `?`, `\`,
//! non-ASCII) is written percent-encoded. A URL is `http://` or
//! `https://`, a host, and RFC 3986 characters only.

use std::fmt;

/// A checked URL path: starts with `/`, RFC 3986 path characters only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UrlPath(String);

impl UrlPath {
    /// The path, or why it is not one.
    pub fn new(path: &str) -> Result<UrlPath, String> {
        check_path(path).map(|()| UrlPath(path.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UrlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `-._~` (unreserved besides letters and digits) and the sub-delimiters
/// `!$&()*+,;=` with `:@` (RFC 3986 `pchar`), except `'`, which quotes in
/// HAProxy's configuration.
const PATH_PUNCT: &str = "-._~!$&()*+,;=:@";

fn pct_ok(s: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex: String = chars.by_ref().take(2).collect();
            if hex.len() != 2 || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                return Err("`%` must start a percent-escape of two hex digits (`%20`)".into());
            }
        } else if !allowed(c) {
            return Err(format!("{} is not allowed (percent-encode it)", describe(c)));
        }
    }
    Ok(())
}

fn describe(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        ' ' => "a space".into(),
        c if c.is_control() || !c.is_ascii() => format!("U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

fn shown(s: &str) -> String {
    let short: String = s.chars().take(80).collect();
    let more = if s.chars().count() > 80 { "..." } else { "" };
    format!("{}{more}", short.escape_debug())
}

/// Checks a URL path.
pub fn check_path(path: &str) -> Result<(), String> {
    let why = if !path.starts_with('/') {
        Err("it must start with `/`".to_owned())
    } else {
        pct_ok(path, |c| c.is_ascii_alphanumeric() || c == '/' || PATH_PUNCT.contains(c))
    };
    why.map_err(|w| {
        format!(
            "`{}` is not a URL path: {w}; a path is `/` then letters, digits, `{PATH_PUNCT}/` and `%XX` escapes",
            shown(path)
        )
    })
}

/// Checks an endpoint URL: `http(s)://host[:port][/path][?query]`, RFC
/// 3986 characters only (no whitespace, control characters, quotes,
/// backslashes or braces).
pub fn check_url(url: &str) -> Result<(), String> {
    let fail = |w: String| Err(format!("`{}` is not an http(s) URL: {w}", shown(url)));
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return fail("it must start with `http://` or `https://`".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, _)| h).unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return fail("it has no host".into());
    }
    if let Err(w) = pct_ok(rest, |c| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=".contains(c)) {
        return fail(w);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["/", "/health", "/v1/chat/completions", "/v1/health/ready", "/a%20b", "/x:y@z;p=1,2+3~_.-!$&()*"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "health",
            "/a b",
            "/a\nb",
            "/a\r",
            "/a#b",
            "/a?b",
            "/a'b",
            "/a\"b",
            "/a\\b",
            "/a%2",
            "/a%zz",
            "/é",
            "/a{b}",
            "/\u{200b}",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        let e = check_path("/v1/health\n  server evil").unwrap_err();
        assert!(e.contains("a newline") && e.contains("\\n"), "{e}");
    }

    #[test]
    fn urls() {
        for ok in [
            "http://h:8000/v1/chat/completions",
            "https://api.example.com/v1/completions?x=1&y='a'",
            "http://[::1]:8000/v1",
            "http://user@h/",
            "https://h",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "h:8000/v1",
            "ftp://h/",
            "http:///v1",
            "http://h/v1 x",
            "http://h/v1\n",
            "http://h/\"x",
            "http://h/\\",
            "http://h/{x}",
            "http://h/é",
        ] {
            assert!(check_url(bad).is_err(), "{bad:?}");
        }
    }
}
