// imgsvc-wasm: the imgsvc core in WebAssembly. Outputs are byte-identical to the server's.

/** Limits that may only tighten the service defaults; larger values change nothing. */
export interface Limits {
  /** Largest accepted input in bytes (default 10 MiB). */
  maxInputBytes?: number;
  /** Largest accepted width or height (default 32768). */
  maxSide?: number;
  /** Largest accepted width × height (default 64 000 000). */
  maxPixels?: number;
  /** Most animation frames accepted (default: no limit; frames are counted, only the first is decoded). */
  maxFrames?: number;
  /** Cap on any single decoder allocation in bytes (default 512 MiB). */
  maxAllocBytes?: number;
}

/** The last four are decoded by the codecs module, loaded on first use. */
export type Format = 'jpeg' | 'png' | 'webp' | 'gif' | 'avif' | 'heic' | 'jxl' | 'tiff';

export interface SourceFacts {
  format: Format;
  bytes: number;
  /** As stored, before orientation. */
  width: number;
  height: number;
  /** After the EXIF orientation: what a viewer sees. */
  orientedWidth: number;
  orientedHeight: number;
  /** EXIF orientation applied, 1–8. */
  orientation: number;
  frames: number;
  hasAlpha: boolean;
  convertedToSrgb: boolean;
}

export interface Output {
  /** The WebP file, exactly as the server stores it. */
  data: Uint8Array;
  width: number;
  height: number;
  bytes: number;
  mime: 'image/webp';
}

export interface Processed {
  source: SourceFacts;
  /** Fits inside 2048×2048, never enlarged, WebP q85. */
  display: Output;
  /** 400×400 centre cover crop, WebP q80. */
  thumbnail: Output;
  /** ThumbHash of the thumbnail (~25 bytes). */
  thumbhash: Uint8Array;
}

export interface Probe {
  /** Any sniffed format name (unsupported ones are refused with `unsupported_format`). */
  format: string;
  width: number;
  height: number;
  orientation: number;
  frames: number;
}

export type Input = Uint8Array | ArrayBuffer | ArrayBufferView | Blob;

export type ErrorCode =
  | 'empty_input'
  | 'too_large'
  | 'dimensions_too_large'
  | 'too_many_pixels'
  | 'too_many_frames'
  | 'memory_limit'
  | 'unsupported_format'
  | 'unsupported_feature'
  | 'corrupt_image'
  | 'encode_failed'
  | 'internal'
  | 'invalid_options'
  | 'codecs_unavailable'
  | 'codecs_not_loaded';

export class ImgsvcError extends Error {
  readonly name: 'ImgsvcError';
  /**
   * Stable: the core's codes, plus `invalid_options` for bad limits, `codecs_unavailable`
   * when the codecs module could not be fetched or compiled, and `codecs_not_loaded` when a
   * synchronous call needs it before `loadCodecs()` has resolved.
   */
  readonly code: ErrorCode;
  /** True when the input was refused; false for our own failures. */
  readonly inputError: boolean;
  /** True when the module panicked (a bug): that instance is not used again. */
  readonly panic: boolean;
}

/**
 * Load and compile the module. Optional (the functions below call it); pass where the
 * `.wasm` is if your bundler or CDN moved it, and `codecs` for where `imgsvc_codecs.wasm`
 * is. A no-op in Node.
 */
export function init(
  wasm?: string | URL | Request | Response | BufferSource | WebAssembly.Module,
  options?: {
    codecs?: string | URL;
    /** How long downloading the codecs module may take (default 60 000 ms). */
    codecsTimeoutMs?: number;
  },
): Promise<void>;

/**
 * Fetch and compile the codecs module (AVIF, HEIC, JPEG XL, TIFF) now. Optional: `process`
 * and `probe` load it on the first photo that needs it; `processSync` and `probeSync` need
 * it loaded first (except in Node).
 */
export function loadCodecs(): Promise<void>;

/** Decode, orient, convert to sRGB, fit, crop and encode, exactly as the server does. */
export function process(input: Input, options?: Limits): Promise<Processed>;

/** Format, dimensions, orientation and frames from the headers; no pixels decoded. */
export function probe(input: Input): Promise<Probe>;

/** `process` without a Promise, once `init()` has resolved (always, in Node). Blocks. */
export function processSync(input: Uint8Array | ArrayBuffer | ArrayBufferView, options?: Limits): Processed;

export function probeSync(input: Uint8Array | ArrayBuffer | ArrayBufferView): Probe;

export interface Previewer {
  /** `process` in a Web Worker; `ms` is the time spent in the core. */
  process(input: Input, options?: Limits): Promise<Processed & { ms: number }>;
  probe(input: Input): Promise<Probe>;
  /** Stop the worker; pending calls are rejected. */
  terminate(): void;
}

/** A Web Worker running the core, so pages never block (browsers only). */
export function createPreviewer(options?: { workerUrl?: string | URL }): Previewer;
