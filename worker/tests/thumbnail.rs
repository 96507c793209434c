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

/// The format and size of an encoded image, by its magic bytes.
fn decoded(body: &[u8]) -> (ImageFormat, (u32, u32)) {
    let format = image::guess_format(body).expect("a known image format");
    let img = image::load_from_memory_with_format(body, format).expect("decodes");
    (format, (img.width(), img.height()))
}

#[tokio::test]
async fn job_parameters_choose_the_size_and_the_format() {
    let w = Worker::start(Kind::Thumbnail, "").await;
    let png = encode(&picture(640, 480), ImageFormat::Png);
    let cases = [
        (
            r#"{"max_side":32}"#,
            "image/png",
            ImageFormat::Png,
            (32, 24),
        ),
        (r#"{"width":100}"#, "image/png", ImageFormat::Png, (100, 75)),
        (r#"{"height":60}"#, "image/png", ImageFormat::Png, (80, 60)),
        (
            r#"{"width":500,"height":30}"#,
            "image/png",
            ImageFormat::Png,
            (40, 30),
        ),
        // Larger than the source: never enlarged.
        (
            r#"{"max_side":2048}"#,
            "image/png",
            ImageFormat::Png,
            (640, 480),
        ),
        // No size: the default box, as without parameters.
        (r#"{}"#, "image/png", ImageFormat::Png, (256, 192)),
        (
            r#"{"format":"jpeg","max_side":64}"#,
            "image/jpeg",
            ImageFormat::Jpeg,
            (64, 48),
        ),
        (
            r#"{"format":"jpeg","quality":40}"#,
            "image/jpeg",
            ImageFormat::Jpeg,
            (256, 192),
        ),
        (
            r#"{"format":"webp","height":48}"#,
            "image/webp",
            ImageFormat::WebP,
            (64, 48),
        ),
        (
            r#"{"format":"png"}"#,
            "image/png",
            ImageFormat::Png,
            (256, 192),
        ),
    ];
    for (params, ct, format, size) in cases {
        let r = w
            .run_with_params(params, Some("image/png"), png.clone())
            .await;
        assert_eq!(r.status, 200, "{params}: {}", r.text());
        assert_eq!(r.content_type(), ct, "{params}");
        assert_eq!(decoded(&r.body), (format, size), "{params}");
    }

    // JPEG of an image with alpha: the alpha is dropped, the size kept.
    let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
        300,
        100,
        image::Rgba([10, 20, 30, 0]),
    ));
    let r = w
        .run_with_params(
            r#"{"format":"jpeg","max_side":30}"#,
            None,
            encode(&rgba, ImageFormat::Png),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(decoded(&r.body), (ImageFormat::Jpeg, (30, 10)));
    w.assert_healthy().await;
}

#[tokio::test]
async fn jpeg_quality_is_applied() {
    let w = Worker::start(Kind::Thumbnail, "").await;
    let input = encode(&picture(512, 512), ImageFormat::Png);
    let size = |q: u32| {
        let w = &w;
        let input = input.clone();
        async move {
            let params = format!(r#"{{"format":"jpeg","quality":{q},"max_side":256}}"#);
            let r = w.run_with_params(&params, None, input).await;
            assert_eq!(r.status, 200, "{params}: {}", r.text());
            assert_eq!(decoded(&r.body), (ImageFormat::Jpeg, (256, 256)));
            r.body.len()
        }
    };
    let (low, high) = (size(5).await, size(100).await);
    // The same pixels at quality 5 and 100: a quality that reached the
    // encoder makes the first far smaller.
    assert!(low * 2 < high, "quality 5: {low} bytes, 100: {high} bytes");
}

#[tokio::test]
async fn bad_job_parameters_are_422_bad_param_naming_what_is_valid() {
    let w = Worker::start(Kind::Thumbnail, "[thumbnail]\nmax_width = 500\n").await;
    let input = encode(&picture(10, 10), ImageFormat::Png);
    let cases = [
        (
            r#"{"quality":0,"format":"jpeg"}"#,
            "params.quality: 0 is out of range; valid: 1 to 100",
        ),
        (
            r#"{"width":501}"#,
            "params.width: 501 is out of range; valid: 1 to 500",
        ),
        (
            r#"{"max_side":"big"}"#,
            r#"params.max_side: "big" is not an integer; valid: 1 to 500"#,
        ),
        (
            r#"{"format":"bmp"}"#,
            r#"params.format: "bmp" is not one of the choices; valid: "png", "jpeg" or "webp""#,
        ),
        (
            r#"{"format":"webp","quality":50}"#,
            "params.quality: 50 cannot be combined with params.format = \"webp\"",
        ),
        (
            r#"{"size":32}"#,
            "params.size: unknown parameter; valid for thumbnail: max_side, width, height, format, quality",
        ),
        (
            r#"{"max_side":32,"width":32}"#,
            "params.max_side: 32 cannot be combined with params.width = 32",
        ),
        (r#"[32]"#, "X-Tandem-Params: is an array, not an object"),
        ("max_side=32", "X-Tandem-Params: is not valid JSON"),
    ];
    for (params, want) in cases {
        let r = w
            .run_with_params(params, Some("image/png"), input.clone())
            .await;
        assert_eq!(r.status, 422, "{params}: {}", r.text());
        assert_eq!(r.error_code(), "bad_param", "{params}");
        assert!(
            r.error_message().starts_with(want),
            "{params}: {}",
            r.text()
        );
    }
    // A size in the query string as well as in the parameters.
    let r = w
        .run_with_headers(
            "/v1/run?width=50",
            &[("x-tandem-params", r#"{"format":"jpeg"}"#)],
            None,
            input.clone(),
        )
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (422, "bad_param"));
    assert!(r.error_message().contains("query string"), "{}", r.text());
    w.assert_healthy().await;
}

#[tokio::test]
async fn a_huge_requested_size_cannot_raise_the_decode_limits() {
    // The largest box allowed, with small decode limits: no parameter may
    // let a larger image be decoded.
    let w = Worker::start(
        Kind::Thumbnail,
        "[thumbnail]\nmax_width = 65535\nmax_height = 65535\nmax_side = 4000\nmax_pixels = 1000000\n",
    )
    .await;
    for params in [
        r#"{"max_side":65535}"#,
        r#"{"width":65535,"height":65535,"format":"webp"}"#,
    ] {
        let r = w
            .run_with_params(params, Some("image/png"), bomb_png(60_000, 60_000))
            .await;
        assert_eq!(r.status, 422, "{params}: {}", r.text());
        assert_eq!(r.error_code(), "too_many_pixels", "{params}");
        assert!(
            r.error_message().contains("4000 pixels per side"),
            "{}",
            r.text()
        );

        // Within max_side, over max_pixels: refused from the header too.
        let flat = encode(
            &DynamicImage::ImageRgb8(RgbImage::new(1001, 1000)),
            ImageFormat::Png,
        );
        let r = w.run_with_params(params, None, flat).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (422, "too_many_pixels"),
            "{params}"
        );
    }
    // Past the largest box, the size itself is refused.
    let r = w
        .run_with_params(r#"{"max_side":65536}"#, None, bomb_png(10, 10))
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (422, "bad_param"));
    assert!(
        r.error_message().contains("valid: 1 to 65535"),
        "{}",
        r.text()
    );
    w.assert_healthy().await;
}
