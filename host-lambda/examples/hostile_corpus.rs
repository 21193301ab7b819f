//! Writes the hostile corpus (`imgsvc_testkit::hostile`) to a directory, with
//! `EXPECTED.tsv` (case, bytes, expected code, HTTP status and problem code):
//!
//!     cargo run -p imgsvc-lambda --example hostile_corpus -- /tmp/hostile
//!
//! `cargo nextest run -p imgsvc-lambda --test hostile_corpus` runs them all through the real
//! binary and server; this is for poking at one case by hand (`imgsvc process FILE`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use imgsvc_testkit::hostile as corpus;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: hostile_corpus OUT_DIR"))?;
    std::fs::create_dir_all(&dir)?;
    let mut expected = String::from("case\tbytes\texpected\tstatus\thttp_code\tnote\n");
    for case in corpus::all() {
        std::fs::write(dir.join(&case.name), &case.bytes)?;
        expected.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            case.name,
            case.bytes.len(),
            case.expect.code,
            case.expect.status,
            case.expect.http_code,
            case.note
        ));
    }
    std::fs::write(dir.join("EXPECTED.tsv"), expected)?;
    println!("{}", dir.display());
    Ok(())
}
