//! Length-prefixed little-endian framing between the sandbox host and the guest.
//!
//! Request: `IMGSVCQ1`, the five policy limits as `u64`, then the input bytes to the end; or
//! `IMGSVCP1` and the input bytes (a probe: format, sizes, orientation and frames).
//! Response: `IMGSVCR2`, then `0` and the `Processed` fields, or `1` and a refusal's code,
//! message and whether the input was at fault. A probe's answer has the `Probe` fields
//! after its `0`. Strings and byte strings are a `u32` length and the bytes. Nothing may follow.

use imgsvc_core::{Encoded, Format, Policy, Probe, ProcessError, Processed, SourceFacts};
use serde::Deserialize;

const REQUEST_MAGIC: &[u8; 8] = b"IMGSVCQ1";
const PROBE_MAGIC: &[u8; 8] = b"IMGSVCP1";
const RESPONSE_MAGIC: &[u8; 8] = b"IMGSVCR2";
const OK: u8 = 0;
const REFUSED: u8 = 1;

/// A malformed request or response: a bug or a version mismatch, never the image's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not an imgsvc sandbox {0} (wrong magic or version)")]
    Magic(&'static str),
    #[error("the message ended early while reading {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// What the guest is asked to do: process `input` under `policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub policy: Policy,
    pub input: &'a [u8],
}

/// The core refused the input (or failed): its stable `code` and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: String,
    pub message: String,
    /// The input was refused (`ProcessError::is_input_error`); false for the core's own failures.
    pub input_error: bool,
}

impl From<&ProcessError> for Refusal {
    fn from(error: &ProcessError) -> Self {
        Refusal {
            code: error.code().to_owned(),
            message: error.to_string(),
            input_error: error.is_input_error(),
        }
    }
}

impl Request<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let p = &self.policy;
        let mut out = Vec::with_capacity(REQUEST_MAGIC.len() + 40 + self.input.len());
        out.extend_from_slice(REQUEST_MAGIC);
        for limit in [
            p.max_input_bytes,
            u64::from(p.max_side),
            p.max_pixels,
            u64::from(p.max_frames),
            p.max_alloc_bytes,
        ] {
            out.extend_from_slice(&limit.to_le_bytes());
        }
        out.extend_from_slice(self.input);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Request<'_>, WireError> {
        let mut r = Reader::new(bytes);
        if r.take(8, "magic")? != REQUEST_MAGIC {
            return Err(WireError::Magic("request"));
        }
        let max_input_bytes = r.u64("max_input_bytes")?;
        let max_side = narrow(r.u64("max_side")?, "max_side")?;
        let max_pixels = r.u64("max_pixels")?;
        let max_frames = narrow(r.u64("max_frames")?, "max_frames")?;
        let max_alloc_bytes = r.u64("max_alloc_bytes")?;
        Ok(Request {
            policy: Policy {
                max_input_bytes,
                max_side,
                max_pixels,
                max_frames,
                max_alloc_bytes,
            },
            input: r.rest(),
        })
    }
}

/// A probe of `input`: `imgsvc_core::probe`, which reads headers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest<'a> {
    pub input: &'a [u8],
}

impl ProbeRequest<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROBE_MAGIC.len() + self.input.len());
        out.extend_from_slice(PROBE_MAGIC);
        out.extend_from_slice(self.input);
        out
    }
}

/// The guest's whole job: read either request from `bytes`, do it, and encode the answer.
pub fn answer(bytes: &[u8]) -> Result<Vec<u8>, WireError> {
    if let Some(input) = bytes.strip_prefix(PROBE_MAGIC) {
        return Ok(encode_probe_response(&imgsvc_core::probe(input)));
    }
    Ok(handle(&Request::decode(bytes)?))
}

pub fn encode_probe_response(outcome: &Result<Probe, ProcessError>) -> Vec<u8> {
    encode_outcome(outcome, |w, p| {
        w.str(p.format.name());
        w.u32(p.width);
        w.u32(p.height);
        w.0.push(p.orientation);
        w.u32(p.frames);
    })
}

