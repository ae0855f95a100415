//! The Rust types build.rs generated from `schemas/*.json` (typify), and the embedded schema bytes.
//!
//! Nothing here is written by hand: see `build.rs`. To read the generated code, open
//! [`SOURCE`] (printed by `cxone-ingest validate --print-generated`) or
//! `$CARGO_TARGET_DIR/*/build/cxone-ingest-*/out/contract_types.rs`.

#![allow(clippy::all, clippy::pedantic, missing_docs, dead_code, unused_imports)]

/// One event schema compiled into the binary.
#[derive(Debug)]
pub struct BuiltinSchema {
    /// File name in `schemas/`.
    pub file_name: &'static str,
    /// The schema's text: the very bytes the types below were generated from.
    pub text: &'static str,
    /// Name of the generated root type (from the schema's `title`).
    pub root_type: &'static str,
    /// Decodes a validated payload into the generated root type and serializes it back.
    pub canonicalize: fn(&serde_json::Value) -> Result<Vec<u8>, serde_json::Error>,
    /// The same from a borrowed document (the fast path), byte for byte the same output.
    pub(crate) canonicalize_doc: DocCanonicalize,
}

include!(concat!(env!("OUT_DIR"), "/contract_types.rs"));

/// Decodes a validated borrowed document into a generated root type and appends that typed value,
/// serialized, to `out`: the canonical event, byte for byte what `canonicalize` gives for the same
/// payload as a `Value`.
pub(crate) type DocCanonicalize = for<'a> fn(
    &'a super::doc::Doc<'a>,
    &mut ::std::vec::Vec<u8>,
) -> ::std::result::Result<(), ::serde_json::Error>;

fn canonicalize_doc<'a, T: ::serde::de::DeserializeOwned + ::serde::Serialize>(
    doc: &'a super::doc::Doc<'a>,
    out: &mut ::std::vec::Vec<u8>,
) -> ::std::result::Result<(), ::serde_json::Error> {
    let typed = T::deserialize(doc)?;
    super::writer::write(&typed, out)
}

/// A string field as the deserializer lends it: borrowed from the input when it can be, owned
/// when it must be (escapes). Generated newtypes read their text through it (see build.rs,
/// `lend_constrained_strings`) and copy it once into their own `String`.
pub struct LentStr<'de>(::std::borrow::Cow<'de, str>);

impl ::std::ops::Deref for LentStr<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> ::serde::Deserialize<'de> for LentStr<'de> {
    fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
        deserializer.deserialize_str(LentStrVisitor)
    }
}

struct LentStrVisitor;

impl<'de> ::serde::de::Visitor<'de> for LentStrVisitor {
    type Value = LentStr<'de>;

    fn expecting(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        // `String`'s words, so that errors read as before.
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: ::serde::de::Error>(
        self,
        text: &'de str,
    ) -> ::std::result::Result<Self::Value, E> {
        Ok(LentStr(::std::borrow::Cow::Borrowed(text)))
    }

    fn visit_str<E: ::serde::de::Error>(self, text: &str) -> ::std::result::Result<Self::Value, E> {
        Ok(LentStr(::std::borrow::Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: ::serde::de::Error>(
        self,
        text: ::std::string::String,
    ) -> ::std::result::Result<Self::Value, E> {
        Ok(LentStr(::std::borrow::Cow::Owned(text)))
    }
}

/// `text.chars().count()`: the number of characters `minLength`/`maxLength` count. ASCII text
/// (most constrained strings) has one per byte, so only other text is counted.
fn char_count(text: &str) -> usize {
    if text.is_ascii() { text.len() } else { text.chars().count() }
}

/// The generated code as build.rs wrote it (for the snapshot test and `validate --print-generated`).
pub const SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/contract_types.rs"));

#[cfg(test)]
mod tests {
    /// The same number as `chars().count()`, for ASCII and for other text.
    #[test]
    fn char_count_counts_characters() {
        for text in ["", "a", "c-1", "jane.doe@example.com", "é", "日本語", "a😀b", "\u{0}\u{7f}\u{80}"]
        {
            assert_eq!(super::char_count(text), text.chars().count(), "{text:?}");
        }
    }
}
