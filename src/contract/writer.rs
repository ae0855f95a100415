//! Compact JSON output for the fast path's canonical event: a serde `Serializer` whose bytes are
//! exactly `serde_json::to_vec`'s (same escapes, numbers written by serde_json itself), but which
//! escapes each string in one pass, and formats `collect_str` values (chrono timestamps) into one
//! string first instead of escaping every fragment they are written in.
//!
//! Anything it does not write the way serde_json would (map keys that are not strings) is an error,
//! and the caller then takes the reference path. Struct field names are copied as they are: only
//! the build.rs-generated types are written here, and build.rs refuses schemas whose property names
//! JSON would have to escape.

use serde::ser::{self, Serialize};

/// Appends `value` as compact JSON to `out`, byte for byte what `serde_json::to_writer` writes.
pub fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    value.serialize(Writer { out })
}

/// The escape for each byte in a JSON string: 0 none, `u` for `\u00XX`, else the letter after `\`
/// (serde_json's table: control characters, `"` and `\`; nothing else, not even DEL).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// The high bit of each byte of `word` that needs an escape (control character, `"`, `\`), and
/// possibly of bytes above such a byte: a borrow can only mark bytes above a byte that really needs
/// one, so "is there any" and the lowest marked byte are exact.
fn stops(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Non-zero where a byte of `word` is below `n` (n <= 0x80).
    let below = |word: u64, n: u64| word.wrapping_sub(ONES * n) & !word & HIGH;
    below(word, 0x20) | below(word ^ (ONES * 0x22), 1) | below(word ^ (ONES * 0x5c), 1)
}

/// The eight bytes of `chunk` as one little-endian word.
fn word_of(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    u64::from_le_bytes(word)
}

/// Length of the leading run of `bytes` that a JSON string holds as is (no escape needed; the same
/// bytes end a plain run when parsing). Checks eight bytes at a time: most strings have no escapes.
pub(super) fn plain_len(bytes: &[u8]) -> usize {
    let mut plain = 0;
    for chunk in bytes.chunks_exact(8) {
        let stop = stops(word_of(chunk));
        if stop != 0 {
            return plain + (stop.trailing_zeros() / 8) as usize;
        }
        plain += 8;
    }
    plain + bytes[plain..].iter().position(|&b| ESCAPE[usize::from(b)] != 0).unwrap_or(bytes.len() - plain)
}

/// Whether `bytes` needs no escape at all. Short strings (most keys and values) are read as one or
/// two overlapping words instead of byte by byte; a byte read twice does not change the answer.
fn is_plain(bytes: &[u8]) -> bool {
    let len = bytes.len();
    let half = |at: usize| {
        let mut half = [0u8; 4];
        half.copy_from_slice(&bytes[at..at + 4]);
        u64::from(u32::from_le_bytes(half))
    };
    match len {
        0 => true,
        // Three reads cover 1..=3 bytes; the spare high bytes are a plain letter.
        1..=3 => {
            let word = u64::from(bytes[0]) | u64::from(bytes[len / 2]) << 8 | u64::from(bytes[len - 1]) << 16;
            stops(word | 0x6161_6161_6100_0000) == 0
        }
        4..=7 => stops(half(0) | half(len - 4) << 32) == 0,
        _ => {
            bytes.chunks_exact(8).all(|chunk| stops(word_of(chunk)) == 0)
                && stops(word_of(&bytes[len - 8..])) == 0
        }
    }
}

/// Appends `text` as a JSON string. Most strings need no escape: that path is inlined into callers.
#[inline]
fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !is_plain(bytes) {
        return write_escaped(out, bytes);
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

#[cold]
#[inline(never)]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() + 8);
    out.push(b'"');
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..index]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `"name":` for a struct field (see the module docs: the name needs no escape).
fn write_field_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(is_plain(name.as_bytes()), "field name {name:?} needs escapes");
    out.reserve(name.len() + 3);
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `fmt::Write` straight into the output (for `collect_str`): no intermediate `String`.
struct Raw<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Raw<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn write_char(&mut self, c: char) -> std::fmt::Result {
        // chrono writes timestamps a character at a time.
        if c.is_ascii() {
            self.0.push(c as u8);
        } else {
            self.0.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        Ok(())
    }
}

