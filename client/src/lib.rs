//! `tandem jobs`: submit, look at, fetch, list, cancel and retry jobs from
//! the command line, over the job API (docs/api.md).
//!
//! Output: a job or a page of jobs as JSON on stdout (pretty-printed), so
//! scripts can pipe it to `jq`; `list` prints a table unless `--json`; a
//! result's bytes go to `-o FILE` or stdout as they are. Errors go to
//! stderr and say what was being done and what the API answered.
//!
//! Exit status: 0 when the command did what it says (and, with `--wait`,
//! the job ended `done`); 2 when a waited-for job ended `failed` or
//! `cancelled`, or was not final when the wait ran out (the job is still
//! printed); 1 for every other error (bad arguments, API unreachable, a
//! refusal).

pub mod config;
pub mod http;
mod submit;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::http::{Api, ok};

/// `tandem jobs ...`: where the API is, and the command.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The API's base URL [default: the client file's `url`, else http://127.0.0.1:8080].
    #[arg(long, env = "TANDEM_URL", global = true)]
    url: Option<String>,
    /// The API key (bearer token) [default: the client file's `key`].
    #[arg(long, env = "TANDEM_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    /// The client file (TOML: url, key) [default: ~/.config/tandem/client.toml].
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Bound on each request (a held wait adds its own time).
    #[arg(long, global = true, default_value = "30s", value_parser = duration)]
    timeout: Duration,
    #[command(subcommand)]
    cmd: JobsCommand,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// Submit a job of KIND: --input TEXT, or --file PATH (binary, `-` for stdin).
    Submit(submit::SubmitArgs),
    /// Show a job; --wait DURATION holds until it is final (at most the server's wait_max).
    Get {
        id: String,
        #[arg(long, value_parser = duration, value_name = "DURATION")]
        wait: Option<Duration>,
    },
    /// Fetch a done job's result, byte for byte.
    Result {
        id: String,
        /// Write it here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The key's jobs, newest first, one page.
    List {
        /// queued, running, done, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        /// 1 to 100 [server default: 20].
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// The page as the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a queued or running job.
    Cancel { id: String },
    /// Queue a failed or cancelled job again (same id).
    Retry { id: String },
}

/// Parses a duration as the config files write them ("30s", "500ms").
fn duration(text: &str) -> Result<Duration, String> {
    tandem_service::config::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// Runs one `tandem jobs` command.
pub fn main(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let (file, path) = config::read(args.config.as_deref())?;
    let (url, key) = config::resolve(args.url, args.key, file, path.as_deref())?;
    let api = Api {
        base: http::base_url(&url)?,
        key,
        timeout: args.timeout,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client's runtime")?;
    rt.block_on(run(&api, args.cmd))
}

async fn run(api: &Api, cmd: JobsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobsCommand::Submit(s) => submit::run(api, s).await,
        JobsCommand::Get { id, wait } => {
            let job = get(api, &id, wait).await?;
            print_json(&job);
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Result { id, output } => {
            let a = ok(
                "send the result",
                api.call("GET", &job_path(&id, "/result")?, &[], None, Duration::ZERO)
                    .await?,
            )?;
            match output {
                Some(p) => std::fs::write(&p, &a.body)
                    .with_context(|| format!("writing the result to {}", p.display()))?,
                None => std::io::Write::write_all(&mut std::io::stdout().lock(), &a.body)
                    .context("writing the result to stdout")?,
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::List {
            status,
            kind,
            limit,
            cursor,
            json,
        } => {
            list(
                api,
                [("status", status), ("kind", kind), ("cursor", cursor)],
                limit,
                json,
            )
            .await
        }
        JobsCommand::Cancel { id } => one(api, "DELETE", &id, "", "cancel the job").await,
        JobsCommand::Retry { id } => one(api, "POST", &id, "/retry", "retry the job").await,
    }
}

/// `DELETE /v1/jobs/{id}` or `POST .../retry`: prints the job.
async fn one(
    api: &Api,
    method: &str,
    id: &str,
    suffix: &str,
    doing: &str,
) -> anyhow::Result<ExitCode> {
    let a = api
        .call(method, &job_path(id, suffix)?, &[], None, Duration::ZERO)
        .await?;
    print_json(&ok(doing, a)?.json()?);
    Ok(ExitCode::SUCCESS)
}

/// `/v1/jobs/{id}{suffix}`, refusing an id that could change the path.
fn job_path(id: &str, suffix: &str) -> anyhow::Result<String> {
    let fine = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    anyhow::ensure!(
        fine,
        "job id {id:?} is not an id such as j_3f2a9c1e0b7d4a6f8e2c1b0a"
    );
    Ok(format!("/v1/jobs/{id}{suffix}"))
}

/// The job, held up to `wait` when given.
async fn get(api: &Api, id: &str, wait: Option<Duration>) -> anyhow::Result<serde_json::Value> {
    let (query, extra) = match wait {
        Some(w) => (format!("?wait={}ms", w.as_millis()), w),
        None => (String::new(), Duration::ZERO),
    };
    let path = job_path(id, &query)?;
    let a = api.call("GET", &path, &[], None, extra).await?;
    ok("show the job", a)?.json()
}

async fn list(
    api: &Api,
    filters: [(&str, Option<String>); 3],
    limit: Option<u32>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in &filters {
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    if let Some(l) = limit {
        q.append_pair("limit", &l.to_string());
    }
    let q = q.finish();
    let path = if q.is_empty() {
        "/v1/jobs".to_owned()
    } else {
        format!("/v1/jobs?{q}")
    };
    let page = ok(
        "list the jobs",
        api.call("GET", &path, &[], None, Duration::ZERO).await?,
    )?
    .json()?;
    if json {
        print_json(&page);
    } else {
        print!("{}", table(&page));
    }
    Ok(ExitCode::SUCCESS)
}

/// A page of jobs as a table, and the command for the next page.
fn table(page: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<28} {:<10} {:<12} {:>8}  {}\n",
        "ID", "STATUS", "KIND", "ATTEMPTS", "LAST ERROR"
    );
    for j in page["jobs"].as_array().into_iter().flatten() {
        let s = |k: &str| j[k].as_str().unwrap_or("-").to_owned();
        let err: String = j["last_error"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        out.push_str(&format!(
            "{:<28} {:<10} {:<12} {:>8}  {}\n",
            s("id"),
            s("status"),
            s("kind"),
            j["attempts"].as_i64().unwrap_or(0),
            err.replace('\n', " ")
        ));
    }
    if let Some(c) = page["next_cursor"].as_str() {
        out.push_str(&format!("more: --cursor {c}\n"));
    }
    out
}

fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_change_the_path() {
        assert_eq!(job_path("j_1a", "/result").unwrap(), "/v1/jobs/j_1a/result");
        for bad in ["", "../keys", "j_1?x=1", "j 1", &"a".repeat(65)] {
            assert!(job_path(bad, "").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_page_is_a_table_with_the_next_cursor() {
        let page = serde_json::json!({
            "jobs": [{"id": "j_1", "status": "failed", "kind": "text", "attempts": 3,
                      "last_error": "worker refused the input:\n422 top must be 1 to 1000"}],
            "next_cursor": "42"
        });
        let t = table(&page);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID"), "{t}");
        assert!(
            lines[1].starts_with("j_1")
                && lines[1].contains("failed")
                && lines[1].contains("input: 422"),
            "{t}"
        );
        assert_eq!(lines[2], "more: --cursor 42");
    }
}
