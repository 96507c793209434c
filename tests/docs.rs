//! `docs/configuration.md` must match the three config parsers, key for key.
//!
//! The source of truth is each parser itself, asked through its public API:
//! a probe file that sets an unknown key `zz_undocumented` in one table makes
//! the parser name every key that table accepts (all three walk their file
//! with `tandem_service::config`'s walker, which puts them in
//! [`ConfigError::valid`]). So a key added to a parser but not to the docs
//! fails here, and so does a documented key the parser does not accept, or a
//! table added or removed on either side.
//!
//! A documented default written as one code span (`` `"30s"` ``) is a TOML
//! literal; it is checked by parsing a file with `key = default` and the same
//! file without the key: both must give the same configuration.
//!
//! Every key set in the three example files must be documented too, and the
//! one duration grammar the three files share is documented once, its
//! examples checked against the parser.
//!
//! Markdown shape relied on: `## ... \`lb.toml\`` (or `worker.toml`,
//! `api.toml`) opens a file's part; `### ` opens a table, named by the first
//! code span in the heading (`[node]`, `[[service]]`) or "" when the heading
//! has none (the top level); the rows are pipe tables whose first cell is
//! the key in backticks and which have a `default` column.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tandem_lb::config::{Config as LbConfig, ConfigErrors, ErrorKind, parse_duration};

/// The key that no parser knows.
const PROBE: &str = "zz_undocumented";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------
// The documentation's tables.

#[derive(Debug)]
struct Row {
    key: String,
    /// The `default` cell as written.
    default: String,
}

/// file part ("lb.toml") → table ("[node]", "" for the top level) → rows.
type Docs = BTreeMap<String, BTreeMap<String, Vec<Row>>>;

/// The first `` `code` `` span of `line`.
fn first_code_span(line: &str) -> Option<&str> {
    let start = line.find('`')? + 1;
    let len = line[start..].find('`')?;
    Some(&line[start..start + len])
}

fn cells(line: &str) -> Vec<&str> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(str::trim).collect()
}

fn parse_docs(text: &str) -> Docs {
    let mut docs = Docs::new();
    let mut part: Option<String> = None;
    let mut table: Option<String> = None;
    let mut default_col: Option<usize> = None;
    let mut columns = 0;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some(h) = line.strip_prefix("## ") {
            part = first_code_span(h)
                .filter(|s| s.ends_with(".toml"))
                .map(str::to_owned);
            table = None;
        } else if let Some(h) = line.strip_prefix("### ") {
            table = part
                .as_ref()
                .map(|_| first_code_span(h).unwrap_or("").to_owned());
            default_col = None;
        } else if line.starts_with('|') {
            let (Some(p), Some(t)) = (&part, &table) else {
                continue;
            };
            let c = cells(line);
            if c.first() == Some(&"key") {
                default_col = c.iter().position(|h| *h == "default");
                columns = c.len();
                assert!(
                    default_col.is_some(),
                    "configuration.md:{n}: table {p} {t} has no default column"
                );
                continue;
            }
            let Some(key) = c[0].strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
                continue; // the |---| line
            };
            assert_eq!(
                c.len(),
                columns,
                "configuration.md:{n}: row of `{key}` has {} cells, the header {columns} \
                 (a `|` inside a cell?)",
                c.len()
            );
            let rows = docs
                .entry(p.clone())
                .or_default()
                .entry(t.clone())
                .or_default();
            assert!(
                rows.iter().all(|r| r.key != key),
                "configuration.md:{n}: `{key}` twice in {p} {t}"
            );
            rows.push(Row {
                key: key.to_owned(),
                default: c[default_col.expect("header seen")].to_owned(),
            });
        }
    }
    docs
}

fn docs() -> Docs {
    parse_docs(&read("docs/configuration.md"))
}

fn doc_keys(docs: &Docs, part: &str, table: &str) -> BTreeSet<String> {
    docs.get(part)
        .and_then(|p| p.get(table))
        .unwrap_or_else(|| panic!("configuration.md has no table {table:?} under {part}"))
        .iter()
        .map(|r| r.key.clone())
        .collect()
}

