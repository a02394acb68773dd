//! The EXIF orientation of a JPEG (APP1 `Exif`, IFD0 tag 0x0112), read from its header
//! segments alone: a parser of the one tag pre-flight needs rather than a crate for all of EXIF.

/// Segments looked at before giving up (a JPEG's metadata comes first).
const MAX_SEGMENTS: usize = 64;

/// The orientation (1 … 8) a JPEG's EXIF block states, if it states one.
pub fn jpeg_orientation(bytes: &[u8]) -> Option<u16> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    for _ in 0..MAX_SEGMENTS {
        let header = bytes.get(at..at + 4)?;
        if header[0] != 0xFF {
            return None;
        }
        let marker = header[1];
        // Start of scan, end of image: no more metadata.
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let body = bytes.get(at + 4..at + 2 + len.max(2))?;
        if marker == 0xE1
            && let Some(tiff) = body.strip_prefix(b"Exif\0\0")
        {
            return tiff_orientation(tiff);
        }
        at += 2 + len;
    }
    None
}

/// Orientation from a TIFF block: its byte order, IFD0, the 0x0112 entry.
fn tiff_orientation(tiff: &[u8]) -> Option<u16> {
    let big = match tiff.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at: usize| {
        let b = tiff.get(at..at + 2)?;
        Some(if big {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = usize::from(u16_at(ifd)?);
    (0..entries.min(512)).find_map(|i| {
        let entry = ifd + 2 + i * 12;
        // Tag 0x0112, type SHORT (3): the value sits in the entry's first two value bytes.
        (u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3)
            .then(|| u16_at(entry + 8))
            .flatten()
            .filter(|o| (1..=8).contains(o))
    })
}

/// What an orientation means for someone looking at the stored pixels.
pub fn describe(orientation: u16) -> &'static str {
    match orientation {
        1 => "upright",
        2 => "mirrored",
        3 => "rotated 180° to view",
        4 => "flipped upside down",
        5 => "mirrored and rotated 90° counter-clockwise to view",
        6 => "rotated 90° clockwise to view",
        7 => "mirrored and rotated 90° clockwise to view",
        8 => "rotated 90° counter-clockwise to view",
        _ => "not a valid orientation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::photos::jpeg;

    #[test]
    fn reads_the_orientation_a_jpeg_states_in_either_byte_order() {
        assert_eq!(jpeg_orientation(&jpeg(10, 10, Some(6), "")), Some(6));
        assert_eq!(jpeg_orientation(&jpeg(10, 10, Some(1), "")), Some(1));
        assert_eq!(jpeg_orientation(&jpeg(10, 10, None, "")), None);
        // Little-endian ("II"), the orientation after another tag.
        let mut tiff = b"II\x2A\0\x08\0\0\0\x02\0".to_vec();
        tiff.extend_from_slice(&[0x0F, 0x01, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0]);
        tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
        let mut body = b"Exif\0\0".to_vec();
        body.extend_from_slice(&tiff);
        let mut file = vec![0xFF, 0xD8, 0xFF, 0xE1];
        file.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        file.extend_from_slice(&body);
        file.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(jpeg_orientation(&file), Some(8));
    }

    #[test]
    fn a_damaged_or_cut_header_has_no_orientation_and_no_panic() {
        let whole = jpeg(10, 10, Some(6), "");
        for cut in 0..whole.len() {
            let _ = jpeg_orientation(&whole[..cut]);
        }
        assert_eq!(jpeg_orientation(b"\xFF\xD8\xFF\xE1\x00\x01"), None);
        assert_eq!(jpeg_orientation(b"not a jpeg"), None);
    }
}
