//! A borrowed JSON document for the valid-payload fast path: parsed straight from the request body
//! (strings point into it), validated by `jsonschema` through its representation traits, and
//! decoded into the generated types through serde, so that an accepted payload never becomes a
//! `serde_json::Value`. Its arrays, members and the few strings it must own (escapes, normalised
//! values) live in a bump arena: building it costs no heap allocation per node, and it has nothing
//! to drop.
//!
//! The parser is deliberately strict and partial: anything it does not handle the way `serde_json`
//! would (invalid UTF-8, a BOM, control characters, lone surrogates, duplicate keys, deep nesting,
//! trailing bytes, ...) makes it give up with `None`, and the caller takes the reference path,
//! which parses with `serde_json` and explains the problem. So on every input it accepts, the
//! document holds exactly what `serde_json::from_slice::<Value>` would have produced.

use std::borrow::Cow;

use bumpalo::Bump;
use jsonschema::JsonType;
use jsonschema::json::{Array, Json, Node, NodeIdentity, Object};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::{Number, Value};

use super::writer::plain_len;

/// Nesting deeper than this is left to the reference path (`serde_json` refuses more than 128).
const MAX_DEPTH: usize = 64;

/// One JSON value; strings borrow from the body, or from the arena when they held escapes.
#[derive(Debug, Default, PartialEq)]
pub enum Doc<'a> {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(&'a str),
    Array(&'a mut [Doc<'a>]),
    /// Members in document order; keys are unique and borrowed (duplicate keys, and keys written
    /// with escapes, make the parser give up).
    Object(&'a mut [(&'a str, Doc<'a>)]),
}

impl<'a> Doc<'a> {
    /// Parses a body into `arena`, or `None` when the reference parser must decide (see the
    /// module docs).
    pub fn parse(raw: &'a [u8], arena: &'a Bump) -> Option<Doc<'a>> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut parser = Parser { text, bytes: raw, pos: 0, arena };
        let doc = parser.value(0)?;
        parser.peek().is_none().then_some(doc)
    }

    /// A member of an object by name.
    pub fn get(&self, name: &str) -> Option<&Doc<'a>> {
        match self {
            Doc::Object(members) => members.iter().find(|(key, _)| *key == name).map(|(_, value)| value),
            _ => None,
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Doc::String(text) => Some(text),
            _ => None,
        }
    }

    /// The same value as a `serde_json::Value` (for coercion records and cold paths).
    pub fn to_value(&self) -> Value {
        match self {
            Doc::Null => Value::Null,
            Doc::Bool(flag) => Value::Bool(*flag),
            Doc::Number(number) => Value::Number(number.clone()),
            Doc::String(text) => Value::String((*text).to_owned()),
            Doc::Array(items) => Value::Array(items.iter().map(Doc::to_value).collect()),
            Doc::Object(members) => Value::Object(
                members.iter().map(|(key, value)| (key.to_string(), value.to_value())).collect(),
            ),
        }
    }

    fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Doc::Null => Unexpected::Unit,
            Doc::Bool(flag) => Unexpected::Bool(*flag),
            Doc::Number(_) => Unexpected::Other("number"),
            Doc::String(text) => Unexpected::Str(text),
            Doc::Array(_) => Unexpected::Seq,
            Doc::Object(_) => Unexpected::Map,
        }
    }
}

/// Recursive-descent parser over a body already known to be UTF-8.
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Where arrays, members and owned strings go.
    arena: &'a Bump,
}

