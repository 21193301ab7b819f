//! A tiny reader that turns fuzz bytes into structured choices (what `arbitrary` does, without
//! the dependency): every read succeeds, running out of input yields zeros and empty slices.

pub(crate) struct Input<'a> {
    data: &'a [u8],
}

/// Separates variable-length fields: 0xFF never occurs in UTF-8, so text fields keep every
/// other byte.
pub(crate) const SEPARATOR: u8 = 0xFF;

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub(crate) fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The bytes up to the next separator (or the end), consuming the separator.
    pub(crate) fn field(&mut self) -> &'a [u8] {
        match self.data.iter().position(|&b| b == SEPARATOR) {
            Some(at) => {
                let (field, rest) = self.data.split_at(at);
                self.data = &rest[1..];
                field
            }
            None => std::mem::take(&mut self.data),
        }
    }

    /// `field` as text (invalid UTF-8 replaced).
    pub(crate) fn text(&mut self) -> String {
        String::from_utf8_lossy(self.field()).into_owned()
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}
