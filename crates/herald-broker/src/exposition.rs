//! The Prometheus text exposition format (version 0.0.4), the one writer
//! every part of Herald that serves `/metrics` uses: the broker's counters
//! (rendered by the binary) and the WebHook's.
//!
//! A metric family is a `# HELP` and a `# TYPE` line followed by its
//! samples; label values and help texts are escaped as the format
//! requires, so a value taken from a client (a reason, a listener name)
//! can never break the page.

use std::fmt::{Display, Write as _};

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative `_bucket{le=...}` samples, `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page of metrics being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.name());
        self.out.push('\n');
        self
    }

    /// One sample of the current family: `name{labels} value`.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// Appends a page written elsewhere (another part's families).
    pub fn append(&mut self, other: &str) -> &mut Self {
        self.out.push_str(other);
        self
    }

    /// The text, ready to serve as `text/plain; version=0.0.4`.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_in_the_text_format() {
        let mut page = Exposition::new();
        page.single("up_seconds", Kind::Gauge, "seconds up", 7);
        page.family("drops_total", Kind::Counter, "drops, by reason")
            .sample("drops_total", &[("reason", "queue_full")], 2)
            .sample("drops_total", &[("reason", "x"), ("lane", "3")], 0);
        assert_eq!(
            page.finish(),
            "# HELP up_seconds seconds up\n# TYPE up_seconds gauge\nup_seconds 7\n\
             # HELP drops_total drops, by reason\n# TYPE drops_total counter\n\
             drops_total{reason=\"queue_full\"} 2\ndrops_total{reason=\"x\",lane=\"3\"} 0\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut page = Exposition::new();
        page.family("m", Kind::Histogram, "a\\b\nc").sample(
            "m_bucket",
            &[("le", "a\"b\\c\nd")],
            1.5,
        );
        assert_eq!(
            page.finish(),
            "# HELP m a\\\\b\\nc\n# TYPE m histogram\nm_bucket{le=\"a\\\"b\\\\c\\nd\"} 1.5\n"
        );
    }
}
