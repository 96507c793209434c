//! The admin socket: a Unix stream socket, mode 0600, never on the network.
//!
//! Protocol: one JSON request per connection, one line (`{"cmd":"status"}`,
//! `{"cmd":"reload"}`, `{"cmd":"drain","service":"api","backend":"api-1"}`,
//! `{"cmd":"enable",...}`), answered by one JSON line
//! `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
//!
//! The socket is created under a temporary name, chmod-ed to 0600 and then
//! renamed into place, so there is no moment at which another user could
//! connect to it. A socket file left by a crashed balancer is replaced; one
//! that still answers belongs to a running balancer and is an error.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_service::accept::Acceptor;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::runtime::status::Status;
use crate::runtime::{Balancer, ReloadSummary};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Reload,
    Drain { service: String, backend: String },
    Enable { service: String, backend: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadSummary>,
}

impl Response {
    fn ok() -> Self {
        Response {
            ok: true,
            error: None,
            status: None,
            reload: None,
        }
    }
    fn err(e: impl ToString) -> Self {
        Response {
            ok: false,
            error: Some(e.to_string()),
            ..Response::ok()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    #[error("admin socket {path}: another balancer is already listening there")]
    InUse { path: PathBuf },
    #[error("admin socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds the admin socket at `path` (mode 0600).
pub async fn bind(path: &Path) -> Result<UnixListener, AdminSocketError> {
    let io_err = |source| AdminSocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(io_err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(io_err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(AdminSocketError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io_err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)?;
    Ok(listener)
}

/// Serves admin requests until `shutdown`; removes the socket file on exit.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    bal: Arc<Balancer>,
    shutdown: CancellationToken,
) {
    let mut acceptor = Acceptor::new(listener, shutdown, "admin");
    while let Some((stream, _)) = acceptor.next().await {
        let bal = bal.clone();
        tokio::spawn(async move {
            if let Err(e) =
                tokio::time::timeout(Duration::from_secs(30), handle(stream, &bal)).await
            {
                tracing::debug!(error = %e, "admin request timed out");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn handle(stream: UnixStream, bal: &Arc<Balancer>) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    tokio::io::AsyncReadExt::take(BufReader::new(r), MAX_REQUEST)
        .read_line(&mut line)
        .await?;
    let resp = match serde_json::from_str::<Request>(line.trim()) {
        Err(e) => Response::err(format!(
            "bad request {:?}: {e}; valid: {{\"cmd\":\"status\"|\"reload\"|\"drain\"|\"enable\", ...}}",
            line.trim()
        )),
        Ok(req) => dispatch(req, bal).await,
    };
    let mut out = serde_json::to_vec(&resp).expect("response serialises");
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

async fn dispatch(req: Request, bal: &Arc<Balancer>) -> Response {
    match req {
        Request::Status => Response {
            status: Some(bal.status()),
            ..Response::ok()
        },
        Request::Reload => match bal.reload().await {
            Ok(summary) => Response {
                reload: Some(summary),
                ..Response::ok()
            },
            Err(e) => Response::err(e),
        },
        Request::Drain { service, backend } => match bal.set_drain(&service, &backend, true) {
            Ok(()) => Response::ok(),
            Err(e) => Response::err(e),
        },
        Request::Enable { service, backend } => match bal.set_drain(&service, &backend, false) {
            Ok(()) => Response::ok(),
            Err(e) => Response::err(e),
        },
    }
}

/// Client side: sends one request to the balancer at `path`.
pub async fn request(path: &Path, req: &Request) -> anyhow::Result<Response> {
    use anyhow::Context;
    let mut stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach the balancer's admin socket {} (is `tandem lb run` running with this config, and may this user open the socket?)",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    let mut reader = BufReader::new(stream);
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut resp))
        .await
        .context("the balancer did not answer within 60s")??;
    serde_json::from_str(resp.trim())
        .with_context(|| format!("unreadable answer from the balancer: {resp:?}"))
}