pub fn decode_probe_response(bytes: &[u8]) -> Result<Result<Probe, Refusal>, WireError> {
    decode_outcome(bytes, |r| {
        Ok(Probe {
            format: format_named(&r.string("format")?)?,
            width: r.u32("width")?,
            height: r.u32("height")?,
            orientation: r.u8("orientation")?,
            frames: r.u32("frames")?,
        })
    })
}

/// Run the core under the request's policy, never looser than the default, and encode the
/// outcome.
pub fn handle(request: &Request<'_>) -> Vec<u8> {
    let policy = Policy::default().tightened_by(request.policy);
    encode_response(&imgsvc_core::process(request.input, &policy))
}

pub fn encode_response(outcome: &Result<Processed, ProcessError>) -> Vec<u8> {
    encode_outcome(outcome, |w, p| {
        let s = &p.source;
        w.str(s.format.name());
        w.u64(s.bytes);
        for v in [s.width, s.height, s.oriented_width, s.oriented_height] {
            w.u32(v);
        }
        w.0.push(s.orientation);
        w.u32(s.frames);
        w.0.push(u8::from(s.has_alpha));
        w.0.push(u8::from(s.converted_to_srgb));
        w.encoded(&p.display);
        w.encoded(&p.thumbnail);
        w.bytes(&p.thumbhash);
    })
}

pub fn decode_response(bytes: &[u8]) -> Result<Result<Processed, Refusal>, WireError> {
    decode_outcome(bytes, |r| {
        let source = SourceFacts {
            format: format_named(&r.string("format")?)?,
            bytes: r.u64("bytes")?,
            width: r.u32("width")?,
            height: r.u32("height")?,
            oriented_width: r.u32("oriented_width")?,
            oriented_height: r.u32("oriented_height")?,
            orientation: r.u8("orientation")?,
            frames: r.u32("frames")?,
            has_alpha: r.bool("has_alpha")?,
            converted_to_srgb: r.bool("converted_to_srgb")?,
        };
        Ok(Processed {
            source,
            display: r.encoded("display")?,
            thumbnail: r.encoded("thumbnail")?,
            thumbhash: r.bytes("thumbhash")?.to_vec(),
        })
    })
}

/// Every answer's envelope: the magic, then `OK` and what `write_ok` writes, or `REFUSED` and
/// the refusal.
fn encode_outcome<T>(
    outcome: &Result<T, ProcessError>,
    write_ok: impl FnOnce(&mut Writer, &T),
) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.0.extend_from_slice(RESPONSE_MAGIC);
    match outcome {
        Ok(value) => {
            w.0.push(OK);
            write_ok(&mut w, value);
        }
        Err(error) => w.refusal(&Refusal::from(error)),
    }
    w.0
}

/// The envelope `encode_outcome` writes, with `read_ok` for what follows `OK`; nothing may
/// trail it.
fn decode_outcome<'a, T>(
    bytes: &'a [u8],
    read_ok: impl FnOnce(&mut Reader<'a>) -> Result<T, WireError>,
) -> Result<Result<T, Refusal>, WireError> {
    let mut r = Reader::new(bytes);
    if r.take(8, "magic")? != RESPONSE_MAGIC {
        return Err(WireError::Magic("response"));
    }
    let outcome = match r.u8("status")? {
        OK => Ok(read_ok(&mut r)?),
        REFUSED => Err(r.refusal()?),
        other => {
            return Err(WireError::Invalid {
                field: "status",
                reason: other.to_string(),
            });
        }
    };
    match r.rest().len() {
        0 => Ok(outcome),
        n => Err(WireError::Trailing(n)),
    }
}

fn narrow(value: u64, field: &'static str) -> Result<u32, WireError> {
    u32::try_from(value).map_err(|e| WireError::Invalid {
        field,
        reason: e.to_string(),
    })
}

