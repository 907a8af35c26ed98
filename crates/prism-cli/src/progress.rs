//! Progress bars, one style for every long step.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `len` units of work: "⠋ what [=====>    ] 12/40 unit msg ETA 1m".
pub fn bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{msg}} ETA {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    )
}
