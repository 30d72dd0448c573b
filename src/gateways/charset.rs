//! Decoding message bytes by the SMS data coding or charset a gateway
//! reports (Kannel's `coding`/`charset`, Jasmin's `coding`).

use crate::core::reply::{GSM7_BASIC, GSM7_EXTENSION};

/// The SMPP / GSM data coding of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// GSM 03.38 default alphabet, one septet per byte (unpacked).
    Gsm7,
    /// IA5 / ASCII.
    Ascii,
    /// ISO-8859-1.
    Latin1,
    /// UCS-2, big-endian (decoded as UTF-16BE).
    Ucs2,
    /// 8-bit data or anything unknown: UTF-8 if it is, else Latin-1.
    Other,
}

impl Coding {
    /// SMPP `data_coding` values as Jasmin reports them.
    pub fn from_smpp(value: &str) -> Self {
        match value.trim() {
            "0" => Coding::Gsm7,
            "1" => Coding::Ascii,
            "3" => Coding::Latin1,
            "8" => Coding::Ucs2,
            _ => Coding::Other,
        }
    }
}

const GSM7_ESCAPE: u8 = 0x1B;

/// The character of a basic-table septet (`None` for the escape).
fn gsm7_basic(septet: u8) -> Option<char> {
    // GSM7_BASIC lists the table in order, without the escape at 0x1B.
    let index = match septet {
        GSM7_ESCAPE => return None,
        s if s < GSM7_ESCAPE => s as usize,
        s => s as usize - 1,
    };
    GSM7_BASIC.chars().nth(index)
}

pub fn decode(bytes: &[u8], coding: Coding) -> String {
    match coding {
        Coding::Gsm7 => decode_gsm7(bytes),
        Coding::Ascii | Coding::Other => match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
        },
        Coding::Latin1 => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
        Coding::Ucs2 => encoding_rs::UTF_16BE.decode(bytes).0.into_owned(),
    }
}

/// Decodes by a charset name (`UTF-8`, `UTF-16BE`, `ISO-8859-1`…);
/// unknown names fall back to [`Coding::Other`].
pub fn decode_charset(bytes: &[u8], charset: &str) -> String {
    match encoding_rs::Encoding::for_label(charset.trim().as_bytes()) {
        Some(encoding) => encoding.decode(bytes).0.into_owned(),
        None => decode(bytes, Coding::Other),
    }
}

fn decode_gsm7(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut iter = bytes.iter().map(|b| b & 0x7f);
    while let Some(septet) = iter.next() {
        if septet == GSM7_ESCAPE {
            let Some(next) = iter.next() else { break };
            match GSM7_EXTENSION.iter().find(|(code, _)| *code == next) {
                Some((_, c)) => out.push(*c),
                // An unknown escape shows the basic character (03.38 says so).
                None => out.extend(gsm7_basic(next)),
            }
        } else {
            out.extend(gsm7_basic(septet));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_bytes_decode_to_text_including_the_extension_table() {
        // "Hello @ €5 [x]" in unpacked GSM 03.38.
        let bytes = [
            0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x00, 0x20, 0x1b, 0x65, 0x35, 0x20, 0x1b, 0x3c,
            0x78, 0x1b, 0x3e,
        ];
        assert_eq!(decode(&bytes, Coding::Gsm7), "Hello @ €5 [x]");
        assert_eq!(decode(&[0x11, 0x1c, 0x5f], Coding::Gsm7), "_Æ§");
    }

    #[test]
    fn ucs2_and_charsets_decode_cyrillic() {
        let bytes: Vec<u8> = "СТОП".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(decode(&bytes, Coding::Ucs2), "СТОП");
        assert_eq!(decode_charset(&bytes, "UTF-16BE"), "СТОП");
        assert_eq!(decode_charset("СТОП".as_bytes(), "UTF-8"), "СТОП");
        assert_eq!(decode_charset(&[0x53, 0xe9], "ISO-8859-1"), "Sé");
    }

    #[test]
    fn odd_input_never_panics() {
        for coding in [
            Coding::Gsm7,
            Coding::Ascii,
            Coding::Latin1,
            Coding::Ucs2,
            Coding::Other,
        ] {
            decode(&[0x1b], coding);
            decode(&[0xff, 0x00, 0x1b, 0x1b], coding);
            decode(&[0xd8], coding);
        }
        decode_charset(&[0xff], "no-such-charset");
    }
}