impl<'a> Parser<'a> {
    /// The next byte that is not whitespace (moving past the whitespace), `None` at the end.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        loop {
            let byte = *self.bytes.get(self.pos)?;
            if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(byte);
            }
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Doc<'a>> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Doc::String),
            b't' => self.literal("true", Doc::Bool(true)),
            b'f' => self.literal("false", Doc::Bool(false)),
            b'n' => self.literal("null", Doc::Null),
            b'-' | b'0'..=b'9' => self.number().map(Doc::Number),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str, doc: Doc<'a>) -> Option<Doc<'a>> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word.as_bytes()).then(|| {
            self.pos = end;
            doc
        })
    }

    fn object(&mut self, depth: usize) -> Option<Doc<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let mut members: bumpalo::collections::Vec<'a, (&'a str, Doc<'a>)> =
            bumpalo::collections::Vec::with_capacity_in(8, self.arena);
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Doc::Object(members.into_bump_slice_mut()));
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            // A key written with escapes is left to the reference path (no CXone key has one).
            let Cow::Borrowed(key) = self.raw_string()? else { return None };
            if self.peek()? != b':' {
                return None;
            }
            self.pos += 1;
            // Most values are strings: read them here rather than through `value`.
            let value = if self.peek()? == b'"' { Doc::String(self.string()?) } else { self.value(depth)? };
            // serde_json keeps the last of duplicate keys; leave such bodies to it.
            for (existing, _) in &members {
                if *existing == key {
                    return None;
                }
            }
            members.push((key, value));
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(Doc::Object(members.into_bump_slice_mut()));
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Doc<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let mut items = bumpalo::collections::Vec::new_in(self.arena);
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(Doc::Array(items.into_bump_slice_mut()));
        }
        loop {
            items.push(self.value(depth)?);
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(Doc::Array(items.into_bump_slice_mut()));
                }
                _ => return None,
            }
        }
    }

    /// A string starting at the opening quote: borrowed from the body, or copied into the arena
    /// when it holds escapes.
    fn string(&mut self) -> Option<&'a str> {
        match self.raw_string()? {
            Cow::Borrowed(text) => Some(text),
            Cow::Owned(text) => Some(self.arena.alloc_str(&text)),
        }
    }

    /// A string starting at the opening quote; borrowed unless it holds escapes.
    #[inline]
    fn raw_string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.pos + 1;
        let end = start + plain_len(self.bytes.get(start..)?);
        match self.bytes.get(end)? {
            b'"' => {
                self.pos = end + 1;
                // Both ends sit next to a quote, so they are character boundaries.
                self.text.get(start..end).map(Cow::Borrowed)
            }
            b'\\' => {
                self.pos = end;
                self.escaped_string(start)
            }
            _ => None,
        }
    }

    /// The rest of a string that holds escapes, from its start; surrogates must pair up.
    #[cold]
    #[inline(never)]
    fn escaped_string(&mut self, start: usize) -> Option<Cow<'a, str>> {
        let mut out = String::from(self.text.get(start..self.pos)?);
        loop {
            let rest = self.bytes.get(self.pos..)?;
            let plain = plain_len(rest);
            if plain == rest.len() {
                return None;
            }
            out.push_str(self.text.get(self.pos..self.pos + plain)?);
            self.pos += plain;
            match self.bytes[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    let escape = *self.bytes.get(self.pos + 1)?;
                    self.pos += 2;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// The code point of `XXXX` (after `\u`), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2)? != b"\\u" {
                    return None;
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return None;
                }
                char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
            }
            0xDC00..=0xDFFF => None,
            _ => char::from_u32(first),
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// A number in strict JSON syntax. Plain non-negative integers that fit in 64 bits are read
    /// here; every other form goes through serde_json's own number parser, so the value is the same.
    fn number(&mut self) -> Option<Number> {
        let start = self.pos;
        let negative = self.bytes[self.pos] == b'-';
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.bytes.get(self.pos)? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let int_end = self.pos;
        let mut plain = !negative;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !self.bytes.get(self.pos)?.is_ascii_digit() {
                return None;
            }
            self.digits();
            plain = false;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if !self.bytes.get(self.pos)?.is_ascii_digit() {
                return None;
            }
            self.digits();
            plain = false;
        }
        if plain && let Ok(value) = self.text[int_start..int_end].parse::<u64>() {
            return Some(Number::from(value));
        }
        serde_json::from_str(&self.text[start..self.pos]).ok()
    }

    fn digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// jsonschema representation: the validator reads the document through these traits.

/// Marker type naming [`Doc`] as a `jsonschema` representation.
pub struct DocJson;

impl Json for DocJson {
    type Node<'a> = &'a Doc<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = String;

