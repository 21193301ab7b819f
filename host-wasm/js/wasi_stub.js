// The three WASI calls the module imports: wasi-libc's stdio (the stderr FILE that libwebp's
// C links in) refers to them, but nothing calls them at run time; the package has no files
// or streams. wasm-bindgen's glue imports them from "wasi_snapshot_preview1", which
// build.sh points here. Each answers ENOSYS.
const ENOSYS = 52;
export const fd_write = () => ENOSYS;
export const fd_seek = () => ENOSYS;
export const fd_close = () => ENOSYS;
