//! Where `tandem jobs` finds the API's URL and key.
//!
//! Rule, first found wins, for each of the two separately: the flag
//! (`--url`, `--key`), the environment (`TANDEM_URL`, `TANDEM_KEY`; clap
//! reads both into the flags), the client file (`--config PATH`, else
//! `$XDG_CONFIG_HOME/tandem/client.toml`, else
//! `~/.config/tandem/client.toml`; a missing default file is fine, a
//! missing named one is an error), and for the URL only, `tandem up`'s
//! `http://127.0.0.1:8080`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The URL used when nothing names one: `tandem up`'s API.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The client file's keys.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// The API's base URL.
    pub url: Option<String>,
    /// A bearer token from `tandem api keys create`.
    pub key: Option<String>,
}

/// The default client file's path, if a home is known.
pub fn default_path() -> Option<PathBuf> {
    let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    from("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| from("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("tandem").join("client.toml"))
}

/// Reads `named`, or the default file if it exists.
pub fn read(named: Option<&Path>) -> anyhow::Result<(File, Option<PathBuf>)> {
    let path = match named {
        Some(p) => p.to_owned(),
        None => match default_path() {
            Some(p) if p.exists() => p,
            _ => return Ok((File::default(), None)),
        },
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the client file {}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}valid keys: url = \"http://HOST:PORT\", key = \"tandem_...\"",
            path.display(),
            e.to_string().trim_end().to_owned() + "; "
        )
    })?;
    Ok((file, Some(path)))
}

/// The URL and key to use, from the flags (which clap filled from the
/// environment too) and the file.
pub fn resolve(
    flag_url: Option<String>,
    flag_key: Option<String>,
    file: File,
    path: Option<&Path>,
) -> anyhow::Result<(String, String)> {
    let url = flag_url
        .or(file.url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let Some(key) = flag_key.or(file.key).filter(|k| !k.trim().is_empty()) else {
        let file = path
            .map(|p| p.display().to_string())
            .or_else(|| default_path().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "~/.config/tandem/client.toml".into());
        bail!(
            "no API key: pass --key KEY, set TANDEM_KEY, or write key = \"...\" in {file} \
             (`tandem up` prints one; `tandem api keys create NAME` makes one)"
        );
    };
    Ok((url, key.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_the_default() {
        let file = || File {
            url: Some("http://198.18.0.100:8080".into()),
            key: Some("tk_file".into()),
        };
        let got = resolve(
            Some("http://h:1".into()),
            Some("tk_flag".into()),
            file(),
            None,
        )
        .unwrap();
        assert_eq!(got, ("http://h:1".into(), "tk_flag".into()));
        let got = resolve(None, None, file(), None).unwrap();
        assert_eq!(got, ("http://198.18.0.100:8080".into(), "tk_file".into()));
        let got = resolve(None, Some("tk_x".into()), File::default(), None).unwrap();
        assert_eq!(got, (DEFAULT_URL.into(), "tk_x".into()));
    }

    #[test]
    fn a_missing_key_says_where_one_can_come_from() {
        let e = resolve(None, None, File::default(), Some(Path::new("/etc/x.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--key") && e.contains("TANDEM_KEY") && e.contains("/etc/x.toml"),
            "{e}"
        );
    }

    #[test]
    fn the_file_is_read_and_its_mistakes_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("client.toml");
        std::fs::write(&p, "url = \"http://h:2\"\nkey = \"tk_a\"\n").unwrap();
        let (f, at) = read(Some(&p)).unwrap();
        assert_eq!(
            (f.url.as_deref(), f.key.as_deref()),
            (Some("http://h:2"), Some("tk_a"))
        );
        assert_eq!(at.as_deref(), Some(p.as_path()));
        std::fs::write(&p, "uri = \"http://h:2\"\n").unwrap();
        let e = read(Some(&p)).unwrap_err().to_string();
        assert!(
            e.starts_with(&p.display().to_string()) && e.contains("uri"),
            "{e}"
        );
        assert!(e.contains("valid keys"), "{e}");
        let e = read(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(format!("{e:#}").contains("nope.toml"), "{e:#}");
    }
}
