//! The database: one [`Db`] handle over sqlx's `AnyPool`, for SQLite (the
//! default, a file, no setup) and MySQL/MariaDB (a shared tier).
//!
//! Everything stays in the subset the Any driver maps the same way on both:
//! `BIGINT` integers, `DOUBLE`, text, blobs; times are epoch milliseconds.
//! Queries are runtime strings with `?` placeholders, which both accept.
//! Where the two differ (claiming jobs: `FOR UPDATE SKIP LOCKED` against one
//! atomic `UPDATE`), [`Backend`] says which one we talk to.
//!
//! Migrations are embedded (one folder per database, same versions) and
//! applied at start by sqlx's migrator, which takes a lock on MySQL
//! (`GET_LOCK`) so replicas starting together do not race.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Executor;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};
use sqlx::{AssertSqlSafe, SqlStr};

pub use crate::config::{DbSettings, SqliteSync};

/// Which database sits behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A local file; one writer at a time (WAL, busy timeout, one writer
    /// connection per process).
    Sqlite,
    /// MySQL or MariaDB (≥ 10.6 for SKIP LOCKED).
    Mysql,
}

/// A database error, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("database: {what}: {source}")]
pub struct DbError {
    /// The operation, e.g. "create job".
    pub what: &'static str,
    /// What sqlx said.
    #[source]
    pub source: sqlx::Error,
}

impl DbError {
    /// The same error for another waiter of a failed batch (a sqlx error
    /// cannot be cloned: the copy carries its text).
    pub fn copy(&self) -> DbError {
        DbError {
            what: self.what,
            source: sqlx::Error::Protocol(self.source.to_string()),
        }
    }
}

/// Adds context to sqlx errors.
pub trait Ctx<T> {
    /// Names the operation that failed.
    fn ctx(self, what: &'static str) -> Result<T, DbError>;
}

impl<T> Ctx<T> for Result<T, sqlx::Error> {
    fn ctx(self, what: &'static str) -> Result<T, DbError> {
        self.map_err(|source| DbError { what, source })
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Connecting failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL with any password hidden.
        url: String,
        /// What sqlx said.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The pool and what it talks to. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    /// The connections, for reads.
    pub pool: AnyPool,
    /// The connections for writes: statements that change rows and the
    /// transactions they run in. SQLite: one connection (see
    /// [`Db::open_with`]); MySQL: the same pool as `pool`.
    pub writer: AnyPool,
    /// SQLite or MySQL.
    pub backend: Backend,
    /// The configured `PRAGMA synchronous` (SQLite).
    sync: SqliteSync,
}

/// The writer's connection for writes whose loss on a power cut does not
/// matter: rate limit state and request log rows. On SQLite with
/// `sqlite_synchronous = "full"` their commits skip the fsync
/// (`synchronous = NORMAL` while this is held); the next full commit, a
/// job's, syncs their WAL frames too, and a crash of the process loses
/// nothing either way. [`Relaxed::done`] puts the connection back as it
/// was; dropped without it (an error path, a panic), the connection is
/// closed instead, so the pool opens a fresh one with the configured
/// settings and no job write ever runs relaxed.
pub struct Relaxed {
    /// The writer connection, relaxed.
    pub conn: PoolConnection<Any>,
    restore: Option<&'static str>,
}

impl Relaxed {
    /// Restores the configured synchronous mode and returns the connection.
    pub async fn done(mut self) {
        if let Some(sql) = self.restore.take()
            && self.conn.execute(sql).await.is_err()
        {
            self.conn.close_on_drop();
        }
    }
}

impl Drop for Relaxed {
    fn drop(&mut self) {
        if self.restore.is_some() {
            self.conn.close_on_drop();
        }
    }
}

/// The newest migration version; `/readyz` checks it has been applied.
pub const LATEST_MIGRATION: i64 = 4;

/// Every migration of `backend`, oldest first: (version, name, SQL).
fn migrations(backend: Backend) -> [(i64, &'static str, &'static str); 4] {
    match backend {
        Backend::Sqlite => [
            (
                1,
                "init",
                include_str!("../migrations/sqlite/0001_init.sql"),
            ),
            (
                2,
                "priority",
                include_str!("../migrations/sqlite/0002_priority.sql"),
            ),
            (
                3,
                "lifecycle",
                include_str!("../migrations/sqlite/0003_lifecycle.sql"),
            ),
            (
                4,
                "webhooks",
                include_str!("../migrations/sqlite/0004_webhooks.sql"),
            ),
        ],
        Backend::Mysql => [
            (1, "init", include_str!("../migrations/mysql/0001_init.sql")),
            (
                2,
                "priority",
                include_str!("../migrations/mysql/0002_priority.sql"),
            ),
            (
                3,
                "lifecycle",
                include_str!("../migrations/mysql/0003_lifecycle.sql"),
            ),
            (
                4,
                "webhooks",
                include_str!("../migrations/mysql/0004_webhooks.sql"),
            ),
        ],
    }
}

fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(
        migrations(backend)
            .into_iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// The options of one pool: the connection settings every connection gets.
fn pool_options(backend: Backend, max: u32, settings: &DbSettings) -> AnyPoolOptions {
    let sync = settings.sqlite_synchronous.pragma();
    let busy_ms = settings
        .sqlite_busy_timeout
        .as_millis()
        .min(i32::MAX as u128);
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL: readers do not block the writer, and a commit
                    // appends to one file. The busy timeout is how long a
                    // writer waits for another process's write lock.
                    // synchronous: see `SqliteSync`.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute(AssertSqlSafe(format!("PRAGMA busy_timeout = {busy_ms}")))
                        .await?;
                    conn.execute(AssertSqlSafe(format!("PRAGMA synchronous = {sync}")))
                        .await?;
                } else {
                    // READ COMMITTED: claims see rows committed by other
                    // replicas without gap locks between them.
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                }
                Ok(())
            })
        })
}

