//! `thumbnail`: an image (PNG, JPEG, GIF, WebP) in, an image that fits a box
//! out: PNG unless the job's parameters ask for JPEG or WebP
//! ([`crate::params::thumbnail`] reads them into a [`Request`]).
//!
//! Hostile input is refused in layers, cheapest first:
//! 1. the body size limit (the server, before any of this runs);
//! 2. the format is sniffed from the magic bytes, not trusted from the
//!    `Content-Type` (which only has to be plausible);
//! 3. the dimensions are read from the header alone (`into_dimensions` on a
//!    fresh reader) and checked against `max_side` and `max_pixels` before
//!    anything is decoded, which is what stops a decompression bomb: a few
//!    KiB of PNG can announce 65535 × 65535 pixels, 16 GiB once decoded;
//! 4. the decoder itself runs with `image::Limits` (side and allocation
//!    caps) in case a format's header and its frames disagree;
//! 5. the server runs this on a blocking thread under the kind's timeout.
//!
//! No parameter reaches steps 1 to 4: a request chooses the box and the
//! output format, never the decode limits, so asking for a huge thumbnail
//! cannot let a huge image in.
//!
//! Images already inside the box are re-encoded at their own size: a
//! thumbnail is never larger than its source. JPEG has no alpha channel: a
//! JPEG thumbnail of a transparent image drops it (each pixel keeps its
//! colour values); PNG and WebP keep it.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat, ImageReader};

use super::{RunError, essence};
use crate::config::ThumbnailConfig;

/// Content types accepted; the bytes decide the actual format.
const ACCEPTED: &str = "image/png, image/jpeg, image/gif, image/webp or application/octet-stream";

/// Refuses a `Content-Type` that cannot be an image we read. A missing type
/// is accepted (the bytes are sniffed anyway).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), RunError> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    match essence(ct).as_str() {
        "image/png"
        | "image/jpeg"
        | "image/jpg"
        | "image/gif"
        | "image/webp"
        | "application/octet-stream" => Ok(()),
        _ => Err(RunError::UnsupportedType {
            got: ct.to_owned(),
            accepted: ACCEPTED,
        }),
    }
}

/// JPEG quality when a job asks for JPEG without a `quality`: 85 keeps
/// artefacts out of sight at thumbnail sizes for a fraction of PNG's bytes.
pub const JPEG_QUALITY: u8 = 85;

/// The encoding of a thumbnail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// PNG, the default.
    Png,
    /// Baseline JPEG at `quality` (1 to 100).
    Jpeg {
        /// 1 (smallest) to 100 (best).
        quality: u8,
    },
    /// Lossless WebP (VP8L): the only WebP the `image` crate's encoder writes.
    WebP,
}

impl Output {
    /// The `Content-Type` of the result.
    pub fn content_type(self) -> &'static str {
        match self {
            Output::Png => "image/png",
            Output::Jpeg { .. } => "image/jpeg",
            Output::WebP => "image/webp",
        }
    }
}

/// What one run makes: the box to fit in and the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `(width, height)` the thumbnail must fit in, each at least 1.
    pub bbox: (u32, u32),
    /// How to encode it.
    pub output: Output,
}

/// The box a request asks for, `(width, height)`: each side from the query
/// or the configured default, each within `1..=max`.
pub fn requested_box(
    width: Option<u32>,
    height: Option<u32>,
    cfg: &ThumbnailConfig,
) -> Result<(u32, u32), RunError> {
    let side = |v: Option<u32>, default: u32, max: u32, name: &str| match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(RunError::BadParameter(format!(
            "{name}={n} is out of range: expected 1 to {max}"
        ))),
    };
    Ok((
        side(width, cfg.default_box.0, cfg.max_box.0, "width")?,
        side(height, cfg.default_box.1, cfg.max_box.1, "height")?,
    ))
}