/// A default that is one code span is a TOML literal: its text.
fn literal_default(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

fn set(keys: impl IntoIterator<Item = impl Into<String>>) -> BTreeSet<String> {
    keys.into_iter().map(Into::into).collect()
}

/// Both directions at once, with a message that says which way it drifted.
fn assert_same_keys(what: &str, parser: &BTreeSet<String>, documented: &BTreeSet<String>) {
    let undocumented: Vec<_> = parser.difference(documented).collect();
    let unknown: Vec<_> = documented.difference(parser).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "{what}: accepted by the parser but not in docs/configuration.md: {undocumented:?}; \
         in docs/configuration.md but not accepted by the parser: {unknown:?}"
    );
}

/// Every `key = ` an example file sets (at a line's start or in an inline
/// table).
fn example_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        for (i, _) in line.match_indices(" = ") {
            let before = &line[..i];
            let key_start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |p| p + 1);
            let at_start = key_start == 0;
            let inline = before[..key_start].ends_with("{ ") || before[..key_start].ends_with(", ");
            if (at_start || inline) && key_start < before.len() {
                keys.insert(before[key_start..].to_owned());
            }
        }
    }
    keys
}

fn all_documented(docs: &Docs, part: &str) -> BTreeSet<String> {
    docs[part]
        .values()
        .flatten()
        .map(|r| r.key.clone())
        .collect()
}

// ---------------------------------------------------------------------------
// The balancer.

/// Minimal valid pieces the probes and default checks are built from.
const LB_SERVICE: &str = "[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:18080\"\n";
const LB_BACKEND: &str = "[[service.backend]]\naddress = \"127.0.0.1:18081\"\n";
const LB_VRRP: &str = "[[vrrp]]\nname = \"v\"\ninterface = \"lo\"\nvirtual_router_id = 1\n\
                       virtual_ips = [\"198.18.0.1/32\"]\n";

/// One balancer table: its name in the docs, a file with `{}` where a line
/// goes into that table, the label the parser gives the table in errors,
/// and the keys of that table that open sub-tables (not rows).
struct LbTable {
    doc: &'static str,
    template: String,
    label: &'static str,
    sub_tables: &'static [&'static str],
}

fn lb_tables() -> Vec<LbTable> {
    vec![
        LbTable {
            doc: "[node]",
            template: "[node]\n{}\n".into(),
            label: "[node]",
            sub_tables: &[],
        },
        LbTable {
            doc: "[admin]",
            template: "[admin]\n{}\n".into(),
            label: "[admin]",
            sub_tables: &[],
        },
        LbTable {
            doc: "[metrics]",
            template: "[metrics]\nlisten = \"127.0.0.1:19310\"\n{}\n".into(),
            label: "[metrics]",
            sub_tables: &[],
        },
        LbTable {
            doc: "[[service]]",
            template: format!("{LB_SERVICE}{{}}\n{LB_BACKEND}"),
            label: "[[service]]",
            sub_tables: &["health", "backend"],
        },
        LbTable {
            doc: "[service.health]",
            template: format!("{LB_SERVICE}[service.health]\nkind = \"http\"\n{{}}\n{LB_BACKEND}"),
            label: "[service.health]",
            sub_tables: &[],
        },
        LbTable {
            doc: "[service.health]",
            template: format!(
                "{LB_SERVICE}{LB_BACKEND}[service.backend.health]\nkind = \"http\"\n{{}}\n"
            ),
            label: "[service.backend.health]",
            sub_tables: &[],
        },
        LbTable {
            doc: "[[service.backend]]",
            template: format!("{LB_SERVICE}{LB_BACKEND}{{}}\n"),
            label: "[[service.backend]]",
            sub_tables: &["health"],
        },
        LbTable {
            doc: "[[vrrp]]",
            template: format!("{LB_VRRP}{{}}\n"),
            label: "[[vrrp]]",
            sub_tables: &[],
        },
        LbTable {
            doc: "track",
            // Inline: the line goes after the target as `, key = value`.
            template: format!("{LB_VRRP}track = [{{ interface = \"lo\"{{}} }}]\n"),
            label: "a track entry",
            sub_tables: &[],
        },
    ]
}

fn lb_parse(text: &str) -> Result<LbConfig, ConfigErrors> {
    LbConfig::parse(text, Path::new("probe.toml"))
}

/// The keys the balancer's parser accepts in the table labelled `label`,
/// from the unknown-key error a probe file provokes.
fn lb_accepted(probe: &str, label: &str) -> BTreeSet<String> {
    let errors = lb_parse(probe).expect_err("the probe key must be refused");
    accepted_keys(&errors, label, probe)
}

