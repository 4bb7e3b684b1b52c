//! EMQX 4.x `emqx_auth_http`: authentication, superuser and ACL requests to
//! a web service, configured by an `emqx_auth_http.conf` read unchanged.
//!
//! Both forms of the request keys are read: 4.0–4.2's
//! `auth.http.auth_req = URL` (with `auth.http.header.<Name>` for every
//! request and `auth.http.request.timeout`) and 4.3's
//! `auth.http.auth_req.url = URL` (with `auth.http.auth_req.headers.<name>`
//! and `auth.http.timeout`); likewise `super_req` and `acl_req`, each with
//! `.method` (get, post, put) and `.params` (`k=v,...` with the
//! placeholders `%u %c %a %r %P %C %d %A %t %m`). GET sends the params as
//! the query string; POST and PUT as a form or a JSON object, as the
//! request's content-type says (form by default).
//!
//! Answers: 2xx allows, unless the body is `ignore` (then the next source
//! decides); 4xx denies; anything else (5xx, timeout, no connection, an
//! answer that is not HTTP or larger than [`MAX_ANSWER`]) is a failure:
//! logged (rate-limited), counted ([`crate::metrics`]), and it denies.
//! Plain `http://` only.
//!
//! Timeouts: `auth.http.timeout` (4.0-4.2: `auth.http.request.timeout`)
//! bounds a whole request, waiting for a connection included;
//! `auth.http.connect_timeout` bounds opening a connection (TCP and the
//! HTTP/1.1 handshake) within that. At most `auth.http.pool_size`
//! requests are in flight at once, each on a connection of its own that
//! is kept for the next; more wait for one, as EMQX's pool does, so a slow
//! service never gets more than that many connections from Herald.
//!
//! Errors in the file read `file:line: key: problem`.

use crate::metrics::{Failure, Metrics, Request as Kind};
use bytes::Bytes;
use herald_broker::hooks::{AclAction, ClientInfo};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Largest answer body read; a larger one is a failure (the service is
/// not what the conf says it is).
pub const MAX_ANSWER: usize = 64 * 1024;

/// What the service answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVerdict {
    /// 2xx.
    Allow,
    /// 2xx with the body `ignore`.
    Ignore,
    /// 4xx.
    Deny,
    /// 5xx, other codes, timeout, connection failure.
    Failed,
}

/// One of `auth_req`, `super_req`, `acl_req`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `host:port` to connect to.
    pub authority: String,
    /// Path (and query) of the URL.
    pub path: String,
    /// GET, POST or PUT.
    pub method: hyper::Method,
    /// `(name, value with placeholders)`.
    pub params: Vec<(String, String)>,
    /// Extra headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Whether the body is JSON (content-type application/json).
    pub json: bool,
}

/// The HTTP source.
pub struct HttpAuth {
    auth: Option<Request>,
    superuser: Option<Request>,
    acl: Option<Request>,
    timeout: Duration,
    connect_timeout: Duration,
    pool_size: usize,
    /// One per request in flight: at most `pool_size`.
    permits: Semaphore,
    pool: Mutex<BTreeMap<String, Vec<SendRequest<Full<Bytes>>>>>,
    metrics: Arc<Metrics>,
    /// Last failure log, seconds since the epoch (rate limit).
    logged: AtomicU64,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field("requests", &self.describe())
            .finish_non_exhaustive()
    }
}

/// Values the placeholders take.
struct Values<'a> {
    client: &'a ClientInfo,
    password: Option<&'a [u8]>,
    access: Option<AclAction>,
    topic: Option<&'a str>,
}

