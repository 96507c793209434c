//! `worker.toml` walked by hand with `tandem_service::config`'s walker, so
//! every mistake in the file is reported, each with file:line:column, the
//! field path, the value as written and what is valid. Defaults are applied
//! here and nowhere else.

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_service::config::ErrorKind;
use tandem_service::config::values::{bind_addr, string};
use tandem_service::config::walk::{Reported, Table, Walker};

use super::Config;
use super::{ContentType, EnvName, ExecCommand, ExecConfig, Limits, TextConfig, ThumbnailConfig};

const ROOT_KEYS: &[&str] = &["listen", "limits", "thumbnail", "text", "exec"];
const LIMITS_KEYS: &[&str] = &[
    "concurrency",
    "retry_after",
    "shutdown_grace",
    "header_read_timeout",
    "idle_timeout",
];
const THUMBNAIL_KEYS: &[&str] = &[
    "timeout",
    "max_input_bytes",
    "max_pixels",
    "max_side",
    "default_width",
    "default_height",
    "max_width",
    "max_height",
];
const TEXT_KEYS: &[&str] = &["timeout", "max_input_bytes"];
const EXEC_KEYS: &[&str] = &[
    "command",
    "timeout",
    "max_input_bytes",
    "max_output_bytes",
    "stderr_tail_bytes",
    "pass_env",
    "env",
    "content_type",
];

const MIB: i64 = 1024 * 1024;
/// Largest side of an image accepted anywhere: PNG allows more, but nothing
/// we serve needs it and it keeps `w * h` products far from overflow.
const MAX_SIDE: i64 = 65_535;
const VALID_LISTEN: &str = r#"an IP:port such as "0.0.0.0:9101" or "[::1]:9101""#;