/// The largest size with the aspect ratio of `(w, h)` that fits in
/// `(box_w, box_h)`, never larger than `(w, h)` itself and never zero.
pub fn fit_within((w, h): (u32, u32), (box_w, box_h): (u32, u32)) -> (u32, u32) {
    if w <= box_w && h <= box_h {
        return (w.max(1), h.max(1));
    }
    // Compare w/box_w with h/box_h without floats: the tighter side sets the
    // scale, the other is rounded to nearest. u64 cannot overflow: each
    // factor is below 2^32.
    let (w64, h64, bw, bh) = (
        u64::from(w),
        u64::from(h),
        u64::from(box_w),
        u64::from(box_h),
    );
    let (nw, nh) = if w64 * bh >= h64 * bw {
        (bw, (h64 * bw + w64 / 2) / w64)
    } else {
        ((w64 * bh + h64 / 2) / h64, bh)
    };
    // Cannot fail: nw <= box_w and nh <= box_h, both u32.
    (
        u32::try_from(nw.clamp(1, bw)).expect("bounded by box_w"),
        u32::try_from(nh.clamp(1, bh)).expect("bounded by box_h"),
    )
}

/// Decodes `input` within the decode limits of `cfg`, scales it into
/// `req.bbox` and encodes it as `req.output`.
pub fn thumbnail(input: &[u8], cfg: &ThumbnailConfig, req: &Request) -> Result<Vec<u8>, RunError> {
    let format = sniff(input)?;
    if format == ImageFormat::Jpeg && !jpeg_has_end(input) {
        // The JPEG decoder fills a truncated image with grey instead of
        // failing; a thumbnail of half a photo is not a result.
        return Err(RunError::Undecodable(
            "truncated JPEG: no end-of-image marker after the last scan".to_owned(),
        ));
    }

    // Header only: no pixel is decoded yet.
    let (width, height) = ImageReader::with_format(Cursor::new(input), format)
        .into_dimensions()
        .map_err(|e| RunError::Undecodable(format!("cannot read the {format:?} header: {e}")))?;
    if width > cfg.max_side
        || height > cfg.max_side
        || u64::from(width) * u64::from(height) > cfg.max_pixels
    {
        return Err(RunError::TooManyPixels {
            width,
            height,
            max_side: cfg.max_side,
            max_pixels: cfg.max_pixels,
        });
    }

    let mut limits = image::Limits::default();
    limits.max_image_width = Some(cfg.max_side);
    limits.max_image_height = Some(cfg.max_side);
    // 8 bytes a pixel covers the widest layout these formats decode to
    // (16-bit RGBA PNG).
    limits.max_alloc = Some(cfg.max_pixels.saturating_mul(8));
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| RunError::Undecodable(format!("cannot decode the {format:?} image: {e}")))?;

    let (nw, nh) = fit_within((image.width(), image.height()), req.bbox);
    let small = if (nw, nh) == (image.width(), image.height()) {
        image
    } else {
        image.thumbnail_exact(nw, nh)
    };
    encode(&small, req.output)
}

/// Encodes `image` as `output`. `write_to` and `write_with_encoder` convert
/// the pixels to what the encoder takes (8-bit for WebP, RGB or grey
/// without alpha for JPEG).
fn encode(image: &DynamicImage, output: Output) -> Result<Vec<u8>, RunError> {
    let mut out = Cursor::new(Vec::new());
    let written = match output {
        Output::Png => image.write_to(&mut out, ImageFormat::Png),
        Output::Jpeg { quality } => {
            image.write_with_encoder(JpegEncoder::new_with_quality(&mut out, quality))
        }
        Output::WebP => image.write_to(&mut out, ImageFormat::WebP),
    };
    written.map_err(|e| RunError::Internal(format!("cannot encode {output:?}: {e}")))?;
    Ok(out.into_inner())
}

