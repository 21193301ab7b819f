//! `imgsvc-wasm`: `imgsvc-core` for JavaScript, through wasm-bindgen.
//!
//! The exports here are the raw layer; the npm package's JavaScript (`js/`) wraps them with
//! lazy initialisation, a Web Worker previewer and readable panics. Results are plain
//! objects (camelCase, `Uint8Array`s for bytes) so they can be posted between threads;
//! errors are `Error`s named `ImgsvcError` carrying the core's stable `code`.

pub mod options;

use std::cell::RefCell;

use imgsvc_core::{Encoded, Format, Policy, ProcessError, Processed};
use imgsvc_sandbox_guest::wire;
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use options::{OptionsError, Value};

thread_local! {
    /// The message of the last panic, for the JavaScript wrapper to report after the trap.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs once when the module is instantiated: remember panic messages, since a panic in
/// `wasm32-unknown-unknown` aborts with a bare `unreachable` trap.
#[wasm_bindgen(start)]
pub fn start() {
    claim_c_heap_first();
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let payload = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let message = match info.location() {
            Some(at) => format!("{payload} (at {at})"),
            None => payload.to_owned(),
        };
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(message));
    }));
}

/// Two allocators share this module's memory: Rust's (dlmalloc, which only ever takes pages
/// it grows itself) and wasi-libc's `malloc` for libwebp's C. Debian's wasi-libc (2022)
/// initialises its heap on the first C `malloc` as everything from `__heap_base` to the
/// memory's *current* size, which would include pages Rust had already grown and filled:
/// heap corruption. So the very first allocation in the module is a C one: encoding a 1×1
/// image, before Rust allocates anything. From then on both only grow fresh pages.
#[allow(unsafe_code)] // libwebp's simple API: one C call and its free, nothing else.
fn claim_c_heap_first() {
    // No Rust allocation on this path: a borrowed pixel, C-owned output freed by C.
    let pixel = [0u8; 3];
    let mut output: *mut u8 = std::ptr::null_mut();
    // SAFETY: `pixel` is one row of one RGB pixel (stride 3), alive for the call; libwebp
    // allocates the output with C's malloc (the point of this call) and gives its pointer.
    unsafe { libwebp_sys::WebPEncodeRGB(pixel.as_ptr(), 1, 1, 3, 1.0, &mut output) };
    // SAFETY: `output` is null or what libwebp allocated above, freed once by libwebp's own
    // free (WebPFree(NULL) does nothing).
    unsafe { libwebp_sys::WebPFree(output.cast()) };
}

/// The message of the panic that caused the last trap, if any (taken once).
#[wasm_bindgen(js_name = takePanicMessage, skip_typescript)]
pub fn take_panic_message() -> Option<String> {
    LAST_PANIC.with(|last| last.borrow_mut().take())
}

/// Panics on purpose, so the tests can see how a panic surfaces in JavaScript.
#[wasm_bindgen(js_name = panicForTests, skip_typescript)]
pub fn panic_for_tests() {
    panic!("deliberate panic requested by a test");
}

/// `imgsvc_core::process` under `Policy::default()` tightened by `options`.
#[wasm_bindgen(skip_typescript)]
pub fn process(bytes: &[u8], options: JsValue) -> Result<JsValue, JsValue> {
    let policy = policy(&options)?;
    let processed = imgsvc_core::process(bytes, &policy).map_err(|e| core_error(&e))?;
    processed_to_js(&processed)
}

/// Whether `bytes` must go to the codecs module (`imgsvc_codecs.wasm`, the core built for
/// `wasm32-wasip1` with every decoder, which the package loads on first use): a format imgsvc
/// accepts that this module has no decoder for. Everything else, including what nothing
/// decodes, stays here.
#[wasm_bindgen(js_name = needsCodecs, skip_typescript)]
pub fn needs_codecs(bytes: &[u8]) -> bool {
    let format = imgsvc_core::sniff(bytes);
    !format.is_supported() && Format::ACCEPTED.contains(&format)
}

/// The codecs module's request (its stdin) for `process(bytes, options)`: the options are
/// read by the same code as for this module's own `process`.
#[wasm_bindgen(js_name = codecsRequest, skip_typescript)]
pub fn codecs_request(bytes: &[u8], options: JsValue) -> Result<Uint8Array, JsValue> {
    let policy = policy(&options)?;
    let request = wire::Request {
        policy,
        input: bytes,
    };
    Ok(Uint8Array::from(request.encode().as_slice()))
}

/// The codecs module's response (its stdout) as `process` returns it, or its refusal thrown as
/// `process` throws one.
#[wasm_bindgen(js_name = codecsResponse, skip_typescript)]
pub fn codecs_response(response: &[u8]) -> Result<JsValue, JsValue> {
    codecs_answer(wire::decode_response(response), processed_to_js)
}

/// The codecs module's request for `probe(bytes)`.
#[wasm_bindgen(js_name = codecsProbeRequest, skip_typescript)]
pub fn codecs_probe_request(bytes: &[u8]) -> Uint8Array {
    Uint8Array::from(wire::ProbeRequest { input: bytes }.encode().as_slice())
}