/// Puts a SQLite file in `auto_vacuum = INCREMENTAL` mode, so that pages
/// freed by retention can be given back to the file system a few at a
/// time (`PRAGMA incremental_vacuum`, see `crate::jobs::retention`). A new
/// file takes the mode at once; a file made before needs one `VACUUM`,
/// which rewrites it: done once, at the first start that finds it so.
async fn sqlite_auto_vacuum(writer: &AnyPool) -> Result<(), sqlx::Error> {
    const INCREMENTAL: i64 = 2;
    let mode = || sqlx::query_scalar::<_, i64>("PRAGMA auto_vacuum").fetch_one(writer);
    if mode().await? == INCREMENTAL {
        return Ok(());
    }
    writer.execute("PRAGMA auto_vacuum = INCREMENTAL").await?;
    if mode().await? != INCREMENTAL {
        // WAL mode has already written the header of a new file, so even
        // an empty one takes the VACUUM (instant when empty).
        let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
            .fetch_one(writer)
            .await?;
        if tables > 0 {
            tracing::info!(
                "converting the SQLite file to incremental auto-vacuum (once: VACUUM rewrites it)"
            );
        }
        writer.execute("VACUUM").await?;
    }
    Ok(())
}

/// Hides the password of a URL for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Db {
    /// Connects with the default [`DbSettings`] and applies pending
    /// migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Db, OpenError> {
        Db::open_with(url, max_connections, &DbSettings::default()).await
    }

    /// Connects and applies pending migrations (through the writer).
    ///
    /// SQLite: `pool` has `max_connections` connections for reads and
    /// `writer` exactly one. Every write of one process then queues for
    /// that connection in the pool's fair (FIFO) wait list, in our code,
    /// and never in SQLite's busy handler, which sleeps and retries; and no
    /// two connections of ours can hold snapshots that a write of the other
    /// invalidates (SQLITE_BUSY_SNAPSHOT). Another process on the same file
    /// still contends for the file's write lock through the busy timeout.
    /// MySQL: one pool for both.
    pub async fn open_with(
        url: &str,
        max_connections: u32,
        settings: &DbSettings,
    ) -> Result<Db, OpenError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Mysql
        };
        if backend == Backend::Sqlite
            && let Some(path) = url
                .strip_prefix("sqlite://")
                .map(|p| p.split('?').next().unwrap_or(p))
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            // Best effort: a missing state dir is reported by connect below.
            let _ = std::fs::create_dir_all(dir);
        }
        let connect = |n: u32| pool_options(backend, n, settings).connect(url);
        let err = |source| OpenError::Connect {
            url: redact(url),
            source,
        };
        let pool = connect(max_connections).await.map_err(err)?;
        let writer = match backend {
            Backend::Sqlite => connect(1).await.map_err(err)?,
            Backend::Mysql => pool.clone(),
        };
        if backend == Backend::Sqlite {
            sqlite_auto_vacuum(&writer).await.map_err(err)?;
        }
        migrator(backend).run(&writer).await?;
        Ok(Db {
            pool,
            writer,
            backend,
            sync: settings.sqlite_synchronous,
        })
    }

    /// Begins a write transaction on the writer. SQLite: `BEGIN IMMEDIATE`,
    /// which takes the file's write lock at once (waiting through the busy
    /// timeout if another process holds it), so reads inside the
    /// transaction see the latest commit and its writes cannot fail with
    /// SQLITE_BUSY halfway. MySQL: a plain `BEGIN`.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Mysql => self.writer.begin().await,
        }
    }

    /// The writer connection, relaxed (see [`Relaxed`]).
    pub async fn relaxed(&self) -> Result<Relaxed, sqlx::Error> {
        let mut conn = self.writer.acquire().await?;
        let restore = if self.backend == Backend::Sqlite && self.sync == SqliteSync::Full {
            conn.execute("PRAGMA synchronous = NORMAL").await?;
            Some("PRAGMA synchronous = FULL")
        } else {
            None
        };
        Ok(Relaxed { conn, restore })
    }

    /// Begins a write transaction on `conn`, a writer connection, as
    /// [`Db::begin_write`] does.
    pub async fn begin_on<'c>(
        &self,
        conn: &'c mut AnyConnection,
    ) -> Result<sqlx::Transaction<'c, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
            Backend::Mysql => conn.begin().await,
        }
    }

    /// The database answers and the newest migration is applied.
    pub async fn ready(&self) -> Result<(), DbError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = ?")
            .bind(LATEST_MIGRATION)
            .fetch_one(&self.pool)
            .await
            .ctx("readiness")?;
        if n == 1 {
            Ok(())
        } else {
            Err(DbError {
                what: "readiness",
                source: sqlx::Error::Protocol(format!("migration {LATEST_MIGRATION} not applied")),
            })
        }
    }
}

