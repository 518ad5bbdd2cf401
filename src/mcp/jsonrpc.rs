//! JSON-RPC 2.0 framing for the stdio transport: bounded line reading,
//! classifying incoming messages, and building responses.
//!
//! MCP's stdio transport is one JSON message per line, UTF-8, no embedded
//! newlines. Nothing here knows about MCP methods; `server.rs` does.

use serde_json::{json, Map, Value};
use std::io::{self, BufRead};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }
}

/// One incoming message after validation of its JSON-RPC envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response to a request we sent. This server sends none, so these
    /// are dropped; they are still valid JSON-RPC and get no error.
    Response,
}

/// Validates the envelope of one message (not a batch). On failure returns
/// the id to answer with (null when it cannot be read) and the error.
pub fn classify(v: Value) -> Result<Incoming, (Value, RpcError)> {
    let Value::Object(mut obj) = v else {
        return Err((
            Value::Null,
            RpcError::invalid_request("a JSON-RPC message must be a JSON object"),
        ));
    };
    // The id is read first so even a malformed request is answered with it.
    let id = obj.remove("id");
    let id_ok = matches!(&id, Some(Value::String(_)))
        || matches!(&id, Some(Value::Number(n)) if n.is_i64() || n.is_u64());
    let reply_id = if id_ok {
        id.clone().unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err((
            reply_id,
            RpcError::invalid_request("\"jsonrpc\" must be exactly \"2.0\""),
        ));
    }
    let params = obj.remove("params");
    if let Some(p) = &params {
        if !p.is_object() && !p.is_array() {
            return Err((
                reply_id,
                RpcError::invalid_request("\"params\" must be an object or an array"),
            ));
        }
    }
    match obj.remove("method") {
        Some(Value::String(method)) => match id {
            None => Ok(Incoming::Notification { method, params }),
            Some(_) if id_ok => Ok(Incoming::Request {
                id: reply_id,
                method,
                params,
            }),
            // MCP forbids null ids; JSON-RPC forbids fractional and
            // structured ones.
            Some(_) => Err((
                Value::Null,
                RpcError::invalid_request("\"id\" must be a string or an integer"),
            )),
        },
        Some(_) => Err((
            reply_id,
            RpcError::invalid_request("\"method\" must be a string"),
        )),
        None if obj.contains_key("result") || obj.contains_key("error") => Ok(Incoming::Response),
        None => Err((
            reply_id,
            RpcError::invalid_request("a request needs a \"method\""),
        )),
    }
}

pub fn response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn error_response(id: &Value, err: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": err.code, "message": err.message}})
}

pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// Params as an object: absent is an empty object, an array is an error.
pub fn params_object(params: Option<Value>) -> Result<Map<String, Value>, RpcError> {
    match params {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(RpcError::invalid_params("params must be an object")),
    }
}

/// One line read by [`LineReader`].
#[derive(Debug, PartialEq)]
pub enum Line {
    Message(Vec<u8>),
    /// The line exceeded the bound; its bytes were skipped, not kept.
    TooLong(usize),
}

/// Reads newline-delimited messages without ever holding more than `max`
/// bytes of one line, so a client cannot make the server allocate without
/// bound. A final line without a newline is still returned.
pub struct LineReader<R> {
    inner: R,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max }
    }

    /// The next non-empty line, or None at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let mut buf = Vec::new();
            let mut total = 0usize;
            let mut saw_any = false;
            loop {
                let chunk = match self.inner.fill_buf() {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if chunk.is_empty() {
                    if !saw_any {
                        return Ok(None);
                    }
                    break;
                }
                saw_any = true;
                let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => (&chunk[..i], i + 1, true),
                    None => (chunk, chunk.len(), false),
                };
                total += part.len();
                if total <= self.max {
                    buf.extend_from_slice(part);
                }
                self.inner.consume(used);
                if done {
                    break;
                }
            }
            if total > self.max {
                return Ok(Some(Line::TooLong(total)));
            }
            // Tolerate CRLF framing and blank keep-alive lines.
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if buf.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Ok(Some(Line::Message(buf)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(io::BufReader::with_capacity(7, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn reads_lines_skips_blank_and_bounds_size() {
        let got = lines(b"abc\r\n\n  \n0123456789012\nlast", 10);
        assert_eq!(
            got,
            vec![
                Line::Message(b"abc".to_vec()),
                Line::TooLong(13),
                Line::Message(b"last".to_vec())
            ]
        );
    }

    #[test]
    fn classifies_requests_notifications_and_responses() {
        let r = classify(json!({"jsonrpc": "2.0", "id": 7, "method": "ping"})).unwrap();
        assert!(matches!(r, Incoming::Request { ref method, .. } if method == "ping"));
        let n = classify(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert!(matches!(n, Ok(Incoming::Notification { .. })));
        let resp = classify(json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
        assert_eq!(resp, Ok(Incoming::Response));
    }

    #[test]
    fn rejects_bad_envelopes_with_the_right_id() {
        let (id, e) = classify(json!({"jsonrpc": "1.0", "id": "a", "method": "x"})).unwrap_err();
        assert_eq!((id, e.code), (json!("a"), INVALID_REQUEST));
        let (id, e) = classify(json!({"jsonrpc": "2.0", "id": null, "method": "x"})).unwrap_err();
        assert_eq!((id, e.code), (Value::Null, INVALID_REQUEST));
        let (_, e) = classify(json!({"jsonrpc": "2.0", "id": 1.5, "method": "x"})).unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST);
        let (id, e) = classify(json!({"jsonrpc": "2.0", "id": 3, "method": 4})).unwrap_err();
        assert_eq!((id, e.code), (json!(3), INVALID_REQUEST));
        let (_, e) =
            classify(json!({"jsonrpc": "2.0", "id": 3, "method": "m", "params": 1})).unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST);
        let (_, e) = classify(json!([1])).unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST);
    }
}
