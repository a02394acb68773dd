//! Fuzzes the manifest reader: any bytes must give entries or a typed error, never a panic,
//! and the reported lines never go backwards.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use face_enroll::manifest::{Entry, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = Reader::from_reader(Path::new("fuzz.csv"), Cursor::new(data.to_vec())) else {
        return;
    };
    let mut last = 0u64;
    for entry in reader.flatten() {
        let line = match entry {
            Entry::Valid(row) => row.line,
            Entry::Invalid(invalid) => invalid.line,
        };
        assert!(line >= last, "line {line} after {last}");
        last = line;
    }
});
