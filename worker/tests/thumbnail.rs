//! `thumbnail` over HTTP: real images of each format and size, and hostile
//! input, each followed by proof the worker is still healthy.

mod common;

use std::io::Cursor;

use common::ErrorBody;
use common::Worker;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use tandem_worker::config::Kind;

/// A gradient, so JPEG and WebP have something real to compress.
fn picture(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x + y) % 256) as u8,
        ])
    }))
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let img = match format {
        // The GIF encoder wants RGBA.
        ImageFormat::Gif => DynamicImage::ImageRgba8(img.to_rgba8()),
        _ => img.clone(),
    };
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode test image");
    out.into_inner()
}

fn decoded_png_size(body: &[u8]) -> (u32, u32) {
    assert_eq!(image::guess_format(body).ok(), Some(ImageFormat::Png));
    let img = image::load_from_memory_with_format(body, ImageFormat::Png).expect("PNG output");
    (img.width(), img.height())
}

#[tokio::test]
async fn every_format_and_size_fits_the_box_with_its_aspect() {
    let w = Worker::start(Kind::Thumbnail, "").await;
    let cases = [
        (ImageFormat::Png, "image/png", (640, 480), "", (256, 192)),
        (ImageFormat::Jpeg, "image/jpeg", (300, 1000), "", (77, 256)),
        (ImageFormat::Gif, "image/gif", (100, 50), "", (100, 50)),
        (
            ImageFormat::WebP,
            "image/webp",
            (1000, 1000),
            "",
            (256, 256),
        ),
        (
            ImageFormat::Png,
            "application/octet-stream",
            (1200, 300),
            "?width=64&height=64",
            (64, 16),
        ),
        (
            ImageFormat::Jpeg,
            "image/jpeg",
            (800, 600),
            "?width=100",
            (100, 75),
        ),
        (
            ImageFormat::WebP,
            "image/webp",
            (333, 777),
            "?height=50",
            (21, 50),
        ),
    ];
    for (format, ct, (iw, ih), query, want) in cases {
        let input = encode(&picture(iw, ih), format);
        let r = w.post(&format!("/v1/run{query}"), Some(ct), input).await;
        assert_eq!(r.status, 200, "{format:?} {iw}x{ih}: {}", r.text());
        assert_eq!(r.content_type(), "image/png");
        assert_eq!(
            decoded_png_size(&r.body),
            want,
            "{format:?} {iw}x{ih} {query}"
        );
    }
}

#[tokio::test]
async fn box_out_of_range_is_400() {
    let w = Worker::start(Kind::Thumbnail, "[thumbnail]\nmax_width = 500\n").await;
    let input = encode(&picture(10, 10), ImageFormat::Png);
    for q in ["?width=501", "?width=0", "?height=abc"] {
        let r = w
            .post(&format!("/v1/run{q}"), Some("image/png"), input.clone())
            .await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.error_code(), "bad_parameter");
    }
}

/// CRC-32 (IEEE) for hand-made PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32(&body).to_be_bytes());
    c
}

/// A valid PNG header announcing `w` × `h` RGBA pixels, followed by almost
/// no data: the shape of a decompression bomb.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, no interlace
    png.extend(chunk(b"IHDR", &ihdr));
    // zlib stream of a few zero bytes; far too short for the image.
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[tokio::test]
async fn hostile_inputs_get_their_error_and_the_worker_stays_healthy() {
    let w = Worker::start(
        Kind::Thumbnail,
        "[thumbnail]\nmax_input_bytes = 200000\nmax_pixels = 1000000\n",
    )
    .await;

    // Oversized body: 413 before decoding.
    let r = w
        .post("/v1/run", Some("image/png"), vec![0u8; 300_000])
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_code(), "too_large");
    w.assert_healthy().await;

    // Bomb-like headers: refused from the header alone.
    for (bw, bh) in [(60_000, 60_000), (2_000, 1_000)] {
        let r = w.post("/v1/run", Some("image/png"), bomb_png(bw, bh)).await;
        assert_eq!(r.status, 422, "{bw}x{bh}: {}", r.text());
        assert_eq!(r.error_code(), "too_many_pixels");
        assert!(
            r.error_message().contains(&format!("{bw}x{bh}")),
            "{}",
            r.text()
        );
    }
    w.assert_healthy().await;

    // A real image over the pixel limit.
    let flat = DynamicImage::ImageRgb8(RgbImage::new(1001, 1000));
    let big = encode(&flat, ImageFormat::Png);
    assert!(big.len() < 200_000);
    let r = w.post("/v1/run", None, big).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (422, "too_many_pixels")
    );

    // Truncated PNG and JPEG.
    for format in [ImageFormat::Png, ImageFormat::Jpeg] {
        let full = encode(&picture(200, 200), format);
        let cut = full[..full.len() / 3].to_vec();
        let r = w.post("/v1/run", None, cut).await;
        assert_eq!(r.status, 422, "{format:?}: {}", r.text());
        assert_eq!(r.error_code(), "undecodable");
    }
    w.assert_healthy().await;

    // Wrong type: text bytes, declared as bytes or as text.
    let r = w
        .post(
            "/v1/run",
            Some("application/octet-stream"),
            b"hello".to_vec(),
        )
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (422, "undecodable"));
    assert!(
        r.error_message().contains("not a recognised image"),
        "{}",
        r.text()
    );
    let r = w
        .post("/v1/run", Some("text/plain"), b"hello".to_vec())
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (415, "unsupported_type")
    );
    // A format we do not decode (BMP magic), even if it calls itself PNG.
    let r = w
        .post(
            "/v1/run",
            Some("image/png"),
            b"BM\0\0\0\0\0\0\0\0\0\0".to_vec(),
        )
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (422, "undecodable"));

    // And it still works.
    let flat = DynamicImage::ImageRgb8(RgbImage::from_pixel(512, 400, Rgb([9, 99, 199])));
    let r = w
        .post("/v1/run", None, encode(&flat, ImageFormat::Png))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(decoded_png_size(&r.body), (256, 200));
    w.assert_healthy().await;
}

#[tokio::test]
async fn decode_past_the_timeout_is_504_and_its_slot_comes_back() {
    // 1 ms cannot fit decoding a 2000x2000 PNG, let alone resizing it.
    let w = Worker::start(
        Kind::Thumbnail,
        "[limits]\nconcurrency = 1\n[thumbnail]\ntimeout = \"1ms\"\n",
    )
    .await;
    let input = encode(&picture(2000, 2000), ImageFormat::Png);
    let r = w.post("/v1/run", None, input).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.error_code(), "timeout");
    // The slot is held until the decoding thread returns, then freed.
    w.assert_healthy().await;
}
