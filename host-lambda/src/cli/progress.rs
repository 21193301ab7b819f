//! Progress of the long migration commands: a bar with rate and ETA on a terminal, JSON
//! lines (`{"progress": …}` on stderr) for machines — when stderr is not a terminal, or
//! with `--json`.

use std::io::IsTerminal;

/// Whether to draw a bar: only for a person watching a terminal who did not ask for JSON.
pub fn draws_bar(stderr_is_terminal: bool, json: bool) -> bool {
    stderr_is_terminal && !json
}

pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: &'static str,
    /// JSON lines: one each time `done` passes another `step`.
    step: u64,
    next_line: u64,
    /// The latest `done` and detail, for the closing line.
    last: Option<(u64, serde_json::Value)>,
    printed: u64,
}

impl Progress {
    /// `total` (when known) gives the bar its length and the ETA.
    pub fn new(label: &'static str, total: Option<u64>, json: bool, step: u64) -> Progress {
        let bar = draws_bar(std::io::stderr().is_terminal(), json).then(|| {
            let bar = match total {
                Some(total) => indicatif::ProgressBar::new(total),
                None => indicatif::ProgressBar::no_length(),
            };
            let style = indicatif::ProgressStyle::with_template(
                "{msg:>9} [{bar:40}] {pos}/{len} {per_sec} ETA {eta} {prefix}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label);
            bar
        });
        Progress {
            bar,
            label,
            step: step.max(1),
            next_line: step.max(1),
            last: None,
            printed: 0,
        }
    }

    /// `done` items so far; `detail` (counts worth watching) goes beside the bar or into
    /// the JSON line.
    pub fn update(&mut self, done: u64, detail: &serde_json::Value) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_prefix(compact(detail));
            }
            None if done >= self.next_line => {
                self.line(done, detail);
                self.next_line = done + self.step;
            }
            None => {}
        }
        self.last = Some((done, detail.clone()));
    }

    fn line(&mut self, done: u64, detail: &serde_json::Value) {
        eprintln!(
            "{}",
            serde_json::json!({"progress": {"command": self.label, "done": done, "detail": detail}})
        );
        self.printed = done;
    }

    /// The bar's last frame, or the closing JSON line (unless the last one said it all).
    pub fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        } else if let Some((done, detail)) = self.last.take()
            && done != self.printed
        {
            self.line(done, &detail);
        }
    }
}

/// `{"missing": 2, "mismatched": 0}` as `missing 2 · mismatched 0`.
fn compact(detail: &serde_json::Value) -> String {
    match detail.as_object() {
        Some(fields) => fields
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(" · "),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_only_for_a_terminal_without_json() {
        assert!(draws_bar(true, false));
        assert!(!draws_bar(true, true));
        assert!(!draws_bar(false, false));
        assert!(!draws_bar(false, true));
    }

    #[test]
    fn details_read_as_words_beside_the_bar() {
        let detail = serde_json::json!({"missing": 2, "mismatched": 0});
        assert_eq!(compact(&detail), "mismatched 0 · missing 2");
    }
}