impl Values<'_> {
    fn expand(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut chars = template.chars();
        while let Some(ch) = chars.next() {
            if ch != '%' {
                out.push(ch);
                continue;
            }
            match chars.next() {
                Some('u') => out.push_str(self.client.username.as_deref().unwrap_or("")),
                Some('c') => out.push_str(&self.client.client_id),
                Some('a') => out.push_str(&self.client.peer.ip().to_string()),
                Some('r') => out.push_str("mqtt"),
                Some('P') => out.push_str(&String::from_utf8_lossy(self.password.unwrap_or(b""))),
                // The verified TLS client certificate's Common Name and
                // subject; empty without one, as EMQX sends them.
                Some('C') => {
                    let cn = self.client.cert.as_ref().and_then(|c| c.cn.as_deref());
                    out.push_str(cn.unwrap_or(""));
                }
                Some('d') => {
                    out.push_str(self.client.cert.as_ref().map_or("", |c| c.dn.as_str()));
                }
                // No mount points in Herald: empty, as EMQX sends without one.
                Some('m') => {}
                Some('A') => out.push_str(match self.access {
                    Some(AclAction::Publish) => "2",
                    Some(_) => "1",
                    None => "",
                }),
                Some('t') => out.push_str(self.topic.unwrap_or("")),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

impl HttpAuth {
    /// Reads an `emqx_auth_http.conf`.
    pub fn load(path: &Path) -> Result<HttpAuth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        HttpAuth::parse(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
    }

    /// Parses the text of an `emqx_auth_http.conf`; `Err((line, "key: problem"))`.
    pub fn parse(text: &str) -> Result<HttpAuth, (usize, String)> {
        let mut keys: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err((i + 1, format!("{line}: expected key = value")));
            };
            keys.insert(key.trim().to_owned(), (i + 1, value.trim().to_owned()));
        }
        let mut global_headers = Vec::new();
        let mut timeout = Duration::from_secs(5);
        let mut connect_timeout = Duration::from_secs(5);
        let mut pool_size = 8usize;
        for (key, (line, value)) in &keys {
            let bad = |why: String| (*line, format!("{key}: {why}"));
            if let Some(name) = key.strip_prefix("auth.http.header.") {
                global_headers.push((name.to_ascii_lowercase(), value.clone()));
            } else if key == "auth.http.timeout" || key == "auth.http.request.timeout" {
                timeout = duration(value).map_err(bad)?;
            } else if key == "auth.http.pool_size" {
                pool_size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(format!("`{value}` is not a positive number")))?;
            } else if key == "auth.http.connect_timeout"
                || key == "auth.http.request.connect_timeout"
                // The spelling of some shipped 4.x files.
                || key == "auth.http.request.connect_timout"
            {
                connect_timeout = duration(value).map_err(bad)?;
            } else if known_ignored(key) {
                // Accepted for compatibility; see the module docs.
            } else if !["auth_req", "super_req", "acl_req"].iter().any(|r| {
                key == &format!("auth.http.{r}") || key.starts_with(&format!("auth.http.{r}."))
            }) {
                return Err(bad("unknown key".into()));
            }
        }
        let request = |name: &str| -> Result<Option<Request>, (usize, String)> {
            let base = format!("auth.http.{name}");
            let url = keys
                .get(&format!("{base}.url"))
                .map(|v| (format!("{base}.url"), v))
                .or_else(|| keys.get(&base).map(|v| (base.clone(), v)));
            let Some((url_key, (url_line, url))) = url else {
                if let Some((k, (line, _))) = keys.range(format!("{base}.")..).next()
                    && k.starts_with(&format!("{base}."))
                {
                    return Err((*line, format!("{k}: {base}.url (or {base}) is not set")));
                }
                return Ok(None);
            };
            let (authority, path) =
                split_url(url).map_err(|why| (*url_line, format!("{url_key}: {why}")))?;
            let method = match keys.get(&format!("{base}.method")) {
                None => hyper::Method::POST,
                Some((line, m)) => match m.to_ascii_lowercase().as_str() {
                    "get" => hyper::Method::GET,
                    "post" => hyper::Method::POST,
                    "put" => hyper::Method::PUT,
                    _ => {
                        return Err((
                            *line,
                            format!("{base}.method: `{m}` is not get, post or put"),
                        ));
                    }
                },
            };
            let params = match keys.get(&format!("{base}.params")) {
                None => Vec::new(),
                Some((line, p)) => p
                    .split(',')
                    .filter(|kv| !kv.trim().is_empty())
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => Ok((k.trim().to_owned(), v.trim().to_owned())),
                        None => Err((*line, format!("{base}.params: `{kv}` is not k=v"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let mut headers = global_headers.clone();
            let prefix = format!("{base}.headers.");
            for (k, (_, v)) in keys.range(prefix.clone()..) {
                let Some(name) = k.strip_prefix(&prefix) else {
                    break;
                };
                let name = name.to_ascii_lowercase().replace('_', "-");
                headers.retain(|(n, _)| *n != name);
                headers.push((name, v.clone()));
            }
            for (k, (line, _)) in keys.range(format!("{base}.")..) {
                if !k.starts_with(&format!("{base}.")) {
                    break;
                }
                let rest = &k[base.len() + 1..];
                if !matches!(rest, "url" | "method" | "params" | "content_type")
                    && !rest.starts_with("headers.")
                {
                    return Err((*line, format!("{k}: unknown key")));
                }
            }
            // 4.0-4.2 name the body's type in `.content_type`
            // (x-www-form-urlencoded or json); 4.3 in a header.
            if let Some((_, v)) = keys.get(&format!("{base}.content_type")) {
                let full = if v.contains('/') {
                    v.clone()
                } else {
                    format!("application/{v}")
                };
                headers.retain(|(n, _)| n != "content-type");
                headers.push(("content-type".into(), full));
            }
            let json = headers
                .iter()
                .any(|(n, v)| n == "content-type" && v.contains("json"));
            Ok(Some(Request {
                authority,
                path,
                method,
                params,
                headers,
                json,
            }))
        };
        Ok(HttpAuth {
            auth: request("auth_req")?,
            superuser: request("super_req")?,
            acl: request("acl_req")?,
            timeout,
            connect_timeout,
            pool_size,
            permits: Semaphore::new(pool_size),
            pool: Mutex::new(BTreeMap::new()),
            metrics: Arc::new(Metrics::default()),
            logged: AtomicU64::new(0),
        })
    }

    /// Whether `auth_req` is configured.
    pub fn authenticates(&self) -> bool {
        self.auth.is_some()
    }

    /// Whether `acl_req` is configured.
    pub fn has_acl(&self) -> bool {
        self.acl.is_some()
    }

    /// Counts into `metrics` (shared across reloads) instead of counters
    /// of its own.
    pub fn counting(mut self, metrics: Arc<Metrics>) -> HttpAuth {
        self.metrics = metrics;
        self
    }

    /// For the start-up log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, r) in [
            ("auth_req", &self.auth),
            ("super_req", &self.superuser),
            ("acl_req", &self.acl),
        ] {
            if let Some(r) = r {
                parts.push(format!(
                    "{name} {} http://{}{}",
                    r.method, r.authority, r.path
                ));
            }
        }
        parts.join("; ")
    }

    /// `auth_req`; `Ignore` when it is not configured.
    pub async fn authenticate(&self, client: &ClientInfo, password: Option<&Bytes>) -> HttpVerdict {
        let Some(req) = &self.auth else {
            return HttpVerdict::Ignore;
        };
        let values = Values {
            client,
            password: password.map(|p| &p[..]),
            access: None,
            topic: None,
        };
        self.send(req, &values, Kind::Auth).await
    }

    /// `super_req`: whether the client is a superuser.
    pub async fn superuser(&self, client: &ClientInfo) -> bool {
        let Some(req) = &self.superuser else {
            return false;
        };
        let values = Values {
            client,
            password: None,
            access: None,
            topic: None,
        };
        self.send(req, &values, Kind::Super).await == HttpVerdict::Allow
    }

    /// `acl_req` for `action` on `topic`.
    pub async fn check_acl(
        &self,
        client: &ClientInfo,
        action: AclAction,
        topic: &str,
    ) -> HttpVerdict {
        let Some(req) = &self.acl else {
            return HttpVerdict::Ignore;
        };
        let values = Values {
            client,
            password: None,
            access: Some(action),
            topic: Some(topic),
        };
        self.send(req, &values, Kind::Acl).await
    }

    async fn send(&self, req: &Request, values: &Values<'_>, kind: Kind) -> HttpVerdict {
        self.metrics.http_request(kind);
        let answer = tokio::time::timeout(self.timeout, self.exchange(req, values)).await;
        let (why, failure) = match answer {
            Ok(Ok((status, body))) if (200..300).contains(&status) => {
                return if body.trim_ascii() == b"ignore" {
                    HttpVerdict::Ignore
                } else {
                    HttpVerdict::Allow
                };
            }
            Ok(Ok((status, _))) if (400..500).contains(&status) => return HttpVerdict::Deny,
            Ok(Ok((status, _))) => (Failure::Status, format!("answered {status}")),
            Ok(Err(failed)) => failed,
            Err(_) => (
                Failure::Timeout,
                format!("no answer within {:?}", self.timeout),
            ),
        };
        self.metrics.http_failure(kind, why);
        let what = match kind {
            Kind::Auth => "auth_req",
            Kind::Super => "super_req",
            Kind::Acl => "acl_req",
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.logged.load(Ordering::Relaxed);
        if last + 10 <= now
            && self
                .logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                request = what,
                url = %format!("http://{}{}", req.authority, req.path),
                client_id = %values.client.client_id,
                "auth_http: {failure}; refused (further failures logged at most every 10 s)"
            );
        }
        HttpVerdict::Failed
    }

    async fn exchange(
        &self,
        req: &Request,
        values: &Values<'_>,
    ) -> Result<(u16, Bytes), (Failure, String)> {
        let pairs: Vec<(String, String)> = req
            .params
            .iter()
            .map(|(k, v)| (k.clone(), values.expand(v)))
            .collect();
        let (uri, body) = if req.method == hyper::Method::GET {
            let sep = if req.path.contains('?') { '&' } else { '?' };
            let query = form(&pairs);
            let uri = if query.is_empty() {
                req.path.clone()
            } else {
                format!("{}{sep}{query}", req.path)
            };
            (uri, Bytes::new())
        } else if req.json {
            let map: serde_json::Map<String, serde_json::Value> = pairs
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            (
                req.path.clone(),
                Bytes::from(serde_json::Value::Object(map).to_string()),
            )
        } else {
            (req.path.clone(), Bytes::from(form(&pairs)))
        };
        let mut builder = hyper::Request::builder()
            .method(req.method.clone())
            .uri(uri)
            .header(hyper::header::HOST, &req.authority);
        let mut has_type = false;
        for (name, value) in &req.headers {
            has_type |= name == "content-type";
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !has_type && req.method != hyper::Method::GET {
            builder = builder.header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| (Failure::Protocol, format!("cannot build the request: {e}")))?;
        // The semaphore is never closed; a permit is held for the request.
        let _permit = self.permits.acquire().await.ok();
        let mut sender = self.connection(&req.authority).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| (Failure::Protocol, format!("request failed: {e}")))?;
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                (
                    Failure::Protocol,
                    format!("reading the answer failed: {e} (at most {MAX_ANSWER} bytes)"),
                )
            })?
            .to_bytes();
        self.give_back(&req.authority, sender);
        Ok((status, body))
    }

    /// A kept connection to `authority`, or a new one (within
    /// `connect_timeout`).
    async fn connection(
        &self,
        authority: &str,
    ) -> Result<SendRequest<Full<Bytes>>, (Failure, String)> {
        loop {
            let idle = {
                let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                pool.get_mut(authority).and_then(Vec::pop)
            };
            match idle {
                Some(mut s) if !s.is_closed() => {
                    if s.ready().await.is_ok() {
                        return Ok(s);
                    }
                }
                Some(_) => continue,
                None => break,
            }
        }
        let open = async {
            let stream = TcpStream::connect(authority).await.map_err(|e| {
                (
                    Failure::Connection,
                    format!("cannot connect to {authority}: {e}"),
                )
            })?;
            let _ = stream.set_nodelay(true);
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| {
                    (
                        Failure::Protocol,
                        format!("cannot talk HTTP to {authority}: {e}"),
                    )
                })
        };
        let (sender, conn) = tokio::time::timeout(self.connect_timeout, open)
            .await
            .map_err(|_| {
                (
                    Failure::Timeout,
                    format!(
                        "no connection to {authority} within {:?} (auth.http.connect_timeout)",
                        self.connect_timeout
                    ),
                )
            })??;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn give_back(&self, authority: &str, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let idle = pool.entry(authority.to_owned()).or_default();
        if idle.len() < self.pool_size {
            idle.push(sender);
        }
    }
}

