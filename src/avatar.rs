//! The bot's avatar (`component_post_avatar`, `rest_avatar`): a PNG or JPEG file read and checked
//! once at load, served as the `PHOTO` of the bot's vCard (XEP-0054) and announced by its SHA-1
//! in the bot's presence (XEP-0153).
//!
//! The file is checked by its content, not its name: a PNG must have its signature, an `IHDR`
//! first and chunks whose lengths and CRCs hold up to `IEND`; a JPEG its start marker, a frame
//! header (`SOF`) with the image's size before the scan, and an end marker after it. So a file
//! cut short by a copy, or something else renamed `.png`, stops the module at load with the
//! reason, instead of showing users a broken picture later.

use std::fs::File;
use std::io::Read;

use base64::Engine as _;
use mlua::Table;

use crate::config::Profile;

/// The largest avatar file accepted, in bytes. The whole image travels base64-encoded (a third
/// larger) in one iq: 64 KiB becomes about 88 KiB, far below Prosody's default stanza size
/// limits (256 KiB from clients, 512 KiB between servers) and the usual ones of other servers,
/// so any client can fetch it. XEP-0153 recommends under 8 KiB, which a 96x96 PNG or JPEG meets;
/// the limit leaves room for a photo without allowing a picture no one should fetch per contact.
pub const MAX_SIZE: u64 = 64 * 1024;

/// An avatar checked and ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avatar {
    /// `image/png` or `image/jpeg`, the vCard's `PHOTO/TYPE`.
    pub mime_type: &'static str,
    /// Width and height in pixels, from the image's header.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// The file's bytes.
    pub data: Vec<u8>,
    /// The SHA-1 of `data` in lowercase hex: XEP-0153's photo hash.
    pub sha1: String,
}

