//! Unit tests of `params`.
use super::*;
use crate::kinds::RunError;

fn cfg(extra: &str) -> ThumbnailConfig {
    let text = format!("listen = \"127.0.0.1:1\"\n[thumbnail]\n{extra}");
    crate::config::Config::parse(&text, "t".as_ref())
        .unwrap()
        .thumbnail
}

fn params(json: &str) -> Params {
    Params::parse(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn thumb(json: &str) -> Result<Request, String> {
    thumbnail(&params(json), &cfg("max_width = 1000\nmax_height = 800\n"))
        .map_err(|e| e.to_string())
}

fn png(bbox: (u32, u32)) -> Request {
    Request {
        bbox,
        output: Output::Png,
    }
}

#[test]
fn no_header_is_no_parameters() {
    assert_eq!(Params::from_headers(&HeaderMap::new()), Ok(None));
}

#[test]
fn header_must_be_one_json_object_in_ascii() {
    let from = |values: &[&[u8]]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HEADER, axum::http::HeaderValue::from_bytes(v).unwrap());
        }
        Params::from_headers(&h).map_err(|e| e.to_string())
    };
    let p = from(&[br#"{"top":3,"w":"caf\u00e9"}"#]).unwrap().unwrap();
    assert_eq!(p.raw(), r#"{"top":3,"w":"caf\u00e9"}"#);
    assert_eq!(p.map["w"], "café");

    for (value, problem) in [
        (
            &br#"[1,2]"#[..],
            "X-Tandem-Params: is an array, not an object; valid: ",
        ),
        (b"3", "X-Tandem-Params: is a number, not an object; valid: "),
        (b"null", "X-Tandem-Params: is null, not an object; valid: "),
        (
            b"{\"top\":",
            "X-Tandem-Params: is not valid JSON: EOF while parsing",
        ),
        (
            b"max_side=3",
            "X-Tandem-Params: is not valid JSON: expected value",
        ),
        (
            b"{\"w\":\"caf\xc3\xa9\"}",
            "X-Tandem-Params: contains bytes that are not visible ASCII; valid: ",
        ),
    ] {
        let err = from(&[value]).unwrap_err();
        assert!(err.starts_with(problem), "{value:?}: {err}");
        assert!(
            err.contains(r#"a JSON object such as {"max_side": 256}"#),
            "{err}"
        );
    }
    let err = from(&[b"{}", b"{}"]).unwrap_err();
    assert!(
        err.starts_with("X-Tandem-Params: given more than once"),
        "{err}"
    );
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_HEADER_BYTES));
    let err = from(&[big.as_bytes()]).unwrap_err();
    assert!(err.contains("over the 16384-byte limit"), "{err}");
}

#[test]
fn thumbnail_sizes() {
    // No size: the configured default box, as without parameters.
    assert_eq!(thumb("{}"), Ok(png((256, 256))));
    assert_eq!(thumb(r#"{"max_side":32}"#), Ok(png((32, 32))));
    // max_side is bounded by the smaller side of the largest box.
    assert_eq!(thumb(r#"{"max_side":800}"#), Ok(png((800, 800))));
    assert_eq!(
        thumb(r#"{"max_side":801}"#).unwrap_err(),
        "params.max_side: 801 is out of range; valid: 1 to 800"
    );
    // A side not given is bounded by the largest box only.
    assert_eq!(thumb(r#"{"width":100}"#), Ok(png((100, 800))));
    assert_eq!(thumb(r#"{"height":50}"#), Ok(png((1000, 50))));
    assert_eq!(thumb(r#"{"width":1000,"height":1}"#), Ok(png((1000, 1))));
    for (json, want) in [
        (
            r#"{"width":1001}"#,
            "params.width: 1001 is out of range; valid: 1 to 1000",
        ),
        (
            r#"{"height":0}"#,
            "params.height: 0 is out of range; valid: 1 to 800",
        ),
        (
            r#"{"max_side":0}"#,
            "params.max_side: 0 is out of range; valid: 1 to 800",
        ),
        (
            r#"{"width":-5}"#,
            "params.width: -5 is out of range; valid: 1 to 1000",
        ),
        (
            r#"{"width":100000000000000000000000}"#,
            "params.width: 1e+23 is out of range; valid: 1 to 1000",
        ),
        (
            r#"{"width":"100"}"#,
            r#"params.width: "100" is not an integer; valid: 1 to 1000"#,
        ),
        (
            r#"{"height":12.5}"#,
            "params.height: 12.5 is not an integer; valid: 1 to 800",
        ),
        (
            r#"{"max_side":32.0}"#,
            "params.max_side: 32.0 is not an integer; valid: 1 to 800",
        ),
        (
            r#"{"max_side":null}"#,
            "params.max_side: null is not an integer; valid: 1 to 800",
        ),
        (
            r#"{"max_side":[32]}"#,
            "params.max_side: [32] is not an integer; valid: 1 to 800",
        ),
    ] {
        assert_eq!(thumb(json).unwrap_err(), want, "{json}");
    }
}

#[test]
fn max_side_with_a_box_is_refused() {
    let want = "; valid: max_side alone, or width and/or height";
    assert_eq!(
        thumb(r#"{"max_side":32,"width":10}"#).unwrap_err(),
        format!("params.max_side: 32 cannot be combined with params.width = 10{want}")
    );
    assert_eq!(
        thumb(r#"{"max_side":32,"height":20}"#).unwrap_err(),
        format!("params.max_side: 32 cannot be combined with params.height = 20{want}")
    );
}

#[test]
fn thumbnail_format_and_quality() {
    let out = |json: &str| thumb(json).map(|r| r.output);
    assert_eq!(out(r#"{"format":"png"}"#), Ok(Output::Png));
    assert_eq!(out(r#"{"format":"webp"}"#), Ok(Output::WebP));
    assert_eq!(
        out(r#"{"format":"jpeg"}"#),
        Ok(Output::Jpeg {
            quality: JPEG_QUALITY
        })
    );
    assert_eq!(
        out(r#"{"format":"jpeg","quality":1}"#),
        Ok(Output::Jpeg { quality: 1 })
    );
    assert_eq!(
        out(r#"{"format":"jpeg","quality":100}"#),
        Ok(Output::Jpeg { quality: 100 })
    );
    assert_eq!(
        out(r#"{"format":"jpeg","max_side":64}"#).map(|o| o.content_type()),
        Ok("image/jpeg")
    );
    for (json, want) in [
        (
            r#"{"format":"gif"}"#,
            r#"params.format: "gif" is not one of the choices; valid: "png", "jpeg" or "webp""#,
        ),
        (
            r#"{"format":"JPEG"}"#,
            r#"params.format: "JPEG" is not one of the choices; valid: "png", "jpeg" or "webp""#,
        ),
        (
            r#"{"format":1}"#,
            r#"params.format: 1 is not a string; valid: "png", "jpeg" or "webp""#,
        ),
        (
            r#"{"format":"jpeg","quality":0}"#,
            "params.quality: 0 is out of range; valid: 1 to 100",
        ),
        (
            r#"{"format":"jpeg","quality":101}"#,
            "params.quality: 101 is out of range; valid: 1 to 100",
        ),
        (
            r#"{"format":"jpeg","quality":"high"}"#,
            r#"params.quality: "high" is not an integer; valid: 1 to 100"#,
        ),
        (
            r#"{"format":"webp","quality":80}"#,
            "params.quality: 80 cannot be combined with params.format = \"webp\" \
             (this worker writes lossless WebP only); valid: quality only with \"format\": \"jpeg\"",
        ),
        (
            r#"{"quality":80}"#,
            "params.quality: 80 cannot be combined with params.format = \"png\" \
             (PNG is lossless); valid: quality only with \"format\": \"jpeg\"",
        ),
    ] {
        assert_eq!(out(json).unwrap_err(), want, "{json}");
    }
}

#[test]
fn unknown_names_are_refused_with_the_valid_ones() {
    assert_eq!(
        thumb(r#"{"qualty":80}"#).unwrap_err(),
        "params.qualty: unknown parameter; valid for thumbnail: \
         max_side, width, height, format, quality"
    );
    assert_eq!(
        text_top(&params(r#"{"top":3,"count":1}"#))
            .unwrap_err()
            .to_string(),
        "params.count: unknown parameter; valid for text: top"
    );
    // A hostile name is quoted, escaped and cut, never echoed raw.
    let err = text_top(&params(r#"{"a\"b\nc":1}"#))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(r#"params["a\"b\nc"]: unknown parameter"#),
        "{err}"
    );
    let long = format!(r#"{{"{}":1}}"#, "x".repeat(500));
    let err = text_top(&params(&long)).unwrap_err().to_string();
    assert!(err.len() < 200, "{err}");
}

#[test]
fn text_top_parameter() {
    let top = |json: &str| super::text_top(&params(json)).map_err(|e| e.to_string());
    assert_eq!(top("{}"), Ok(TOP_WORDS));
    assert_eq!(top(r#"{"top":1}"#), Ok(1));
    assert_eq!(top(r#"{"top":1000}"#), Ok(1000));
    assert_eq!(
        top(r#"{"top":0}"#).unwrap_err(),
        "params.top: 0 is out of range; valid: 1 to 1000"
    );
    assert_eq!(
        top(r#"{"top":1001}"#).unwrap_err(),
        "params.top: 1001 is out of range; valid: 1 to 1000"
    );
    assert_eq!(
        top(r#"{"top":"3"}"#).unwrap_err(),
        r#"params.top: "3" is not an integer; valid: 1 to 1000"#
    );
    assert_eq!(
        top(r#"{"top":true}"#).unwrap_err(),
        "params.top: true is not an integer; valid: 1 to 1000"
    );
}

#[test]
fn long_values_are_shortened_in_messages() {
    let json = format!(r#"{{"format":"{}"}}"#, "z".repeat(5000));
    let err = thumb(&json).unwrap_err();
    assert!(err.starts_with(r#"params.format: "zzzz"#), "{err}");
    assert!(err.contains(r#"zzz... is not one of"#), "{err}");
    assert!(err.len() < 200, "{err}");
}

#[test]
fn sizes_are_bounded_by_the_box_not_by_the_decode_limits() {
    // A box as large as the decode limit on one side: a request may ask
    // for any size up to it, and the decode limits stay what they were.
    let c = cfg("max_width = 65535\nmax_height = 65535\nmax_side = 100\nmax_pixels = 100\n");
    let req = thumbnail(&params(r#"{"max_side":65535}"#), &c).unwrap();
    assert_eq!(req.bbox, (65535, 65535));
    assert_eq!((c.max_side, c.max_pixels), (100, 100));
    // And a 20x20 image (400 pixels) is still refused before decoding.
    let mut png = Vec::new();
    image::DynamicImage::new_rgb8(20, 20)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let err = crate::kinds::thumbnail::thumbnail(&png, &c, &req).unwrap_err();
    assert!(matches!(err, RunError::TooManyPixels { .. }), "{err}");
}

#[test]
fn refusals_are_bad_param() {
    let e: RunError = ParamError::WithQuery.into();
    assert_eq!(e.code(), "bad_param");
    assert_eq!(
        crate::server::status_of(&e),
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    );
}
