//! `tandem jobs submit`: builds the `POST /v1/jobs` body, and `--wait`.
//!
//! `--input TEXT` is sent as a JSON string (the worker gets
//! `text/plain; charset=utf-8`); `--file PATH` as `input_base64` with
//! `--content-type`, or the type its extension names, else
//! `application/octet-stream`. `--params` must be a JSON object, checked
//! here so the mistake is named before anything is sent; the worker checks
//! the names and values. `--wait` asks `?wait=30s` again until the job is
//! final or `--wait-max` has passed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Args;
use serde_json::{Value, json};

use crate::http::{Api, ok};

/// The longest single held wait asked for; the server may allow less
/// (its `wait_max`, 60 s by default) and says so with 400 `bad_wait`.
const WAIT_STEP: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The job kind (text, thumbnail, exec, ... as the API's config names them).
    kind: String,
    /// The input, as text.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    input: Option<String>,
    /// The input, from a file (`-`: stdin), sent as bytes.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// The input's content type [default: from the file's extension].
    #[arg(long)]
    content_type: Option<String>,
    /// Parameters for the worker, a JSON object: '{"max_side": 128}'.
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// 0 (runs first) to 9.
    #[arg(long)]
    priority: Option<u8>,
    /// Makes a retried submit give the same job back.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// POSTed the job's document when it ends (docs/webhooks.md).
    #[arg(long)]
    callback_url: Option<String>,
    /// Wait until the job is final and print it as it ended.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this long (the job goes on).
    #[arg(long, default_value = "10m", value_parser = crate::duration)]
    wait_max: Duration,
}

/// The content type a file's extension names, if a common one.
fn type_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The JSON body of the submission.
fn body(a: &SubmitArgs) -> anyhow::Result<Value> {
    let mut body = json!({ "kind": a.kind });
    match (&a.input, &a.file) {
        (Some(text), _) => body["input"] = json!(text),
        (None, Some(path)) => {
            let bytes = read_input(path)?;
            body["input_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            body["content_type"] = json!(a.content_type.as_deref().unwrap_or(type_of(path)));
        }
        (None, None) => bail!("give the input: --input TEXT or --file PATH"),
    }
    if let (Some(ct), Some(_)) = (&a.content_type, &a.input) {
        body["content_type"] = json!(ct);
    }
    if let Some(p) = &a.params {
        let v: Value = serde_json::from_str(p).with_context(|| {
            format!("--params {p:?} is not JSON; write an object such as '{{\"top\": 3}}'")
        })?;
        if !v.is_object() {
            bail!("--params {p:?} must be a JSON object such as '{{\"top\": 3}}'");
        }
        body["params"] = v;
    }
    if let Some(p) = a.priority {
        body["priority"] = json!(p);
    }
    if let Some(u) = &a.callback_url {
        body["callback_url"] = json!(u);
    }
    Ok(body)
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the input from stdin")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("reading the input file {}", path.display()))
}

/// Submits, prints the job (as it ended, with --wait), and says how it went.
pub async fn run(api: &Api, a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::to_vec(&body(&a)?)?;
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(k) = &a.idempotency_key {
        headers.push(("idempotency-key", k.clone()));
    }
    let answer = api
        .call("POST", "/v1/jobs", &headers, Some(body), Duration::ZERO)
        .await?;
    let job = ok("submit the job", answer)?.json()?;
    if !a.wait {
        crate::print_json(&job);
        return Ok(ExitCode::SUCCESS);
    }
    let id = job["id"]
        .as_str()
        .context("the API's 202 has no job id")?
        .to_owned();
    let until = Instant::now() + a.wait_max;
    let mut job = job;
    while !is_final(&job) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        job = crate::get(api, &id, Some(left.min(WAIT_STEP))).await?;
    }
    crate::print_json(&job);
    Ok(verdict(&job, a.wait_max))
}

fn is_final(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("done" | "failed" | "cancelled")
    )
}

/// 0 for done; 2, with the reason on stderr, for anything else.
fn verdict(job: &Value, waited: Duration) -> ExitCode {
    let id = job["id"].as_str().unwrap_or("?");
    match job["status"].as_str() {
        Some("done") => return ExitCode::SUCCESS,
        Some("failed") => eprintln!(
            "job {id} failed: {}",
            job["last_error"].as_str().unwrap_or("no error recorded")
        ),
        Some("cancelled") => eprintln!("job {id} was cancelled"),
        s => eprintln!(
            "job {id} is still {} after {waited:?}; `tandem jobs get {id} --wait 30s` waits more",
            s.unwrap_or("unknown")
        ),
    }
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SubmitArgs,
    }

    fn args(v: &[&str]) -> Result<SubmitArgs, String> {
        let mut all = vec!["submit"];
        all.extend_from_slice(v);
        T::try_parse_from(all)
            .map(|t| t.a)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn text_input_params_and_priority_make_the_body() {
        let a = args(&[
            "text",
            "--input",
            "a b a",
            "--params",
            r#"{"top": 1}"#,
            "--priority",
            "2",
        ])
        .unwrap();
        assert_eq!(
            body(&a).unwrap(),
            json!({"kind": "text", "input": "a b a", "params": {"top": 1}, "priority": 2})
        );
    }

    #[test]
    fn a_file_goes_as_base64_with_its_type() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cat.PNG");
        std::fs::write(&p, b"\x89PNG").unwrap();
        let a = args(&["thumbnail", "--file", p.to_str().unwrap()]).unwrap();
        assert_eq!(
            body(&a).unwrap(),
            json!({"kind": "thumbnail", "input_base64": "iVBORw==", "content_type": "image/png"})
        );
        let a = args(&[
            "exec",
            "--file",
            p.to_str().unwrap(),
            "--content-type",
            "text/x",
        ])
        .unwrap();
        assert_eq!(body(&a).unwrap()["content_type"], "text/x");
    }

    #[test]
    fn mistakes_are_named_before_anything_is_sent() {
        assert!(args(&["text"]).unwrap_err().contains("--input"));
        assert!(args(&["text", "--input", "x", "--file", "y"]).is_err());
        let a = args(&["text", "--input", "x", "--params", "[1]"]).unwrap();
        assert!(
            body(&a)
                .unwrap_err()
                .to_string()
                .contains("must be a JSON object")
        );
        let a = args(&["text", "--input", "x", "--params", "{top: 1}"]).unwrap();
        assert!(body(&a).unwrap_err().to_string().contains("is not JSON"));
        let a = args(&["text", "--file", "/nonexistent/x"]).unwrap();
        assert!(format!("{:#}", body(&a).unwrap_err()).contains("/nonexistent/x"));
    }

    #[test]
    fn only_done_exits_zero() {
        assert_eq!(
            verdict(&json!({"id": "j", "status": "done"}), Duration::ZERO),
            ExitCode::SUCCESS
        );
        for s in ["failed", "cancelled", "running"] {
            assert_eq!(
                verdict(&json!({"id": "j", "status": s}), Duration::ZERO),
                ExitCode::from(2)
            );
        }
    }
}