fn format_named(name: &str) -> Result<Format, WireError> {
    use serde::de::value::{Error, StrDeserializer};
    Format::deserialize(StrDeserializer::<Error>::new(name)).map_err(|e| WireError::Invalid {
        field: "format",
        reason: e.to_string(),
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        // Every byte string here is far below 4 GiB (a wasm32 guest can't hold more).
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn refusal(&mut self, refusal: &Refusal) {
        self.0.push(REFUSED);
        self.str(&refusal.code);
        self.str(&refusal.message);
        self.0.push(u8::from(refusal.input_error));
    }
    fn encoded(&mut self, e: &Encoded) {
        self.u32(e.width);
        self.u32(e.height);
        self.bytes(&e.data);
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(WireError::Invalid {
                field: what,
                reason: other.to_string(),
            }),
        }
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }
    fn refusal(&mut self) -> Result<Refusal, WireError> {
        Ok(Refusal {
            code: self.string("code")?,
            message: self.string("message")?,
            input_error: self.bool("input_error")?,
        })
    }
    fn string(&mut self, what: &'static str) -> Result<String, WireError> {
        String::from_utf8(self.bytes(what)?.to_vec()).map_err(|e| WireError::Invalid {
            field: what,
            reason: e.to_string(),
        })
    }
    fn encoded(&mut self, what: &'static str) -> Result<Encoded, WireError> {
        Ok(Encoded {
            width: self.u32(what)?,
            height: self.u32(what)?,
            data: self.bytes(what)?.to_vec(),
        })
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let policy = Policy::default().tightened_by(Policy {
            max_side: 1000,
            ..Policy::default()
        });
        let bytes = Request {
            policy,
            input: b"abc",
        }
        .encode();
        let decoded = Request::decode(&bytes).unwrap();
        assert_eq!(decoded.policy, policy);
        assert_eq!(decoded.input, b"abc");
        assert_eq!(
            Request::decode(b"IMGSVCQ0"),
            Err(WireError::Magic("request"))
        );
        assert!(matches!(
            Request::decode(&bytes[..20]),
            Err(WireError::Truncated(_))
        ));
    }

    #[test]
    fn refusals_round_trip() {
        let refused = handle(&Request {
            policy: Policy::default(),
            input: b"<html></html>",
        });
        let outcome = decode_response(&refused).unwrap();
        let refusal = outcome.unwrap_err();
        assert_eq!(refusal.code, "unsupported_format");
        assert!(refusal.message.contains("html"), "{}", refusal.message);
    }

    #[test]
    fn probes_round_trip_and_refusals_say_whose_fault() {
        use imgsvc_testkit::forge;
        let jpeg = forge::jpeg_rgb(&forge::gradient(5, 3));
        let answered = answer(&ProbeRequest { input: &jpeg }.encode()).unwrap();
        let probe = decode_probe_response(&answered).unwrap().unwrap();
        assert_eq!(
            (probe.format, probe.width, probe.height, probe.frames),
            (Format::Jpeg, 5, 3, 1)
        );
        let refused = answer_for_probe(b"not an image");
        assert_eq!(refused.code, "unsupported_format");
        assert!(refused.input_error);
        let internal = decode_response(&encode_response(&Err(ProcessError::Internal {
            stage: "test",
            reason: "x".into(),
        })))
        .unwrap()
        .unwrap_err();
        assert!(!internal.input_error);
    }

    fn answer_for_probe(input: &[u8]) -> Refusal {
        let bytes = answer(&ProbeRequest { input }.encode()).unwrap();
        decode_probe_response(&bytes).unwrap().unwrap_err()
    }

    #[test]
    fn the_guest_never_loosens_the_default_policy() {
        let loose = Policy {
            max_input_bytes: u64::MAX,
            ..Policy::default()
        };
        let big = vec![0xFF; (Policy::DEFAULT_MAX_INPUT_BYTES + 1) as usize];
        let outcome = decode_response(&handle(&Request {
            policy: loose,
            input: &big,
        }))
        .unwrap();
        assert_eq!(outcome.unwrap_err().code, "too_large");
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        assert_eq!(decode_response(b""), Err(WireError::Truncated("magic")));
        let mut ok = encode_response(&Err(ProcessError::EmptyInput));
        ok.push(0);
        assert_eq!(decode_response(&ok), Err(WireError::Trailing(1)));
        let mut bad_status = RESPONSE_MAGIC.to_vec();
        bad_status.push(7);
        assert!(matches!(
            decode_response(&bad_status),
            Err(WireError::Invalid {
                field: "status",
                ..
            })
        ));
    }
}
