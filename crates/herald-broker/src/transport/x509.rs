//! The subject of a client certificate, as a Common Name and as an RFC 4514
//! Distinguished Name string (`CN=dev1,O=Acme,C=SE`, most specific first,
//! the form OpenSSL's `-nameopt RFC2253` and mosquitto print).
//!
//! Only the few DER structures on the way to the subject are walked; the
//! certificate was verified by rustls before it gets here, but nothing in
//! it is trusted to be well formed: a parse failure gives `None`, never a
//! panic.

/// DER tags used on the way to the subject.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xA0;

/// Names of the attribute types usually found in subjects (RFC 4514 §3
/// and the ones OpenSSL prints by name), by their DER-encoded OID.
const SHORT_NAMES: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x05], "serialNumber"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x09], "STREET"),
    (&[0x55, 0x04, 0x0A], "O"),
    (&[0x55, 0x04, 0x0B], "OU"),
    (&[0x55, 0x04, 0x0C], "title"),
    (&[0x55, 0x04, 0x2A], "GN"),
    (&[0x55, 0x04, 0x04], "SN"),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x19],
        "DC",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x01],
        "UID",
    ),
    (
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01],
        "emailAddress",
    ),
];

/// The names a client certificate gives its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// The subject's first Common Name, if it has one.
    pub cn: Option<String>,
    /// The whole subject, RFC 4514.
    pub dn: String,
}

impl PeerCert {
    /// Reads the subject of a DER certificate.
    pub fn from_der(cert: &[u8]) -> Option<PeerCert> {
        let (tag, certificate, _) = tlv(cert)?;
        if tag != SEQUENCE {
            return None;
        }
        let (tag, mut tbs, _) = tlv(certificate)?;
        if tag != SEQUENCE {
            return None;
        }
        // version (optional), serial, signature algorithm, issuer, validity.
        if tbs.first() == Some(&VERSION) {
            tbs = tlv(tbs)?.2;
        }
        for _ in 0..4 {
            tbs = tlv(tbs)?.2;
        }
        let (tag, subject, _) = tlv(tbs)?;
        (tag == SEQUENCE).then_some(())?;
        subject_names(subject)
    }
}

/// Walks a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn subject_names(mut name: &[u8]) -> Option<PeerCert> {
    let mut rdns = Vec::new();
    let mut cn = None;
    while !name.is_empty() {
        let (tag, mut set, rest) = tlv(name)?;
        (tag == SET).then_some(())?;
        name = rest;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (tag, atv, rest) = tlv(set)?;
            (tag == SEQUENCE).then_some(())?;
            set = rest;
            let (tag, oid, value) = tlv(atv)?;
            (tag == OID).then_some(())?;
            let (vtag, content, _) = tlv(value)?;
            let text = string_value(vtag, content);
            let short = SHORT_NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n);
            if short == Some("CN") && cn.is_none() {
                cn = text.clone();
            }
            let key = match short {
                Some(n) => n.to_owned(),
                None => dotted(oid)?,
            };
            let value = match (&text, short) {
                (Some(t), Some(_)) => escape(t),
                // Unknown types and non-string values: the DER value in hex.
                _ => format!("#{}", hex(value.get(..value.len() - tlv(value)?.2.len())?)),
            };
            parts.push(format!("{key}={value}"));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(PeerCert {
        cn,
        dn: rdns.join(","),
    })
}

/// One DER element at the start of `input`: its tag, its contents and what
/// follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(n)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (content, after) = rest.split_at_checked(len)?;
    Some((tag, content, after))
}

/// The text of a directory string, if `tag` is one of the string types.
fn string_value(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, VisibleString, NumericString.
        0x0C | 0x13 | 0x16 | 0x1A | 0x12 => String::from_utf8(content.to_vec()).ok(),
        // TeletexString: in practice Latin-1.
        0x14 => Some(content.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1E => {
            let units = content
                .chunks(2)
                .map(|c| Some(u16::from_be_bytes(c.try_into().ok()?)))
                .collect::<Option<Vec<u16>>>()?;
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE.
        0x1C => content
            .chunks(4)
            .map(|c| {
                let b: [u8; 4] = c.try_into().ok()?;
                char::from_u32(u32::from_be_bytes(b))
            })
            .collect(),
        _ => None,
    }
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// An OID in dotted decimal.
fn dotted(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
        }
    }
    let (&first, rest) = arcs.split_first()?;
    let (a, b) = match first {
        0..40 => (0, first),
        40..80 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut out = format!("{a}.{b}");
    for arc in rest {
        out.push_str(&format!(".{arc}"));
    }
    Some(out)
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_rfc_4514() {
        assert_eq!(
            escape("a,b+c\"d\\e<f>g;h"),
            "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h"
        );
        assert_eq!(escape("#x#"), "\\#x#");
        assert_eq!(escape(" mid dle "), "\\ mid dle\\ ");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn dotted_oids() {
        assert_eq!(dotted(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
        assert_eq!(
            dotted(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D]).as_deref(),
            Some("1.2.840.113549")
        );
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x05, 0x30, 0x03],
        ] {
            assert_eq!(PeerCert::from_der(bad), None);
        }
    }
}
