//! A plain JSON body walked in one pass, for the adapters' webhook parsers: each member or
//! element is found where it stands and read there (by `serde_json`, from that offset), so that
//! its span in the body is known without splitting the body into raw values first and reading
//! each again.
//!
//! Every function returns `None` for what it does not read as plain JSON (a key with escapes
//! included, which does not borrow as `&str`): the caller then parses the body the ordinary
//! way, which gives serde's own errors.

use serde::Deserialize;

/// One JSON value of type `T` starting at `at` (after any whitespace) in `text`, and the offset
/// where it ends.
pub fn value<'t, T: Deserialize<'t>>(text: &'t str, at: usize) -> Option<(T, usize)> {
    let mut values = serde_json::Deserializer::from_str(text.get(at..)?).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, at + values.byte_offset()))
}

/// The first byte at or after `at` that is not JSON whitespace, and its offset.
pub fn token(text: &str, mut at: usize) -> Option<(u8, usize)> {
    let bytes = text.as_bytes();
    while let Some(&b) = bytes.get(at) {
        if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
            return Some((b, at));
        }
        at += 1;
    }
    None
}

/// Reads the members of the object that starts at `at` (after whitespace): calls `member`
/// with each key and where its value starts, which reads the value and says where it ends.
/// Returns where the object ends; `None` for anything but a plain object (keys with escapes
/// included), or when `member` says `None`.
pub fn members<'t>(
    text: &'t str,
    at: usize,
    mut member: impl FnMut(&'t str, usize) -> Option<usize>,
) -> Option<usize> {
    let (b'{', open) = token(text, at)? else {
        return None;
    };
    let mut at = open + 1;
    if let (b'}', close) = token(text, at)? {
        return Some(close + 1);
    }
    loop {
        let (b'"', key_at) = token(text, at)? else {
            return None;
        };
        let (key, after_key) = value::<&str>(text, key_at)?;
        let (b':', colon) = token(text, after_key)? else {
            return None;
        };
        at = member(key, colon + 1)?;
        match token(text, at)? {
            (b',', comma) => at = comma + 1,
            (b'}', close) => return Some(close + 1),
            _ => return None,
        }
    }
}

/// Reads the elements of the array that starts at `at` (after whitespace): calls `element`
/// with where each starts, which reads it and says where it ends. Returns where the array ends.
pub fn elements(
    text: &str,
    at: usize,
    mut element: impl FnMut(usize) -> Option<usize>,
) -> Option<usize> {
    let (b'[', open) = token(text, at)? else {
        return None;
    };
    if let (b']', close) = token(text, open + 1)? {
        return Some(close + 1);
    }
    let mut at = open + 1;
    loop {
        let (_, start) = token(text, at)?;
        let end = element(start)?;
        match token(text, end)? {
            (b',', comma) => at = comma + 1,
            (b']', close) => return Some(close + 1),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{elements, members, token, value};

    #[test]
    fn members_and_elements_give_each_span_and_refuse_what_is_not_plain() {
        let text = r#" { "a" : [1, {"b":2} ] , "c":"d" } "#;
        let mut seen = Vec::new();
        let end = members(text, 0, |key, at| {
            let (_, end) = value::<&serde_json::value::RawValue>(text, at)?;
            seen.push((key, text[at..end].trim()));
            Some(end)
        })
        .unwrap();
        assert_eq!(seen, [("a", r#"[1, {"b":2} ]"#), ("c", r#""d""#)]);
        assert_eq!(token(text, end), None, "only whitespace after the object");
        let array = r#"[1, {"b":2} ]"#;
        let mut spans = Vec::new();
        elements(array, 0, |at| {
            let (_, end) = value::<&serde_json::value::RawValue>(array, at)?;
            spans.push(&array[at..end]);
            Some(end)
        })
        .unwrap();
        assert_eq!(spans, ["1", r#"{"b":2}"#]);
        // A key with escapes, a missing colon, a trailing comma: not plain.
        for odd in [r#"{"\u0061":1}"#, r#"{"a" 1}"#, r#"{"a":1,}"#] {
            assert!(members(odd, 0, |_, at| value::<u8>(odd, at).map(|v| v.1)).is_none());
        }
        assert_eq!(elements("[ ]", 0, |_| None), Some(3));
    }
}
