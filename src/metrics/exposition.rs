//! Writing metric families in the Prometheus text format, for the series written at scrape
//! time (the recorder writes the others).

use std::fmt::Write;

use super::family;

/// A Prometheus text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts the family `name` (one of [`super::FAMILIES`]): its `# HELP` and `# TYPE` lines.
    /// Its samples must follow before the next family starts.
    pub fn family(&mut self, name: &str) -> &mut Self {
        let (kind, help) = family(name);
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample of the family started last.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_into(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ENDPOINT_UP, RELOAD_OK};

    #[test]
    fn families_have_help_and_type_and_label_values_are_escaped() {
        let mut e = Exposition::new();
        e.family(RELOAD_OK).sample(RELOAD_OK, &[], 1.0);
        e.family(ENDPOINT_UP).sample(ENDPOINT_UP, &[("check", "a\"b\\c\nd"), ("endpoint", "::1")], 0.0);
        let text = e.into_string();
        let want = "# HELP geodns_config_last_reload_successful 1 if the last config load or reload succeeded, 0 if the last reload was rejected.\n\
                    # TYPE geodns_config_last_reload_successful gauge\n\
                    geodns_config_last_reload_successful 1\n\
                    # HELP geodns_endpoint_up 1 if a probed endpoint is up or not yet judged, 0 if down.\n\
                    # TYPE geodns_endpoint_up gauge\n\
                    geodns_endpoint_up{check=\"a\\\"b\\\\c\\nd\",endpoint=\"::1\"} 0\n";
        assert_eq!(text, want);
    }
}