/// Whether a JPEG has an EOI marker (`FF D9`) after its last start-of-scan
/// (`FF DA`). Inside entropy-coded data a literal `FF` is always followed by
/// `00` (byte stuffing), so `FF D9` there can only be the real marker; bytes
/// after EOI (trailers some cameras append) are allowed.
fn jpeg_has_end(input: &[u8]) -> bool {
    let last_scan = input.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    last_scan.is_some_and(|at| input[at..].windows(2).any(|w| w == [0xFF, 0xD9]))
}

/// The format from the magic bytes, if it is one we decode.
fn sniff(input: &[u8]) -> Result<ImageFormat, RunError> {
    match image::guess_format(input) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP)) => {
            Ok(f)
        }
        Ok(other) => Err(RunError::Undecodable(format!(
            "{other:?} images are not supported: expected PNG, JPEG, GIF or WebP"
        ))),
        Err(_) => Err(RunError::Undecodable(
            "input is not a recognised image: expected PNG, JPEG, GIF or WebP".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_and_stays_in_the_box() {
        assert_eq!(fit_within((1000, 500), (256, 256)), (256, 128));
        assert_eq!(fit_within((500, 1000), (256, 256)), (128, 256));
        assert_eq!(fit_within((300, 300), (256, 100)), (100, 100));
        assert_eq!(fit_within((10_000, 1), (256, 256)), (256, 1));
        assert_eq!(fit_within((100, 50), (256, 256)), (100, 50), "no upscaling");
        assert_eq!(fit_within((65_535, 65_535), (1, 1)), (1, 1));
    }

    #[test]
    fn fit_is_within_box_for_many_sizes() {
        // A deterministic sweep instead of random input: every pair below is
        // checked for the box bound and the aspect ratio within rounding.
        for w in (1..3000).step_by(37) {
            for h in (1..3000).step_by(41) {
                for bbox in [(256, 256), (64, 200), (1000, 7)] {
                    let (nw, nh) = fit_within((w, h), bbox);
                    assert!(nw >= 1 && nh >= 1 && nw <= bbox.0.max(1) && nh <= bbox.1.max(1));
                    assert!(nw <= w && nh <= h, "{w}x{h} -> {nw}x{nh} grew");
                    if nw > 1 && nh > 1 {
                        let src = f64::from(w) / f64::from(h);
                        let dst = f64::from(nw) / f64::from(nh);
                        // One pixel of rounding on the shorter side.
                        let tol = src / f64::from(nw.min(nh)) + 1e-9;
                        assert!((src - dst).abs() <= tol * 1.5, "{w}x{h} -> {nw}x{nh}");
                    }
                }
            }
        }
    }

    #[test]
    fn jpeg_end_marker() {
        assert!(jpeg_has_end(b"\xFF\xD8..\xFF\xDA.scan.\xFF\x00.\xFF\xD9"));
        assert!(jpeg_has_end(b"\xFF\xD8\xFF\xDA.\xFF\xD9trailer"));
        assert!(!jpeg_has_end(b"\xFF\xD8..\xFF\xDA.scan cut"));
        // An EOI before the last scan (an embedded thumbnail's) does not count.
        assert!(!jpeg_has_end(b"\xFF\xD8\xFF\xDA\xFF\xD9\xFF\xDA.cut"));
        assert!(!jpeg_has_end(b"\xFF\xD8 no scan \xFF\xD9"));
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(None).is_ok());
        assert!(check_content_type(Some("image/PNG")).is_ok());
        assert!(check_content_type(Some("application/octet-stream; x=y")).is_ok());
        let err = check_content_type(Some("text/plain")).unwrap_err();
        assert_eq!(err.code(), "unsupported_type");
    }

    #[test]
    fn text_is_not_an_image() {
        let cfg = crate::config::Config::parse("listen = \"127.0.0.1:1\"", "t".as_ref())
            .unwrap()
            .thumbnail;
        let req = Request {
            bbox: (256, 256),
            output: Output::Png,
        };
        let err = thumbnail(b"hello, world, not an image", &cfg, &req).unwrap_err();
        assert_eq!(err.code(), "undecodable");
        assert!(err.to_string().contains("not a recognised image"), "{err}");
    }
}
