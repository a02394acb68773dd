//! Minimal image files with the header dimensions asked for: what tests and rehearsals put in
//! the sandbox's OSS to meet pre-flight's checks (which read headers only). No pixels are
//! encoded; each file carries a tag so that two files of the same shape differ.

/// A baseline JPEG: JFIF, an optional EXIF orientation, a comment with `tag`, a frame header
/// (SOF0) of `width`×`height`, and the end marker.
pub fn jpeg(width: u16, height: u16, orientation: Option<u16>, tag: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    segment(&mut out, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    if let Some(o) = orientation {
        // TIFF header (big-endian), IFD0 with one entry: Orientation (0x0112), SHORT, 1.
        let mut exif = b"Exif\0\0MM\0\x2A\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend_from_slice(&o.to_be_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        segment(&mut out, 0xE1, &exif);
    }
    segment(&mut out, 0xFE, tag.as_bytes());
    let mut sof = vec![8];
    sof.extend_from_slice(&height.to_be_bytes());
    sof.extend_from_slice(&width.to_be_bytes());
    sof.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    segment(&mut out, 0xC0, &sof);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// [`jpeg`] padded after its end marker to `total` bytes (a file over a size limit).
pub fn jpeg_of_size(width: u16, height: u16, total: usize, tag: &str) -> Vec<u8> {
    let mut out = jpeg(width, height, None, tag);
    out.resize(total.max(out.len()), 0);
    out
}

/// A PNG: the signature, IHDR of `width`×`height` (8-bit RGB), a `tEXt` chunk with `tag`, IEND.
pub fn png(width: u32, height: u32, tag: &str) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut text = b"Comment\0".to_vec();
    text.extend_from_slice(tag.as_bytes());
    chunk(&mut out, b"tEXt", &text);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A GIF89a header of `width`×`height`, a comment with `tag`, and the trailer.
pub fn gif(width: u16, height: u16, tag: &str) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0]);
    for block in tag.as_bytes().chunks(255) {
        out.extend_from_slice(&[0x21, 0xFE, block.len() as u8]);
        out.extend_from_slice(block);
        out.push(0);
    }
    out.push(0x3B);
    out
}

fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    let len = u16::try_from(body.len() + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body[..usize::from(len) - 2]);
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// PNG's CRC-32 (IEEE, reflected), bit by bit: these files are tiny.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_png_crc_is_the_standards() {
        // The CRC of an empty IEND chunk, as every PNG ends.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn files_of_one_shape_with_different_tags_differ() {
        assert_ne!(jpeg(64, 64, None, "a"), jpeg(64, 64, None, "b"));
        assert_ne!(png(64, 64, "a"), png(64, 64, "b"));
        assert_eq!(jpeg_of_size(64, 64, 5000, "a").len(), 5000);
    }
}