/// The whole file. Every table is read before any `?`, so one bad value
/// does not hide the next.
pub(super) fn root(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Result<Config, Reported> {
    w.check_keys(root, ROOT_KEYS, "the top level");
    let listen = w.required(root, "listen", VALID_LISTEN, bind_addr);
    let limits = limits(w, root);
    let thumbnail = thumbnail(w, root);
    let text = text(w, root);
    let exec = exec(w, root);
    Ok(Config {
        listen: listen?,
        limits: limits?,
        thumbnail: thumbnail?,
        text: text?,
        exec: exec?,
    })
}

/// `[name]` of the root, or an empty table at `name` when absent (so every
/// key takes its default).
fn section<'t, 'i>(
    w: &mut Walker<'_>,
    root: &Table<'t, 'i>,
    name: &'static str,
    keys: &[&str],
    label: &'static str,
    empty: &'t toml::de::DeTable<'i>,
) -> Result<Table<'t, 'i>, Reported> {
    Ok(w.sub_table(root, name, keys, label)?.unwrap_or(Table {
        entries: empty,
        header: 0..0,
        path: name.into(),
    }))
}

/// A positive size or count, bytes or items.
fn positive(
    w: &mut Walker<'_>,
    table: &Table<'_, '_>,
    key: &str,
    default: i64,
) -> Result<u64, Reported> {
    // Cannot be negative: the range starts at 1.
    w.integer_or(table, key, (1, i64::MAX), default)
        .map(|n| n as u64)
}

fn limits(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Result<Limits, Reported> {
    let empty = toml::de::DeTable::new();
    let t = section(w, root, "limits", LIMITS_KEYS, "[limits]", &empty)?;
    let concurrency = w.integer_or(&t, "concurrency", (1, u32::MAX.into()), 4);
    let retry_after = w.positive_duration(&t, "retry_after", Duration::from_secs(1));
    let shutdown_grace = w.positive_duration(&t, "shutdown_grace", Duration::from_secs(30));
    // Far above what a client on any working network needs to send a head
    // or its next request, far below what lets idle sockets pile up.
    let header_read_timeout =
        w.positive_duration(&t, "header_read_timeout", Duration::from_secs(10));
    let idle_timeout = w.positive_duration(&t, "idle_timeout", Duration::from_secs(30));
    let retry_after = retry_after?;
    Ok(Limits {
        // Cannot truncate: integer_or() checked the range.
        concurrency: concurrency? as u32,
        retry_after_secs: retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0),
        shutdown_grace: shutdown_grace?,
        header_read_timeout: header_read_timeout?,
        idle_timeout: idle_timeout?,
    })
}

fn thumbnail(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Result<ThumbnailConfig, Reported> {
    let empty = toml::de::DeTable::new();
    let t = section(w, root, "thumbnail", THUMBNAIL_KEYS, "[thumbnail]", &empty)?;
    let side = |w: &mut Walker<'_>, key: &str, default: i64| {
        // Cannot truncate: at most MAX_SIDE.
        w.integer_or(&t, key, (1, MAX_SIDE), default)
            .map(|n| n as u32)
    };
    let timeout = w.positive_duration(&t, "timeout", Duration::from_secs(10));
    let max_input_bytes = positive(w, &t, "max_input_bytes", 20 * MIB);
    let max_pixels = positive(w, &t, "max_pixels", 40_000_000);
    let max_side = side(w, "max_side", 16_384);
    let max_width = side(w, "max_width", 2048);
    let max_height = side(w, "max_height", 2048);
    let default_width = side(w, "default_width", 256);
    let default_height = side(w, "default_height", 256);
    let max_box = (max_width?, max_height?);
    let default_box = (
        default_fits(
            w,
            &t,
            "default_width",
            default_width?,
            max_box.0,
            "max_width",
        )?,
        default_fits(
            w,
            &t,
            "default_height",
            default_height?,
            max_box.1,
            "max_height",
        )?,
    );
    Ok(ThumbnailConfig {
        timeout: timeout?,
        max_input_bytes: max_input_bytes?,
        max_pixels: max_pixels?,
        max_side: max_side?,
        default_box,
        max_box,
    })
}

/// A default box side must be one a request could ask for.
fn default_fits(
    w: &mut Walker<'_>,
    t: &Table<'_, '_>,
    key: &str,
    value: u32,
    max: u32,
    max_key: &str,
) -> Result<u32, Reported> {
    match t.get(key) {
        Some(v) if value > max => {
            let with = format!("thumbnail.{max_key} = {max}");
            let valid = format!(
                "at most thumbnail.{max_key}: a default box must be one a request could ask for"
            );
            Err(w.bad_value(v, t.field(key), ErrorKind::Conflict { with }, &valid))
        }
        _ => Ok(value),
    }
}

fn text(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Result<TextConfig, Reported> {
    let empty = toml::de::DeTable::new();
    let t = section(w, root, "text", TEXT_KEYS, "[text]", &empty)?;
    let timeout = w.positive_duration(&t, "timeout", Duration::from_secs(5));
    let max_input_bytes = positive(w, &t, "max_input_bytes", 8 * MIB);
    Ok(TextConfig {
        timeout: timeout?,
        max_input_bytes: max_input_bytes?,
    })
}

/// `[exec]`, the one kind with no usable default (its command).
fn exec(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Result<Option<ExecConfig>, Reported> {
    let Some(t) = w.sub_table(root, "exec", EXEC_KEYS, "[exec]")? else {
        return Ok(None);
    };
    let command = w
        .array(
            &t,
            "command",
            ExecCommand::VALID,
            Some("empty command"),
            |i, v| ExecCommand::word(v, i == 0),
        )
        .and_then(|words| match words {
            Some(words) => Ok(words.into_iter().map(|(word, _)| word).collect()),
            None => Err(w.push(
                &t.header,
                t.field("command"),
                None,
                ErrorKind::Missing,
                ExecCommand::VALID,
            )),
        })
        .map(|words| ExecCommand::from_words(words).expect("the array was checked non-empty"));
    let timeout = w.positive_duration(&t, "timeout", Duration::from_secs(30));
    let max_input_bytes = positive(w, &t, "max_input_bytes", 8 * MIB);
    let max_output_bytes = positive(w, &t, "max_output_bytes", 8 * MIB);
    let stderr_tail_bytes = positive(w, &t, "stderr_tail_bytes", 2048);
    let pass_env = w.array(&t, "pass_env", EnvName::VALID, None, |_, v| {
        EnvName::new(string(v)?)
    });
    let env = env_table(w, &t);
    let content_type = w.field(
        &t,
        "content_type",
        ContentType::VALID,
        ContentType::from_value,
    );
    Ok(Some(ExecConfig {
        command: command?,
        timeout: timeout?,
        max_input_bytes: max_input_bytes?,
        max_output_bytes: max_output_bytes?,
        stderr_tail_bytes: usize::try_from(stderr_tail_bytes?).unwrap_or(usize::MAX),
        pass_env: pass_env?
            .map(|names| names.into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default(),
        env: env?,
        content_type: content_type?
            .unwrap_or_else(|| ContentType("application/octet-stream".to_owned())),
    }))
}

/// `env = { NAME = "value", ... }`: each name checked at its key, each
/// value a string.
fn env_table(
    w: &mut Walker<'_>,
    exec: &Table<'_, '_>,
) -> Result<BTreeMap<EnvName, String>, Reported> {
    let Some(v) = exec.get("env") else {
        return Ok(BTreeMap::new());
    };
    let table = w.as_table(v, exec.field("env"), "env = { NAME = \"value\" }")?;
    let mut out = Ok(BTreeMap::new());
    for (name, value) in table.entries.iter() {
        let path = table.field(name.get_ref());
        let name = EnvName::new(name.get_ref())
            .map_err(|kind| w.push(&name.span(), path.clone(), None, kind, EnvName::VALID));
        let value = match string(value.get_ref()) {
            Ok(s) => Ok(s.to_owned()),
            Err(kind) => Err(w.bad_value(value, path, kind, "a string")),
        };
        match (name, value, &mut out) {
            (Ok(n), Ok(s), Ok(map)) => {
                map.insert(n, s);
            }
            (Err(r), _, _) | (_, Err(r), _) => out = Err(r),
            _ => {}
        }
    }
    out
}