    const ACYCLIC: bool = true;
    // Objects are scanned, not hashed: one pass over the members beats a few lookups.
    const KEYS_PER_LOOKUP: usize = 2;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>(buffer: &mut String, string: &str, f: impl FnOnce(Self::Node<'_>) -> T) -> T {
        buffer.clear();
        buffer.push_str(string);
        f(&Doc::String(buffer))
    }
}

impl<'a> Node<'a, DocJson> for &'a Doc<'a> {
    type Object = &'a [(&'a str, Doc<'a>)];
    type Array = &'a [Doc<'a>];
    type Number = &'a Number;

    fn as_object(&self) -> Option<Self::Object> {
        match self {
            Doc::Object(members) => Some(members),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<Self::Array> {
        match self {
            Doc::Array(items) => Some(items),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self {
            Doc::String(text) => Some(Cow::Borrowed(*text)),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<&'a Number> {
        match self {
            Doc::Number(number) => Some(number),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self {
            Doc::Bool(flag) => Some(*flag),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Doc::Null)
    }

    fn json_type(&self) -> JsonType {
        match self {
            Doc::Null => JsonType::Null,
            Doc::Bool(_) => JsonType::Boolean,
            Doc::Number(_) => JsonType::Number,
            Doc::String(_) => JsonType::String,
            Doc::Array(_) => JsonType::Array,
            Doc::Object(_) => JsonType::Object,
        }
    }

    fn equals_value(&self, expected: &Value) -> bool {
        match (self, expected) {
            // `const`/`enum` on strings, the common case: no `Value` built.
            (Doc::String(text), Value::String(wanted)) => text == wanted,
            (Doc::String(_), _) => false,
            _ => jsonschema::json::cmp::equal(&Doc::to_value(self), expected),
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(Doc::to_value(self))
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(std::ptr::from_ref::<Doc<'a>>(*self) as usize))
    }
}

impl<'a> Object<'a, DocJson> for &'a [(&'a str, Doc<'a>)] {
    type Node = &'a Doc<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn get(&self, key: &Box<str>) -> Option<&'a Doc<'a>> {
        self.iter().find(|(name, _)| **name == **key).map(|(_, value)| value)
    }

    fn members(&self) -> Members<'a> {
        Members(self.iter())
    }
}

/// Iterator over an object's members, as `jsonschema` wants them.
pub struct Members<'a>(std::slice::Iter<'a, (&'a str, Doc<'a>)>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, &'a Doc<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(name, value)| (&**name, value))
    }
}

impl<'a> Array<'a, DocJson> for &'a [Doc<'a>] {
    type Node = &'a Doc<'a>;
    type ElementsIter = std::slice::Iter<'a, Doc<'a>>;

    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn elements(&self) -> Self::ElementsIter {
        self.iter()
    }
}

// ---------------------------------------------------------------------------------------------
// serde: the generated types decode from a document exactly as they do from a `&Value`.
// Every method mirrors `impl Deserializer for &serde_json::Value` (same visitor calls, same
// refusals), except that enums written as single-key maps are refused: the caller then takes the
// reference path, which decides.

macro_rules! deserialize_number {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
            match self {
                Doc::Number(number) => de::Deserializer::deserialize_any(number, visitor),
                other => Err(other.invalid_type(&visitor)),
            }
        }
    )*};
}

impl<'a> Doc<'a> {
    fn invalid_type(&self, expected: &dyn de::Expected) -> serde_json::Error {
        de::Error::invalid_type(self.unexpected(), expected)
    }
}

impl<'de> de::Deserializer<'de> for &'de Doc<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::Null => visitor.visit_unit(),
            Doc::Bool(flag) => visitor.visit_bool(*flag),
            Doc::Number(number) => de::Deserializer::deserialize_any(number, visitor),
            Doc::String(text) => visitor.visit_borrowed_str(text),
            Doc::Array(items) => visit_array(items, visitor),
            Doc::Object(members) => visit_object(members, visitor),
        }
    }

    deserialize_number!(
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::String(variant) => visitor.visit_enum(UnitVariant(variant)),
            other => Err(other.invalid_type(&"a string (unit variant)")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::Bool(flag) => visitor.visit_bool(*flag),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::String(text) => visitor.visit_borrowed_str(text),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::String(text) => visitor.visit_borrowed_str(text),
            Doc::Array(items) => visit_array(items, visitor),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::Null => visitor.visit_unit(),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::Array(items) => visit_array(items, visitor),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::Object(members) => visit_object(members, visitor),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self {
            Doc::Array(items) => visit_array(items, visitor),
            Doc::Object(members) => visit_object(members, visitor),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        visitor.visit_unit()
    }
}

fn visit_array<'de, V: Visitor<'de>>(
    items: &'de [Doc<'de>],
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut access = Items(items.iter());
    let value = visitor.visit_seq(&mut access)?;
    if access.0.len() == 0 {
        Ok(value)
    } else {
        Err(de::Error::invalid_length(items.len(), &"fewer elements in array"))
    }
}