/// The keys the unknown-key error about [`PROBE`] in the table labelled
/// `label` lists as valid.
fn accepted_keys(errors: &ConfigErrors, label: &str, probe: &str) -> BTreeSet<String> {
    let e = errors
        .errors()
        .iter()
        .find(|e| {
            matches!(&e.kind, ErrorKind::UnknownKey { table } if *table == label)
                && e.path.ends_with(PROBE)
        })
        .unwrap_or_else(|| panic!("no unknown-key error for {label} in:\n{errors}\n{probe}"));
    set(e.valid.split(", "))
}

fn fill(template: &str, line: &str) -> String {
    template.replacen("{}", line, 1)
}

#[test]
fn balancer_tables_match_the_parser() {
    let docs = docs();
    let part = "lb.toml";
    // The top level: every table the parser knows is documented, and no other.
    let top = lb_accepted(&format!("{PROBE} = 1\n"), "the top level");
    let documented_tables: BTreeSet<String> = docs[part]
        .keys()
        .filter(|t| !t.contains('.') && t.starts_with('['))
        .map(|t| t.trim_matches(|c| c == '[' || c == ']').to_owned())
        .collect();
    assert_same_keys("lb.toml top-level tables", &top, &documented_tables);

    let mut seen_doc_tables = BTreeSet::new();
    for t in lb_tables() {
        seen_doc_tables.insert(t.doc.to_owned());
        let line = if t.doc == "track" {
            format!(", {PROBE} = 1")
        } else {
            format!("{PROBE} = 1")
        };
        let accepted = lb_accepted(&fill(&t.template, &line), t.label);
        for sub in t.sub_tables {
            assert!(
                accepted.contains(*sub),
                "{}: the parser no longer has {sub}",
                t.label
            );
        }
        let rows: BTreeSet<String> = accepted
            .into_iter()
            .filter(|k| !t.sub_tables.contains(&k.as_str()))
            .collect();
        assert_same_keys(
            &format!("lb.toml {}", t.label),
            &rows,
            &doc_keys(&docs, part, t.doc),
        );
    }
    let all_doc_tables: BTreeSet<String> = docs[part].keys().cloned().collect();
    assert_same_keys(
        "lb.toml tables probed by this test",
        &seen_doc_tables,
        &all_doc_tables,
    );
    // The per-backend health table is documented beside the service's.
    assert!(
        read("docs/configuration.md")
            .lines()
            .any(|l| l.starts_with("### ") && l.contains("`[service.backend.health]`")),
        "configuration.md has no heading naming [service.backend.health]"
    );
}

#[test]
fn balancer_defaults_are_the_parsers() {
    let docs = docs();
    let mut checked = 0;
    for t in lb_tables() {
        for row in &docs["lb.toml"][t.doc] {
            let Some(value) = literal_default(&row.default) else {
                continue;
            };
            // `kind` is already in the health templates: test it alone.
            let template = if row.key == "kind" {
                t.template.replacen("kind = \"http\"\n", "", 1)
            } else {
                t.template.clone()
            };
            let line = if t.doc == "track" {
                format!(", {} = {value}", row.key)
            } else {
                format!("{} = {value}", row.key)
            };
            let with = lb_parse(&fill(&template, &line));
            let without = lb_parse(&fill(&template, ""));
            match (with, without) {
                (Ok(a), Ok(b)) => assert_eq!(
                    a, b,
                    "{} {}: documented default {value} is not the default",
                    t.label, row.key
                ),
                (a, b) => panic!(
                    "{} {} = {value}: {:?} / without it: {:?}",
                    t.label,
                    row.key,
                    a.err().map(|e| e.to_string()),
                    b.err().map(|e| e.to_string())
                ),
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} literal defaults checked");
}

#[test]
fn balancer_example_keys_are_documented() {
    let docs = docs();
    let documented = all_documented(&docs, "lb.toml");
    let example = example_keys(&read("lb/lb.example.toml"));
    assert!(example.len() > 50, "{example:?}");
    let missing: Vec<_> = example.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "set in lb/lb.example.toml, not in docs/configuration.md: {missing:?}"
    );
}

// ---------------------------------------------------------------------------
// Worker and API: the same walker, tables of plain keys.

/// A worker or API table: docs name, template with `{}`, the label the
/// parser gives the table in errors, sub-tables.
struct WalkedTable {
    doc: &'static str,
    template: &'static str,
    label: &'static str,
    sub_tables: &'static [&'static str],
}