/// Keys of EMQX's file that Herald accepts and does not use.
fn known_ignored(key: &str) -> bool {
    key.starts_with("auth.http.ssl.")
        || matches!(
            key,
            "auth.http.enable_pipelining"
                | "auth.http.request.retry_times"
                | "auth.http.request.retry_interval"
                | "auth.http.request.retry_backoff"
                | "auth.http.request.content_type"
        )
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = match url.strip_prefix("http://") {
        Some(rest) => rest,
        None if url.starts_with("https://") => {
            return Err(format!(
                "`{url}`: https is not supported yet; use http:// (e.g. to a local TLS-terminating proxy)"
            ));
        }
        None => return Err(format!("`{url}` is not an http:// URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

/// `5s`, `500ms`, `1m`, or a number of seconds.
fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 5s, 500ms)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("`{text}` is not a duration (e.g. 5s, 500ms)")),
    };
    // EMQX: 0 means no timeout; a long one is the closest.
    Ok(if d.is_zero() {
        Duration::from_secs(3600)
    } else {
        d
    })
}

/// `application/x-www-form-urlencoded` of the pairs.
fn form(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(k, &mut out);
        out.push('=');
        encode(v, &mut out);
    }
    out
}

fn encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_forms() {
        let old = "auth.http.auth_req = http://127.0.0.1:8991/mqtt/auth\n\
                   auth.http.auth_req.method = get\n\
                   auth.http.auth_req.params = clientid=%c,username=%u,password=%P\n\
                   auth.http.header.Accept = */*\n\
                   auth.http.request.timeout = 2s\n";
        let a = HttpAuth::parse(old).unwrap();
        let r = a.auth.as_ref().unwrap();
        assert_eq!(r.authority, "127.0.0.1:8991");
        assert_eq!(r.method, hyper::Method::GET);
        assert_eq!(r.headers, [("accept".to_string(), "*/*".to_string())]);
        assert_eq!(a.timeout, Duration::from_secs(2));
        assert_eq!(a.connect_timeout, Duration::from_secs(5), "the default");
        let new = "auth.http.auth_req.url = http://localhost/mqtt/auth\n\
                   auth.http.auth_req.headers.content_type = application/json\n\
                   auth.http.acl_req.url = http://127.0.0.1:1/acl\n\
                   auth.http.timeout = 500ms\n\
                   auth.http.connect_timeout = 250ms\n";
        let a = HttpAuth::parse(new).unwrap();
        assert_eq!(a.connect_timeout, Duration::from_millis(250));
        assert!(a.auth.as_ref().unwrap().json);
        assert_eq!(a.auth.as_ref().unwrap().authority, "localhost:80");
        assert!(a.has_acl());
        assert!(a.superuser.is_none());
    }

    #[test]
    fn errors_name_line_and_key() {
        let err = HttpAuth::parse("\nauth.http.auth_req.url = https://x/a\n").unwrap_err();
        assert_eq!(err.0, 2);
        assert!(err.1.starts_with("auth.http.auth_req.url: "), "{}", err.1);
        let err =
            HttpAuth::parse("auth.http.auth_req = http://x/a\nauth.http.auth_req.methd = get\n")
                .unwrap_err();
        assert_eq!(err, (2, "auth.http.auth_req.methd: unknown key".into()));
        let err = HttpAuth::parse("auth.http.nope = 1\n").unwrap_err();
        assert_eq!(err, (1, "auth.http.nope: unknown key".into()));
        let err = HttpAuth::parse("auth.http.pool_size = 0\n").unwrap_err();
        assert_eq!(err.0, 1);
        let err = HttpAuth::parse("auth.http.acl_req.method = get\n").unwrap_err();
        assert!(
            err.1
                .contains("auth.http.acl_req.url (or auth.http.acl_req) is not set"),
            "{}",
            err.1
        );
    }

    /// The commented example shipped in etc/ is read as it is.
    #[test]
    fn shipped_conf() {
        let a = HttpAuth::parse(include_str!("../../../etc/emqx_auth_http.conf")).unwrap();
        let r = a.auth.as_ref().unwrap();
        assert_eq!(
            (r.authority.as_str(), r.path.as_str()),
            ("127.0.0.1:8991", "/mqtt/auth")
        );
        assert!(!r.json);
        assert!(a.superuser.is_none() && !a.has_acl());
        assert_eq!(
            (a.timeout, a.connect_timeout, a.pool_size),
            (Duration::from_secs(5), Duration::from_secs(5), 8)
        );
    }

    #[test]
    fn form_encoding() {
        let pairs = vec![("a".into(), "x y/+&".into()), ("b".into(), String::new())];
        assert_eq!(form(&pairs), "a=x%20y%2F%2B%26&b=");
    }
}