fn visit_object<'de, V: Visitor<'de>>(
    members: &'de [(&'de str, Doc<'de>)],
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut access = Entries { members: members.iter(), value: None };
    let value = visitor.visit_map(&mut access)?;
    if access.members.len() == 0 {
        Ok(value)
    } else {
        Err(de::Error::invalid_length(members.len(), &"fewer elements in map"))
    }
}

struct Items<'de>(std::slice::Iter<'de, Doc<'de>>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, serde_json::Error> {
        self.0.next().map(|item| seed.deserialize(item)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'de> {
    members: std::slice::Iter<'de, (&'de str, Doc<'de>)>,
    /// The value of the key last handed out.
    value: Option<&'de Doc<'de>>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, serde_json::Error> {
        let Some((key, value)) = self.members.next() else { return Ok(None) };
        self.value = Some(value);
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, serde_json::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}

/// An enum written as a string: a unit variant.
struct UnitVariant<'de>(&'de str);

impl<'de> de::EnumAccess<'de> for UnitVariant<'de> {
    type Error = serde_json::Error;
    type Variant = UnitOnly;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, UnitOnly), serde_json::Error> {
        let variant: de::value::StrDeserializer<'_, serde_json::Error> = self.0.into_deserializer();
        seed.deserialize(variant).map(|value| (value, UnitOnly))
    }
}

/// The variant access of a string enum: only unit variants exist.
struct UnitOnly;

impl<'de> de::VariantAccess<'de> for UnitOnly {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), serde_json::Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, serde_json::Error> {
        Err(de::Error::invalid_type(Unexpected::UnitVariant, &"newtype variant"))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, serde_json::Error> {
        Err(de::Error::invalid_type(Unexpected::UnitVariant, &"tuple variant"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        Err(de::Error::invalid_type(Unexpected::UnitVariant, &"struct variant"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every body the parser accepts gives the same value as serde_json.
    #[test]
    fn accepted_bodies_match_serde_json() {
        let bodies: &[&str] = &[
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#" { "s" : "caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \n\t" , "n" : -12.5e3 } "#,
            r#"[0, -0, 1.0, 18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809, 1e300]"#,
            r#""plain""#,
            "{}",
            "[]",
            "  42  ",
        ];
        for body in bodies {
            let expected: Value = serde_json::from_str(body).unwrap();
            let arena = Bump::new();
            let doc = Doc::parse(body.as_bytes(), &arena)
                .unwrap_or_else(|| panic!("the fast parser refused {body}"));
            assert_eq!(doc.to_value(), expected, "{body}");
        }
    }

    /// Whatever serde_json refuses, the parser refuses too (and a few things it leaves to serde_json).
    #[test]
    fn refuses_what_it_does_not_handle() {
        let bodies: &[&[u8]] = &[
            b"",
            b"   ",
            b"\xEF\xBB\xBF{}",
            b"{\"a\":1,\"a\":2}",
            b"{\"\\u0061\":1}",
            b"{\"a\":1}x",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":-}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"tab\there\"}",
            b"{\"a\":[1,]}",
            b"{\"a\":1,}",
            b"{'a':1}",
            b"\xff",
            b"tru",
            b"1e400",
        ];
        for body in bodies {
            assert!(Doc::parse(body, &Bump::new()).is_none(), "{:?}", String::from_utf8_lossy(body));
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(Doc::parse(deep.as_bytes(), &Bump::new()).is_none());
    }
}