/// The codecs module's answer to a probe, as `probe` returns it or throws.
#[wasm_bindgen(js_name = codecsProbeResponse, skip_typescript)]
pub fn codecs_probe_response(response: &[u8]) -> Result<JsValue, JsValue> {
    codecs_answer(wire::decode_probe_response(response), probe_to_js)
}

/// A decoded answer of the codecs module as this module's own call would give it: the value,
/// its refusal as the same `ImgsvcError`, or `internal` if the answer can't be read.
fn codecs_answer<T>(
    decoded: Result<Result<T, wire::Refusal>, wire::WireError>,
    to_js: fn(&T) -> Result<JsValue, JsValue>,
) -> Result<JsValue, JsValue> {
    match decoded {
        Ok(Ok(value)) => to_js(&value),
        Ok(Err(refusal)) => Err(refused(
            &refusal.code,
            &refusal.message,
            refusal.input_error,
        )),
        Err(e) => Err(error(
            "internal",
            &format!("the codecs module's answer is unreadable: {e}"),
        )),
    }
}

/// `imgsvc_core::probe`: format, dimensions, orientation and frames from the headers.
#[wasm_bindgen(skip_typescript)]
pub fn probe(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let probe = imgsvc_core::probe(bytes).map_err(|e| core_error(&e))?;
    probe_to_js(&probe)
}

fn probe_to_js(probe: &imgsvc_core::Probe) -> Result<JsValue, JsValue> {
    object(&[
        ("format", probe.format.name().into()),
        ("width", probe.width.into()),
        ("height", probe.height.into()),
        ("orientation", probe.orientation.into()),
        ("frames", probe.frames.into()),
    ])
}

/// The limits `process` applies when given no options.
#[wasm_bindgen(js_name = defaultLimits, skip_typescript)]
pub fn default_limits() -> Result<JsValue, JsValue> {
    let p = Policy::default();
    object(&[
        ("maxInputBytes", (p.max_input_bytes as f64).into()),
        ("maxSide", p.max_side.into()),
        ("maxPixels", (p.max_pixels as f64).into()),
        ("maxFrames", p.max_frames.into()),
        ("maxAllocBytes", (p.max_alloc_bytes as f64).into()),
    ])
}

fn policy(options: &JsValue) -> Result<Policy, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(Policy::default());
    }
    if !options.is_object() {
        return Err(error(
            "invalid_options",
            "options must be an object of limits",
        ));
    }
    let mut read = Vec::new();
    for key in Object::keys(&Object::from(options.clone())).iter() {
        let name = key.as_string().unwrap_or_default();
        let value = Reflect::get(options, &key)?;
        if value.is_undefined() {
            continue;
        }
        let value = match value.as_f64() {
            Some(n) => Value::Number(n),
            None => Value::Other(format!("{value:?}")),
        };
        read.push((name, value));
    }
    options::policy_from(&read).map_err(|e: OptionsError| error(e.code(), &e.to_string()))
}

fn processed_to_js(p: &Processed) -> Result<JsValue, JsValue> {
    let s = &p.source;
    let source = object(&[
        ("format", s.format.name().into()),
        ("bytes", (s.bytes as f64).into()),
        ("width", s.width.into()),
        ("height", s.height.into()),
        ("orientedWidth", s.oriented_width.into()),
        ("orientedHeight", s.oriented_height.into()),
        ("orientation", s.orientation.into()),
        ("frames", s.frames.into()),
        ("hasAlpha", s.has_alpha.into()),
        ("convertedToSrgb", s.converted_to_srgb.into()),
    ])?;
    object(&[
        ("source", source),
        ("display", encoded_to_js(&p.display)?),
        ("thumbnail", encoded_to_js(&p.thumbnail)?),
        ("thumbhash", Uint8Array::from(p.thumbhash.as_slice()).into()),
    ])
}

fn encoded_to_js(e: &Encoded) -> Result<JsValue, JsValue> {
    object(&[
        ("data", Uint8Array::from(e.data.as_slice()).into()),
        ("width", e.width.into()),
        ("height", e.height.into()),
        ("bytes", (e.data.len() as f64).into()),
        ("mime", e.mime().into()),
    ])
}

fn object(fields: &[(&str, JsValue)]) -> Result<JsValue, JsValue> {
    let object = Object::new();
    for (name, value) in fields {
        Reflect::set(&object, &JsValue::from_str(name), value)?;
    }
    Ok(object.into())
}

fn core_error(e: &ProcessError) -> JsValue {
    refused(e.code(), &e.to_string(), e.is_input_error())
}

/// An `ImgsvcError` for a refusal: `inputError` says whether the input was at fault (false:
/// our own failure). Setting a property on a fresh Error cannot fail, so a failure here is
/// ignored rather than replacing the error.
fn refused(code: &str, message: &str, input_error: bool) -> JsValue {
    let js = error(code, message);
    let _ = Reflect::set(&js, &"inputError".into(), &input_error.into());
    js
}

/// An `Error` named `ImgsvcError` with a stable `code`.
fn error(code: &str, message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    error.set_name("ImgsvcError");
    let error: JsValue = error.into();
    let _ = Reflect::set(&error, &"code".into(), &code.into());
    error
}
