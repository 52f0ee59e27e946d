//! Query strings and form bodies: `key=value` pairs, percent-decoded (`+` is a space), as
//! browsers and `URLSearchParams` write them.

use axum::http::Uri;

/// `%XX` and `+` decoded; `None` for a bad escape or bytes that are not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The raw (still encoded) value of the first `key` in `pairs` (`a=1&b=2`).
fn raw<'p>(pairs: &'p str, key: &str) -> Option<&'p str> {
    pairs
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .find(|(k, _)| decode(k).as_deref() == Some(key))
        .map(|(_, v)| v)
}

/// The decoded value of `key` in `pairs`: `None` when absent; `Some(Err(raw))` when it
/// cannot be decoded (so the caller can say which parameter is wrong).
pub fn value_in(pairs: &str, key: &str) -> Option<Result<String, String>> {
    raw(pairs, key).map(|v| decode(v).ok_or_else(|| v.to_owned()))
}

/// The decoded value of query parameter `key` (an undecodable one reads as absent).
pub fn query_value(uri: &Uri, key: &str) -> Option<String> {
    uri.query()
        .and_then(|q| value_in(q, key))
        .and_then(Result::ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_decoded() {
        let uri: Uri = "/x?kinds=Stage%2CFreight&limit=%31&name=a+b&bad=%FF&watch=%74rue"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(query_value(&uri, "kinds").as_deref(), Some("Stage,Freight"));
        assert_eq!(query_value(&uri, "limit").as_deref(), Some("1"));
        assert_eq!(query_value(&uri, "name").as_deref(), Some("a b"));
        assert_eq!(query_value(&uri, "watch").as_deref(), Some("true"));
        assert_eq!(query_value(&uri, "bad"), None);
        assert_eq!(value_in("bad=%FF", "bad"), Some(Err("%FF".to_owned())));
        assert_eq!(query_value(&uri, "missing"), None);
    }
}