fn check_walked_part<C: std::fmt::Debug>(
    part: &str,
    tables: &[WalkedTable],
    parse: impl Fn(&str) -> Result<C, ConfigErrors>,
) {
    let docs = docs();
    let mut probed = BTreeSet::new();
    let mut checked = 0;
    for t in tables {
        probed.insert(t.doc.to_owned());
        let probe = fill(t.template, &format!("{PROBE} = 1"));
        let errors = parse(&probe).expect_err("the probe key must be refused");
        let accepted = accepted_keys(&errors, t.label, &probe);
        for sub in t.sub_tables {
            assert!(accepted.contains(*sub), "{part}: no {sub} any more");
        }
        let rows: BTreeSet<String> = accepted
            .into_iter()
            .filter(|k| !t.sub_tables.contains(&k.as_str()))
            .collect();
        assert_same_keys(
            &format!("{part} {:?}", t.doc),
            &rows,
            &doc_keys(&docs, part, t.doc),
        );

        for row in &docs[part][t.doc] {
            let Some(value) = literal_default(&row.default) else {
                continue;
            };
            let with = parse(&fill(t.template, &format!("{} = {value}", row.key)));
            let without = parse(&fill(t.template, ""));
            match (with, without) {
                // Debug: the API's Config has no PartialEq.
                (Ok(a), Ok(b)) => assert_eq!(
                    format!("{a:?}"),
                    format!("{b:?}"),
                    "{part} {} {}: documented default {value} is not the default",
                    t.doc,
                    row.key
                ),
                (a, b) => panic!(
                    "{part} {} {} = {value}: {:?} / without it: {:?}",
                    t.doc,
                    row.key,
                    a.err().map(|e| e.to_string()),
                    b.err().map(|e| e.to_string())
                ),
            }
            checked += 1;
        }
    }
    let all: BTreeSet<String> = docs[part].keys().cloned().collect();
    assert_same_keys(&format!("{part} tables probed"), &probed, &all);
    assert!(
        checked >= 10,
        "{part}: only {checked} literal defaults checked"
    );
}

#[test]
fn worker_tables_match_the_parser() {
    let tables = [
        WalkedTable {
            doc: "",
            template: "listen = \"127.0.0.1:19101\"\n{}\n",
            label: "the top level",
            sub_tables: &["limits", "thumbnail", "text", "exec"],
        },
        WalkedTable {
            doc: "[limits]",
            template: "listen = \"127.0.0.1:19101\"\n[limits]\n{}\n",
            label: "[limits]",
            sub_tables: &[],
        },
        WalkedTable {
            doc: "[thumbnail]",
            template: "listen = \"127.0.0.1:19101\"\n[thumbnail]\n{}\n",
            label: "[thumbnail]",
            sub_tables: &[],
        },
        WalkedTable {
            doc: "[text]",
            template: "listen = \"127.0.0.1:19101\"\n[text]\n{}\n",
            label: "[text]",
            sub_tables: &[],
        },
        WalkedTable {
            doc: "[exec]",
            template: "listen = \"127.0.0.1:19101\"\n[exec]\ncommand = [\"/bin/cat\"]\n{}\n",
            label: "[exec]",
            sub_tables: &[],
        },
    ];
    check_walked_part("worker.toml", &tables, |text| {
        tandem_worker::config::Config::parse(text, Path::new("probe.toml"))
    });
    // Every sub-table is a documented table.
    let docs = docs();
    for sub in tables[0].sub_tables {
        assert!(docs["worker.toml"].contains_key(&format!("[{sub}]")));
    }
}

#[test]
fn api_tables_match_the_parser() {
    let tables = [
        WalkedTable {
            doc: "",
            template: "{}\n",
            label: "the top level",
            sub_tables: &["kinds", "webhooks"],
        },
        WalkedTable {
            doc: "[kinds.NAME]",
            template: "[kinds.text]\nurl = \"http://127.0.0.1:19102\"\n{}\n",
            label: "[kinds.NAME]",
            sub_tables: &[],
        },
        WalkedTable {
            doc: "[webhooks]",
            template: "[webhooks]\n{}\n",
            label: "[webhooks]",
            sub_tables: &[],
        },
    ];
    check_walked_part("api.toml", &tables, |text| {
        tandem_api::config::Config::parse(text, Path::new("probe.toml"))
    });
}

