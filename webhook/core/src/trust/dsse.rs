//! DSSE envelopes: `{payloadType, payload (base64), signatures: [{keyid, sig}]}`,
//! signed over the pre-authentication encoding.

use base64::Engine as _;
use serde::Deserialize;

use super::Rejection;

/// Media type of a DSSE envelope layer.
pub const DSSE_ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The payload type of an in-toto statement.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The DSSE pre-authentication encoding:
/// `DSSEv1 <len(type)> <type> <len(body)> <body>`, lengths in ASCII decimal.
/// Written by hand: eight lines, and the DSSE crates bring their own crypto.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload_type: String,
    payload: String,
    #[serde(default)]
    signatures: Vec<RawSignature>,
}

#[derive(Deserialize)]
struct RawSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

/// A decoded, not yet verified envelope.
pub(super) struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    /// `(keyid hint, signature bytes)`.
    pub signatures: Vec<(String, Vec<u8>)>,
}

fn b64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    STANDARD
        .decode(text.as_bytes())
        .or_else(|_| URL_SAFE.decode(text.as_bytes()))
        .ok()
}

impl Envelope {
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, Rejection> {
        let raw: RawEnvelope = serde_json::from_slice(bytes)
            .map_err(|e| Rejection::MalformedEnvelope(format!("not a DSSE envelope: {e}")))?;
        if raw.payload_type != INTOTO_PAYLOAD_TYPE {
            return Err(Rejection::MalformedEnvelope(format!(
                "payload type {:?} is not {INTOTO_PAYLOAD_TYPE}",
                raw.payload_type
            )));
        }
        let payload = b64(&raw.payload)
            .ok_or_else(|| Rejection::MalformedEnvelope("payload is not base64".into()))?;
        if raw.signatures.is_empty() {
            return Err(Rejection::NoSignature);
        }
        let signatures = raw
            .signatures
            .into_iter()
            .map(|s| {
                b64(&s.sig)
                    .map(|sig| (s.keyid, sig))
                    .ok_or_else(|| Rejection::MalformedEnvelope("a signature is not base64".into()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Envelope {
            payload_type: raw.payload_type,
            payload,
            signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn envelopes_without_signatures_or_with_other_payloads_are_refused() {
        let unsigned =
            br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}"#;
        assert!(matches!(
            Envelope::parse(unsigned),
            Err(Rejection::NoSignature)
        ));
        let other =
            br#"{"payloadType":"text/plain","payload":"e30=","signatures":[{"sig":"AA=="}]}"#;
        assert!(matches!(
            Envelope::parse(other),
            Err(Rejection::MalformedEnvelope(_))
        ));
        let not_b64 = br#"{"payloadType":"application/vnd.in-toto+json","payload":"***","signatures":[{"sig":"AA=="}]}"#;
        assert!(matches!(
            Envelope::parse(not_b64),
            Err(Rejection::MalformedEnvelope(_))
        ));
    }
}
