//! A reader that turns the fuzzer's bytes into small structured choices. Reading past the end
//! yields zeros, so every input is a valid (if short) program.

pub struct Input<'a> {
    data: &'a [u8],
}

#[allow(dead_code)] // each target uses a subset
impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.u8() as usize % n
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A small signed dim index, usually in range, sometimes not (-4..=4).
    pub fn dim(&mut self) -> isize {
        self.below(9) as isize - 4
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// Any f32 bit pattern, NaN and infinities included.
    pub fn f32(&mut self) -> f32 {
        f32::from_bits(self.u32())
    }

    /// A float parameter: usually ordinary, sometimes an edge value.
    pub fn param(&mut self) -> f64 {
        match self.below(8) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -1.0,
            3 => 0.0,
            4 => 1.0,
            _ => f64::from(self.u8()) / 128.0,
        }
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    /// A short string from the next bytes (lossy UTF-8), or an edge-case number.
    pub fn text(&mut self) -> String {
        match self.below(8) {
            0 => u64::MAX.to_string(),
            1 => "-1".into(),
            2 => "NaN".into(),
            3 => "1e400".into(),
            4 => String::new(),
            _ => {
                let n = self.below(24);
                String::from_utf8_lossy(self.bytes(n)).into_owned()
            }
        }
    }
}