/// Times a transaction that lost a conflict with another one is run again.
pub const RETRIES: u32 = 6;

/// Whether `e` is a conflict between transactions that the server settled
/// by rolling ours back, so the same work run again can succeed. MySQL and
/// MariaDB: 1213 `ER_LOCK_DEADLOCK` (InnoDB rolled the whole transaction
/// back), 1205 `ER_LOCK_WAIT_TIMEOUT` (only the statement; the caller's
/// transaction is dropped, which rolls back the rest), and any error with
/// SQLSTATE 40001 (serialization failure). Two replicas inserting batches
/// that share idempotency keys deadlock this way: each holds one key's
/// record lock and waits for the other's. Everything else (a broken
/// connection, a full disk, a bad statement) is not retried here.
pub fn is_conflict(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    if let Some(my) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1205 | 1213) || my.code() == Some("40001");
    }
    d.code().as_deref() == Some("40001")
}

/// How long to wait before running a conflicted transaction again, for its
/// `attempt`-th retry (0-based): a random time up to 2 ms × 2^attempt, so
/// the two sides of a deadlock do not meet again in step ("full jitter").
pub fn conflict_backoff(attempt: u32) -> Duration {
    let cap_us = 2_000u64 << attempt.min(10);
    Duration::from_micros(rand::random_range(0..=cap_us))
}

/// Wall-clock now, epoch milliseconds.
pub fn now_ms() -> i64 {
    now_us() / 1000
}

/// Wall-clock now, epoch microseconds.
pub fn now_us() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    hex(&bytes)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Cannot fail: writing to a String.
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_password_only() {
        assert_eq!(
            redact("mysql://u:secret@h:3306/db"),
            "mysql://u:***@h:3306/db"
        );
        assert_eq!(redact("sqlite:///x/api.db"), "sqlite:///x/api.db");
    }
}
