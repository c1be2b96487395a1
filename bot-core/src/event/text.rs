//! The compact string behind every id: inline when short, a slice of the payload it was read
//! from when long, shared otherwise.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;

/// The longest string kept inline: the type stays 40 bytes (a `Bytes` and its tag).
const INLINE: usize = 38;

/// An immutable string that allocates only when it is long and was not read from a shared
/// payload (LINE ids, reply tokens and ULIDs fit inline; a Messenger `mid` shares the body).
#[derive(Clone)]
pub(crate) enum Text {
    /// Short strings, copied into the value itself.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A UTF-8 slice of a shared payload (a request's or frame's body).
    Shared(Bytes),
    /// Long strings of no shared payload.
    Heap(Arc<str>),
}

impl Text {
    pub(crate) fn new(s: &str) -> Self {
        Self::inline(s).unwrap_or_else(|| Self::Heap(Arc::from(s)))
    }

    pub(crate) fn from_string(s: String) -> Self {
        Self::inline(&s).unwrap_or_else(|| Self::Heap(Arc::from(s)))
    }

    /// `s` as a slice of `payload` when it lies within it, else a copy.
    pub(crate) fn from_shared(payload: &Bytes, s: &str) -> Self {
        if let Some(inline) = Self::inline(s) {
            return inline;
        }
        match shared_slice(payload, s) {
            Some(slice) => Self::Shared(slice),
            None => Self::Heap(Arc::from(s)),
        }
    }

    fn inline(s: &str) -> Option<Self> {
        let len = s.len();
        (len <= INLINE).then(|| {
            let mut bytes = [0; INLINE];
            bytes[..len].copy_from_slice(s.as_bytes());
            Self::Inline {
                len: len as u8,
                bytes,
            }
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Shared(bytes) => bytes,
            Self::Heap(s) => s.as_bytes(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Heap(s) => s,
            // Every constructor takes a `&str`, so the bytes are UTF-8; checking again is cheaper
            // than an allocation and needs no `unsafe`.
            _ => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
        }
    }
}

/// `part` as a `Bytes` sharing `payload`'s buffer, when `part` lies within it.
pub(crate) fn shared_slice(payload: &Bytes, part: &str) -> Option<Bytes> {
    let start = payload.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    (at >= start && at + part.len() <= start + payload.len())
        .then(|| payload.slice_ref(part.as_bytes()))
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// UTF-8 byte order is code point order: the same as comparing the strings.
impl Ord for Text {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Hashes as `str` does, whatever the representation.
impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text::new(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text::from_string(v))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn every_representation_reads_compares_and_hashes_as_its_string() {
        let long = "m_".repeat(40);
        let body = Bytes::from(format!(r#"{{"mid":"{long}","short":"U1"}}"#));
        let text = std::str::from_utf8(&body).unwrap();
        let at = text.find("m_").unwrap();
        let in_body = &text[at..at + long.len()];
        let shared = Text::from_shared(&body, in_body);
        assert!(matches!(shared, Text::Shared(_)));
        let heap = Text::new(&long);
        assert!(matches!(heap, Text::Heap(_)));
        let inline = Text::from_shared(&body, "U1");
        assert!(matches!(inline, Text::Inline { .. }));
        assert!(matches!(
            Text::new(&"x".repeat(INLINE)),
            Text::Inline { .. }
        ));
        assert!(matches!(Text::new(&"x".repeat(INLINE + 1)), Text::Heap(_)));
        // Not within the body: copied, never a wrong slice.
        assert!(matches!(Text::from_shared(&body, &long), Text::Heap(_)));

        assert_eq!(shared.as_str(), long);
        assert_eq!(shared, heap);
        assert_eq!(hash_of(&shared), hash_of(long.as_str()));
        assert_eq!(hash_of(&inline), hash_of("U1"));
        assert_eq!(inline.cmp(&shared), "U1".cmp(long.as_str()));
        assert_eq!(Text::from_string("é\"".to_owned()).as_str(), "é\"");
        assert_eq!(std::mem::size_of::<Text>(), 40);
        assert_eq!(std::mem::size_of::<Option<Text>>(), 40);
    }
}