/// Numbers go through serde_json itself, so their text is its text.
fn write_number<T: Serialize>(out: &mut Vec<u8>, number: T) -> Result<(), serde_json::Error> {
    serde_json::to_writer(out, &number)
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// An array or object being written; `first` says whether a comma is due.
pub struct Compound<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Written after the closing bracket: `}` when the compound is an enum variant's content.
    close_variant: bool,
}

impl Compound<'_> {
    fn comma(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn finish(self, bracket: u8) -> Result<(), serde_json::Error> {
        self.out.push(bracket);
        if self.close_variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl<'a> Writer<'a> {
    fn open(self, bracket: u8, close_variant: bool) -> Compound<'a> {
        self.out.push(bracket);
        Compound { out: self.out, first: true, close_variant }
    }

    fn open_variant(self, variant: &str, bracket: u8) -> Compound<'a> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        self.open(bracket, true)
    }
}

macro_rules! numbers {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, value: $ty) -> Result<(), serde_json::Error> {
            write_number(self.out, value)
        }
    )*};
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    numbers!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64
    );

    fn serialize_bool(self, value: bool) -> Result<(), serde_json::Error> {
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_char(self, value: char) -> Result<(), serde_json::Error> {
        write_str(self.out, value.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, value: &str) -> Result<(), serde_json::Error> {
        write_str(self.out, value);
        Ok(())
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), serde_json::Error> {
        let mut seq = self.open(b'[', false);
        for byte in value {
            ser::SerializeSeq::serialize_element(&mut seq, byte)?;
        }
        seq.finish(b']')
    }

    fn serialize_none(self) -> Result<(), serde_json::Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), serde_json::Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), serde_json::Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), serde_json::Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        value.serialize(Writer { out: &mut *self.out })?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, serde_json::Error> {
        Ok(self.open(b'[', false))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, serde_json::Error> {
        Ok(self.open(b'[', false))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, serde_json::Error> {
        Ok(self.open(b'[', false))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, serde_json::Error> {
        Ok(self.open_variant(variant, b'['))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, serde_json::Error> {
        Ok(self.open(b'{', false))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>, serde_json::Error> {
        Ok(self.open(b'{', false))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, serde_json::Error> {
        Ok(self.open_variant(variant, b'{'))
    }

    /// Formats straight into the output after the opening quote; only when the text turns out to
    /// need escapes is it taken back out and written escaped (same bytes as format-then-escape).
    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<(), serde_json::Error> {
        let quote = self.out.len();
        self.out.push(b'"');
        if std::fmt::write(&mut Raw(self.out), format_args!("{value}")).is_err() {
            self.out.truncate(quote);
            return Err(ser::Error::custom("a value failed to format itself"));
        }
        let text_start = quote + 1;
        if is_plain(&self.out[text_start..]) {
            self.out.push(b'"');
            return Ok(());
        }
        let text = self.out.split_off(text_start);
        self.out.truncate(quote);
        let text = String::from_utf8(text).map_err(ser::Error::custom)?;
        write_str(self.out, &text);
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        self.comma();
        value.serialize(Writer { out: &mut *self.out })
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.finish(b']')
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.finish(b']')
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.finish(b']')
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.finish(b']')
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), serde_json::Error> {
        self.comma();
        key.serialize(KeyWriter { out: &mut *self.out })
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        self.out.push(b':');
        value.serialize(Writer { out: &mut *self.out })
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.finish(b'}')
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.comma();
        write_field_name(self.out, key);
        value.serialize(Writer { out: &mut *self.out })
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.finish(b'}')
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }

    fn end(self) -> Result<(), serde_json::Error> {
        self.finish(b'}')
    }
}

/// Writes a map key: only strings (the only keys the generated types have); anything else is an
/// error, which sends the payload to the reference path.
struct KeyWriter<'a> {
    out: &'a mut Vec<u8>,
}

fn key_must_be_a_string() -> serde_json::Error {
    ser::Error::custom("the fast writer takes string map keys only")
}

macro_rules! refuse {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, _value: $ty) -> Result<(), serde_json::Error> {
            Err(key_must_be_a_string())
        }
    )*};
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = ser::Impossible<(), serde_json::Error>;
    type SerializeTuple = ser::Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = ser::Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = ser::Impossible<(), serde_json::Error>;
    type SerializeMap = ser::Impossible<(), serde_json::Error>;
    type SerializeStruct = ser::Impossible<(), serde_json::Error>;
    type SerializeStructVariant = ser::Impossible<(), serde_json::Error>;

    refuse!(
        serialize_bool: bool, serialize_char: char, serialize_bytes: &[u8],
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64
    );

    fn serialize_str(self, value: &str) -> Result<(), serde_json::Error> {
        write_str(self.out, value);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit(self) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), serde_json::Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, serde_json::Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, serde_json::Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i32, f64),
        Struct { name: &'static str },
    }

    #[derive(serde::Serialize)]
    struct Everything {
        value: serde_json::Value,
        shapes: Vec<Shape>,
        tuple: (bool, char, Option<u8>, ()),
        bytes: &'static [u8],
        when: chrono::DateTime<chrono::Utc>,
        floats: [f64; 6],
        big: (i128, u128, i64, u64),
        #[serde(flatten)]
        extra: serde_json::Map<String, serde_json::Value>,
    }

    /// Byte for byte what serde_json writes, for every kind of value the generated types can hold.
    #[test]
    fn writes_what_serde_json_writes() {
        let mut control = String::new();
        for byte in 0u8..0x80 {
            control.push(char::from(byte));
        }
        let value = Everything {
            value: json!({
                "text": format!("{control} é 😀 \u{2028} \"quoted\" back\\slash"),
                "": [null, true, false, 0, -1, 1.5, 1e300, -0.0, 18446744073709551615u64, {}, []],
                "nested": {"a/b": {"~": "x"}},
            }),
            shapes: vec![Shape::Unit, Shape::Newtype(7), Shape::Tuple(-3, 0.1), Shape::Struct { name: "n" }],
            tuple: (true, '\u{7}', None, ()),
            bytes: b"\x00\xff",
            when: "2026-11-28T11:30:00.123456+01:30".parse().unwrap(),
            floats: [4.0, 0.1, f64::MAX, f64::MIN_POSITIVE, f64::NAN, f64::INFINITY],
            big: (i128::MIN, u128::MAX, i64::MIN, u64::MAX),
            extra: json!({"z": 1, "a": "b"}).as_object().unwrap().clone(),
        };
        let mut ours = Vec::new();
        write(&value, &mut ours).unwrap();
        assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&value).unwrap());
    }

    /// The word-at-a-time scans agree with a byte-at-a-time scan (`plain_len` stops where it does,
    /// `is_plain` says whether it stops at all), for every byte value at every position of a word
    /// and its tail, after plain bytes of every kind (below and above the stop bytes, multi-byte UTF-8).
    #[test]
    fn plain_len_stops_at_the_first_byte_needing_an_escape() {
        let naive =
            |bytes: &[u8]| bytes.iter().position(|&b| ESCAPE[usize::from(b)] != 0).unwrap_or(bytes.len());
        for filler in [b'a', b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xc3, 0xff] {
            for len in 0..20 {
                assert!(is_plain(&vec![filler; len]), "{filler} x {len}");
                for at in 0..len {
                    for byte in 0..=255u8 {
                        let mut bytes = vec![filler; len];
                        bytes[at] = byte;
                        assert_eq!(plain_len(&bytes), naive(&bytes), "{bytes:?}");
                        assert_eq!(is_plain(&bytes), naive(&bytes) == len, "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_keys_that_are_not_strings() {
        let map: std::collections::BTreeMap<u8, u8> = [(1, 2)].into();
        assert!(write(&map, &mut Vec::new()).is_err());
    }
}
