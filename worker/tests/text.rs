//! `text` over HTTP.

mod common;

use common::ErrorBody;
use common::Worker;
use tandem_worker::config::Kind;

#[tokio::test]
async fn stats_of_real_text() {
    let w = Worker::start(Kind::Text, "").await;
    let input =
        "It was the best of times,\nit was the worst of times,\nit was the age of wisdom.\n";
    let r = w
        .post("/v1/run", Some("text/plain; charset=utf-8"), input.into())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "application/json");
    let j = r.json();
    assert_eq!(j["lines"], 3);
    assert_eq!(j["words"], 18);
    assert_eq!(j["characters"], input.chars().count());
    assert_eq!(j["bytes"], input.len());
    assert_eq!(j["top_words_exact"], true);
    // sha256sum of the same bytes.
    assert_eq!(
        j["sha256"],
        "a9e828270056548a53a712a8e1183c9b0c7a92f401e5c70564afe9c8ec8703af"
    );
    let top: Vec<(String, u64)> = j["top_words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["word"].as_str().unwrap().to_owned(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    // Nine distinct words; ties in alphabetical order.
    assert_eq!(top.len(), 9);
    assert_eq!(top[8], ("worst".to_owned(), 1));
    assert_eq!(top[0], ("it".to_owned(), 3));
    assert_eq!(top[1], ("of".to_owned(), 3));
    assert_eq!(top[2], ("the".to_owned(), 3));
    assert_eq!(top[3], ("was".to_owned(), 3));
    assert_eq!(top[4], ("times".to_owned(), 2));
}

#[tokio::test]
async fn hostile_text_inputs() {
    let w = Worker::start(Kind::Text, "[text]\nmax_input_bytes = 1000\n").await;

    let r = w
        .post("/v1/run", Some("text/plain"), b"caf\xc3 \xff".to_vec())
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_utf8");
    assert!(r.error_message().contains("byte offset 3"), "{}", r.text());

    let r = w
        .post("/v1/run", Some("text/plain"), vec![b'a'; 1001])
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (413, "too_large"));

    let r = w
        .post("/v1/run", Some("image/png"), b"hello".to_vec())
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (415, "unsupported_type")
    );

    let r = w
        .post(
            "/v1/run",
            Some("text/plain; charset=iso-8859-1"),
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (415, "unsupported_type")
    );

    // Exactly at the limit is fine, and the worker is healthy.
    let r = w.post("/v1/run", None, vec![b'a'; 1000]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["characters"], 1000);
    w.assert_healthy().await;
}

#[tokio::test]
async fn stalled_upload_gives_its_slot_back() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let w = Worker::start(
        Kind::Text,
        "[limits]\nconcurrency = 1\n[text]\ntimeout = \"300ms\"\n",
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    s.write_all(b"POST /v1/run HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    // Read the answer without closing our side: the body never completes.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled upload");
    let head = String::from_utf8_lossy(&answer);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    w.assert_healthy().await;
}

#[tokio::test]
async fn top_parameter_sets_the_number_of_words() {
    let w = Worker::start(Kind::Text, "").await;
    let input = "a a a a b b b c c d e f g h i j k l m n o p\n";
    let words = |r: &common::Reply| -> Vec<String> {
        r.json()["top_words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["word"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = w
        .run_with_params(r#"{"top":3}"#, Some("text/plain"), input.into())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(words(&r), ["a", "b", "c"]);
    // Without the header: today's ten.
    let r = w.post("/v1/run", Some("text/plain"), input.into()).await;
    assert_eq!(words(&r).len(), 10);
    let r = w
        .run_with_params(r#"{"top":1000}"#, None, input.into())
        .await;
    assert_eq!(words(&r).len(), 16, "every distinct word");

    for (params, want) in [
        (
            r#"{"top":0}"#,
            "params.top: 0 is out of range; valid: 1 to 1000",
        ),
        (
            r#"{"top":"3"}"#,
            r#"params.top: "3" is not an integer; valid: 1 to 1000"#,
        ),
        (
            r#"{"tpo":3}"#,
            "params.tpo: unknown parameter; valid for text: top",
        ),
        ("\"top\"", "X-Tandem-Params: is a string, not an object"),
    ] {
        let r = w.run_with_params(params, None, input.into()).await;
        assert_eq!(r.status, 422, "{params}: {}", r.text());
        assert_eq!(r.error_code(), "bad_param");
        assert!(
            r.error_message().starts_with(want),
            "{params}: {}",
            r.text()
        );
    }
    w.assert_healthy().await;
}