#[test]
fn worker_and_api_example_keys_are_documented() {
    let docs = docs();
    for (part, file) in [
        ("worker.toml", "worker/worker.example.toml"),
        ("api.toml", "api/api.example.toml"),
    ] {
        let documented = all_documented(&docs, part);
        let example = example_keys(&read(file));
        assert!(example.len() >= 10, "{file}: {example:?}");
        // `env = { PATH = ... }` sets a variable, not a key.
        let missing: Vec<_> = example
            .difference(&documented)
            .filter(|k| k.as_str() != "PATH")
            .collect();
        assert!(
            missing.is_empty(),
            "set in {file}, not in docs/configuration.md: {missing:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The duration grammar, documented once for the three files.

/// The first code span of each row of every pipe table in `section`
/// (`## ` heading to the next), split at the prose line between tables:
/// (units, accepted, refused).
fn duration_tables() -> Vec<Vec<String>> {
    let text = read("docs/configuration.md");
    let start = text
        .find("\n## Durations")
        .expect("configuration.md has a Durations section");
    let section = &text[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut tables: Vec<Vec<String>> = Vec::new();
    let mut in_table = false;
    for line in section.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table {
            tables.push(Vec::new());
            in_table = true;
        }
        if let Some(code) = first_code_span(line).filter(|_| !line.starts_with("|---")) {
            tables
                .last_mut()
                .expect("pushed above")
                .push(code.to_owned());
        }
    }
    tables
}

#[test]
fn the_duration_grammar_is_documented_once_and_true() {
    let tables = duration_tables();
    assert_eq!(tables.len(), 3, "units, accepted, refused: {tables:?}");
    let unquote = |s: &String| s.trim_matches('"').to_owned();
    for unit in &tables[0] {
        parse_duration(&format!("1{unit}")).unwrap_or_else(|e| panic!("unit {unit}: {e}"));
    }
    // Every unit the parser knows is in the table: its "unknown unit"
    // message lists them.
    let message = parse_duration("1x").unwrap_err().to_string();
    let listed = message
        .split_once("(units: ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(units, _)| set(units.split(", ")))
        .unwrap_or_else(|| panic!("no unit list in {message:?}"));
    assert_same_keys("duration units", &listed, &set(tables[0].iter().cloned()));
    for ok in &tables[1] {
        parse_duration(&unquote(ok)).unwrap_or_else(|e| panic!("documented {ok}: {e}"));
    }
    for bad in &tables[2] {
        assert!(
            parse_duration(&unquote(bad)).is_err(),
            "documented as refused: {bad}"
        );
    }
    // The three files' parts point at the section instead of restating it.
    let text = read("docs/configuration.md");
    assert!(
        !text.contains("Durations are a whole number"),
        "a part describes its own duration grammar again"
    );
    assert_eq!(text.matches("](#durations-all-three-files)").count(), 3);
}

// ---------------------------------------------------------------------------
// The test's own parsing.

#[test]
fn the_markdown_reader_finds_parts_tables_and_defaults() {
    let md = "# T\n## The x: `lb.toml`\n### `[node]` and more\n\
              | key | default | meaning |\n|---|---|---|\n\
              | `name` | `\"a\"` | m |\n| `workers` | one per core | m |\n\
              ## Other\n### `[ignored]`\n| key | default |\n| `z` | `1` |\n";
    let d = parse_docs(md);
    assert_eq!(d.len(), 1);
    let rows = &d["lb.toml"]["[node]"];
    assert_eq!(rows.len(), 2);
    assert_eq!(literal_default(&rows[0].default), Some("\"a\""));
    assert_eq!(literal_default(&rows[1].default), None);
    assert_eq!(
        example_keys("a = 1\n# b = 2\nt = [{ c = 1, d = 2 }]\n  e = \"x = y\"\n"),
        set(["a", "t", "c", "d", "e"])
    );
}

/// Relative links between the docs, and to the repository, resolve.
#[test]
fn relative_links_in_docs_resolve() {
    let dir = root().join("docs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") {
                continue;
            }
            assert!(
                dir.join(target).exists(),
                "{}: link to {target} does not resolve",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} links checked");
}