impl Avatar {
    /// The avatar in `bytes`, or why they are not a PNG or JPEG this module serves.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Avatar, String> {
        if bytes.len() as u64 > MAX_SIZE {
            return Err(format!("it is {} bytes, more than the {MAX_SIZE} allowed", bytes.len()));
        }
        let (mime_type, (width, height)) = if bytes.starts_with(PNG_SIGNATURE) {
            ("image/png", png_size(&bytes).map_err(|why| format!("it is not a valid PNG: {why}"))?)
        } else if bytes.starts_with(&[0xFF, 0xD8]) {
            ("image/jpeg", jpeg_size(&bytes).map_err(|why| format!("it is not a valid JPEG: {why}"))?)
        } else {
            return Err("it is neither a PNG nor a JPEG (by its first bytes)".into());
        };
        if width == 0 || height == 0 {
            return Err(format!("its header gives the image a size of {width}x{height} pixels"));
        }
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &bytes);
        let sha1 = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Avatar { mime_type, width, height, data: bytes, sha1 })
    }

    /// Reads and checks the file at `path`; errors say what is wrong, not which option.
    pub fn read(path: &str) -> Result<Avatar, String> {
        let file = File::open(path).map_err(|e| format!("cannot open {path:?}: {e}"))?;
        let meta = file.metadata().map_err(|e| format!("cannot read {path:?}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("{path:?} is not a regular file"));
        }
        // Read one byte past the limit at most, whatever the metadata said (a file that grows,
        // a device): the size check below then sees it.
        let mut bytes = Vec::with_capacity(meta.len().min(MAX_SIZE + 1) as usize);
        file.take(MAX_SIZE + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {path:?}: {e}"))?;
        Avatar::from_bytes(bytes).map_err(|why| format!("{path:?}: {why}"))
    }

    /// The file's bytes in base64, the vCard's `PHOTO/BINVAL`.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.data)
    }

    /// The avatar the module of `profile` is configured with, from the raw values of its
    /// options: `None` when the option is unset, an error naming the option when the file
    /// cannot be served.
    pub fn from_options(options: &Table, profile: Profile) -> Result<Option<Avatar>, String> {
        let name = profile.option("avatar");
        let Some(path) = crate::options::string(options, &name)? else { return Ok(None) };
        if path.trim().is_empty() {
            return Err(format!("{name} is empty: set it to the path of a PNG or JPEG file, or remove it"));
        }
        Avatar::read(&path).map(Some).map_err(|why| format!("{name}: {why}"))
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Reads a big-endian number of `N` bytes at `at`, if the data is long enough.
fn be<const N: usize>(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(N)?)?;
    Some(bytes.iter().fold(0, |n, &b| (n << 8) | u32::from(b)))
}

/// The CRC-32 PNG chunks carry (ISO 3309, as in zlib), over the chunk's type and data.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG's width and height from its `IHDR`, once every chunk up to `IEND` is whole and its
/// CRC matches.
fn png_size(data: &[u8]) -> Result<(u32, u32), String> {
    let mut at = PNG_SIGNATURE.len();
    let mut size = None;
    loop {
        let (Some(length), Some(kind)) = (be::<4>(data, at), data.get(at + 4..at + 8)) else {
            return Err("it ends before its IEND chunk (cut short?)".into());
        };
        let body_end = (at + 8).checked_add(length as usize).ok_or("a chunk length overflows")?;
        let (Some(covered), Some(crc)) = (data.get(at + 4..body_end), be::<4>(data, body_end)) else {
            return Err(format!("its {} chunk is cut short", String::from_utf8_lossy(kind)));
        };
        if crc32(covered) != crc {
            return Err(format!("the CRC of its {} chunk does not match", String::from_utf8_lossy(kind)));
        }
        match (kind, size) {
            (b"IHDR", None) if length == 13 => size = Some((be::<4>(data, at + 8), be::<4>(data, at + 12))),
            (b"IHDR", _) => return Err("its IHDR chunk is malformed or repeated".into()),
            (_, None) => return Err("its first chunk is not IHDR".into()),
            (b"IEND", Some(_)) => break,
            _ => {}
        }
        at = body_end + 4;
    }
    match size {
        Some((Some(width), Some(height))) if width <= i32::MAX as u32 && height <= i32::MAX as u32 => {
            Ok((width, height))
        }
        _ => Err("its IHDR gives an impossible size".into()),
    }
}

/// A JPEG's width and height from its frame header (`SOF`), found by walking the marker
/// segments up to the scan; an end-of-image marker must follow the scan.
fn jpeg_size(data: &[u8]) -> Result<(u32, u32), String> {
    let mut at = 2; // after SOI
    let mut size = None;
    loop {
        // A marker: 0xFF, any fill bytes 0xFF, then its code.
        if data.get(at) != Some(&0xFF) {
            return Err(if at >= data.len() {
                "it ends before its image data (cut short?)".into()
            } else {
                format!("no marker where one should be (byte {at})")
            });
        }
        while data.get(at) == Some(&0xFF) {
            at += 1;
        }
        let Some(&code) = data.get(at) else { return Err("it ends inside a marker".into()) };
        at += 1;
        match code {
            // Markers without a length: restart markers and TEM.
            0xD0..=0xD7 | 0x01 => continue,
            0xD8 => return Err("a second start-of-image marker".into()),
            0xD9 => return Err("it ends before its image data".into()),
            _ => {}
        }
        let length = be::<2>(data, at).ok_or("it ends inside a segment header (cut short?)")? as usize;
        if length < 2 || at + length > data.len() {
            return Err("a segment runs past the end of the file (cut short?)".into());
        }
        // SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
        if matches!(code, 0xC0..=0xCF) && !matches!(code, 0xC4 | 0xC8 | 0xCC) {
            let (Some(height), Some(width)) = (be::<2>(data, at + 3), be::<2>(data, at + 5)) else {
                return Err("its frame header is cut short".into());
            };
            if length < 8 {
                return Err("its frame header is cut short".into());
            }
            size = Some((width, height));
        }
        at += length;
        if code == 0xDA {
            break; // start of scan: entropy-coded data follows
        }
    }
    let size = size.ok_or("no frame header (SOF) before its image data")?;
    // In the scan, 0xFF is followed by 0x00 (stuffing) or a restart marker: FF D9 is the end.
    if !data[at..].windows(2).any(|pair| pair == [0xFF, 0xD9]) {
        return Err("no end-of-image marker after its image data (cut short?)".into());
    }
    Ok(size)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PNG chunk with its length and CRC.
    fn chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        let covered = [&kind[..], body].concat();
        out.extend_from_slice(&covered);
        out.extend_from_slice(&crc32(&covered).to_be_bytes());
        out
    }

    /// A valid PNG of `width` x `height` grey pixels (the IDAT is a stored deflate block).
    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale
        let raw: Vec<u8> = (0..height).flat_map(|_| std::iter::once(0).chain((0..width).map(|_| 0x80))).collect();
        let mut zlib = vec![0x78, 0x01, 1];
        zlib.extend_from_slice(&(raw.len() as u16).to_le_bytes());
        zlib.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
        zlib.extend_from_slice(&raw);
        let adler =
            raw.iter().fold((1u32, 0u32), |(a, b), &x| ((a + u32::from(x)) % 65521, (b + a + u32::from(x)) % 65521));
        zlib.extend_from_slice(&((adler.1 << 16) | adler.0).to_be_bytes());
        [PNG_SIGNATURE.to_vec(), chunk(b"IHDR", &ihdr), chunk(b"IDAT", &zlib), chunk(b"IEND", &[])].concat()
    }

    /// The skeleton of a baseline JPEG of `width` x `height`: the segments this module walks.
    pub(crate) fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        out.extend_from_slice(&[0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
        out.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8]);
        out.extend_from_slice(&height.to_be_bytes());
        out.extend_from_slice(&width.to_be_bytes());
        out.extend_from_slice(&[1, 1, 0x11, 0]);
        out.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0]);
        out.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]); // scan data, a stuffed FF, a restart
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    #[test]
    fn a_png_is_read_with_its_size_type_and_hash() {
        let avatar = Avatar::from_bytes(png(3, 2)).unwrap();
        assert_eq!((avatar.mime_type, avatar.width, avatar.height), ("image/png", 3, 2));
        assert_eq!(avatar.data, png(3, 2));
        assert_eq!(avatar.base64(), base64::engine::general_purpose::STANDARD.encode(png(3, 2)));
    }

    #[test]
    fn the_hash_is_the_sha1_of_the_files_bytes_in_lowercase_hex() {
        // FIPS 180's test vector, SHA-1("abc"): the digest in use is SHA-1.
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b"abc");
        assert_eq!(
            digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let jpeg = jpeg(1, 1);
        let expected: String = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &jpeg)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(Avatar::from_bytes(jpeg).unwrap().sha1, expected);
        // A known file: the 1x1 PNG of these tests, written byte for byte by Python's zlib and
        // struct as well (`file` reads it as "PNG image data, 1 x 1"), hashed by `sha1sum`.
        assert_eq!(Avatar::from_bytes(png(1, 1)).unwrap().sha1, "0e785e9636f426a10528cea79f5ef4e0eab2fb0e");
    }

    #[test]
    fn a_jpeg_is_read_with_its_size() {
        let avatar = Avatar::from_bytes(jpeg(96, 64)).unwrap();
        assert_eq!((avatar.mime_type, avatar.width, avatar.height), ("image/jpeg", 96, 64));
        let mut progressive = jpeg(5, 7);
        progressive[21] = 0xC2; // SOF2
        assert_eq!(Avatar::from_bytes(progressive).map(|a| (a.width, a.height)), Ok((5, 7)));
    }

    #[test]
    fn truncated_images_are_refused_at_every_cut() {
        for image in [png(2, 2), jpeg(2, 2)] {
            for cut in 0..image.len() {
                assert!(Avatar::from_bytes(image[..cut].to_vec()).is_err(), "cut at {cut} of {}", image.len());
            }
        }
        assert!(Avatar::from_bytes(png(2, 2)[..40].to_vec()).unwrap_err().contains("cut short"));
    }

    #[test]
    fn other_files_are_refused_with_the_reason() {
        let refused = |bytes: &[u8]| Avatar::from_bytes(bytes.to_vec()).unwrap_err();
        assert!(refused(b"GIF89a\x01\x00\x01\x00").contains("neither a PNG nor a JPEG"));
        assert!(refused(b"<svg xmlns='http://www.w3.org/2000/svg'/>").contains("neither"));
        assert!(refused(b"").contains("neither"));
        let mut corrupt = png(2, 2);
        corrupt[19] ^= 1; // the width, under the IHDR's CRC
        assert!(refused(&corrupt).contains("CRC of its IHDR"));
        let zero = png(0, 2);
        assert!(refused(&zero).contains("0x2"));
        let mut no_sof = jpeg(2, 2);
        no_sof.drain(20..33);
        assert!(refused(&no_sof).contains("no frame header"), "{}", refused(&no_sof));
        let mut no_end = jpeg(2, 2);
        no_end.truncate(no_end.len() - 2);
        assert!(refused(&no_end).contains("end-of-image"));
        let mut idat_first = png(1, 1);
        idat_first.drain(8..33); // the IHDR chunk
        assert!(refused(&idat_first).contains("first chunk is not IHDR"));
    }

    #[test]
    fn the_size_limit_is_checked_on_the_bytes_read() {
        let mut big = png(1, 1);
        big.resize(MAX_SIZE as usize + 1, 0);
        assert!(Avatar::from_bytes(big).unwrap_err().contains("more than the 65536 allowed"));
        let dir = std::env::temp_dir().join(format!("avatar-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.png");
        let mut bytes = png(1, 1);
        bytes.resize(MAX_SIZE as usize * 2, 0);
        std::fs::write(&path, bytes).unwrap();
        assert!(Avatar::read(path.to_str().unwrap()).unwrap_err().contains("65537 bytes"));
        std::fs::write(&path, png(4, 4)).unwrap();
        assert_eq!(Avatar::read(path.to_str().unwrap()).unwrap().width, 4);
        assert!(Avatar::read(dir.to_str().unwrap()).unwrap_err().contains("not a regular file"));
        assert!(Avatar::read("/nonexistent/avatar.png").unwrap_err().contains("cannot open"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_option_is_named_in_every_refusal() {
        let lua = mlua::Lua::new();
        let check = |source: &str, profile: Profile| {
            let table: Table = lua.load(source).eval().unwrap();
            Avatar::from_options(&table, profile)
        };
        assert_eq!(check("return {}", crate::config::COMPONENT_HTTP), Ok(None));
        for (source, profile, expected) in [
            (
                "return { component_post_avatar = 7 }",
                crate::config::COMPONENT_HTTP,
                "component_post_avatar must be a string",
            ),
            ("return { component_post_avatar = ' ' }", crate::config::COMPONENT_HTTP, "component_post_avatar is empty"),
            ("return { rest_avatar = '/nonexistent.png' }", crate::config::REST, "rest_avatar: cannot open"),
            (
                concat!("return { rest_avatar = '", env!("CARGO_MANIFEST_DIR"), "/Cargo.toml' }"),
                crate::config::REST,
                "Cargo.toml\": it is neither",
            ),
        ] {
            let err = check(source, profile).unwrap_err();
            assert!(err.contains(expected), "{source}: {err}");
        }
    }
}
