//! Output formats: one module per format, each rendering one [`Event`] as one record (no
//! trailing newline) into a caller-owned buffer, so rendering allocates nothing per event.

pub mod json;
pub mod jsonw;

use crate::event::Event;

/// The output formats a user can choose (`--to`, `format =` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The project's canonical JSON (`docs/event-schema.md`).
    Json,
}

impl Format {
    pub const NAMES: &'static str = "json";

    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
        }
    }

    /// True for formats whose records are JSON objects (usable as HEC `event` or bulk source).
    pub fn is_json(self) -> bool {
        matches!(self, Format::Json)
    }

    /// Appends one rendered record for `ev` to `out`, without a trailing newline.
    pub fn render(self, ev: &Event, out: &mut Vec<u8>) {
        match self {
            Format::Json => json::render(ev, out),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::parse(s).ok_or_else(|| format!("unknown format {s:?} (expected one of: {})", Format::NAMES))
    }
}
