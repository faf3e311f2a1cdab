//! One source of truth for the functions' configuration: the variables
//! `shared::config::VARS` and `shared::telemetry::VARS` list (which a unit
//! test holds to what `Config` reads), the README's configuration table,
//! and what the local stack (`scripts/stack.sh`, `scripts/env.sh`) hands the
//! functions must agree. Any disagreement fails here:
//!
//! - a variable the functions read that the README does not list, or a
//!   README row for a variable nothing reads;
//! - a README default that is not the functions' default;
//! - a variable set for `make dev`/`make up`/`make test` that the stack does
//!   not pass on to the functions;
//! - a default of the functions' that `scripts/env.sh` silently replaces.

use shared::config::Var;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// README rows for variables the functions do not read, each with the
/// reason it is in the table.
const NOT_READ_BY_THE_FUNCTIONS: &[(&str, &str)] = &[
    (
        "AWS_ENDPOINT_URL_SQS",
        "the AWS SDK's own endpoint override",
    ),
    ("MAX_CONCURRENCY", "the local poller (sqs-trigger)"),
    ("BATCH_SIZE", "the local poller (sqs-trigger)"),
    ("BATCH_WINDOW_MS", "the local poller (sqs-trigger)"),
];

/// Variables whose README default is "local dummy" rather than the secret.
const SECRETS: &[&str] = &["AUTH_JWT_SECRET", "ONLYFANS_API_TOKEN"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn function_vars() -> Vec<Var> {
    shared::config::VARS
        .iter()
        .chain(shared::telemetry::VARS)
        .copied()
        .collect()
}

/// A row of the README's configuration tables: the names in backticks in
/// its first column, and its default column.
#[derive(Debug)]
struct Row {
    names: Vec<String>,
    default: String,
}

/// The text between backticks, in order.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// `cell` without its parenthesised remarks: "`false` (`true` in AWS)" -> "`false` ".
fn outside_parentheses(cell: &str) -> String {
    let mut depth = 0u32;
    cell.chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

/// Every table row under the README's "## Configuration" heading.
fn readme_rows() -> Vec<Row> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section: Vec<&str> = readme
        .lines()
        .skip_while(|l| l.trim() != "## Configuration")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    assert!(
        !section.is_empty(),
        "README.md has no \"## Configuration\" section"
    );
    let rows: Vec<Row> = section
        .iter()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // "", name, default, meaning, ""
            let names = backticked(cells.get(1)?);
            (!names.is_empty()).then(|| Row {
                names,
                default: cells.get(2).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect();
    assert!(
        rows.len() > 10,
        "too few configuration rows found: {rows:?}"
    );
    rows
}

fn readme_default_cell(rows: &[Row], name: &str) -> String {
    rows.iter()
        .find(|r| r.names.iter().any(|n| n == name))
        .map(|r| r.default.clone())
        .unwrap_or_default()
}

#[test]
fn the_readme_lists_every_variable_the_functions_read_and_no_other() {
    let rows = readme_rows();
    let documented: BTreeSet<String> = rows.iter().flat_map(|r| r.names.clone()).collect();
    let read: BTreeSet<String> = function_vars().iter().map(|v| v.name.to_owned()).collect();
    let missing: Vec<_> = read.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "the README's configuration table lacks {missing:?}"
    );
    let others: BTreeSet<String> = NOT_READ_BY_THE_FUNCTIONS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    let unknown: Vec<_> = documented
        .iter()
        .filter(|n| !read.contains(*n) && !others.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "the README documents {unknown:?}, which nothing reads"
    );
}

#[test]
fn the_readme_gives_each_variable_its_true_default() {
    let defaults: BTreeMap<&str, Option<&str>> = function_vars()
        .iter()
        .map(|v| (v.name, v.default))
        .collect();
    for row in readme_rows() {
        let Some(row_defaults) = row
            .names
            .iter()
            .map(|n| defaults.get(n.as_str()).copied().flatten())
            .collect::<Option<Vec<&str>>>()
        else {
            continue; // optional variables: "unset", "created by make dev"...
        };
        if row.names.iter().any(|n| SECRETS.contains(&n.as_str())) {
            assert!(
                backticked(&row.default).is_empty(),
                "{:?}: the README must not print a secret's default",
                row.names
            );
            continue;
        }
        // "`10000` / `2000`", "`false` (`true` in AWS)": the values outside
        // parentheses, one per name, in order.
        let documented = backticked(&outside_parentheses(&row.default));
        assert_eq!(
            documented, row_defaults,
            "{:?}: the README's default is not the functions' own",
            row.names
        );
    }
}

/// The environment of a fresh shell: the stack scripts' own defaults only.
fn clean(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        // Nothing may be written: a stack directory of the test's own.
        .env(
            "STACK_DIR",
            std::env::temp_dir().join("devctl-config-vars-test"),
        )
}

fn pairs(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What `scripts/env.sh` exports, from a clean environment.
fn env_sh_exports() -> BTreeMap<String, String> {
    let out = clean(&mut Command::new("bash"))
        .arg("-c")
        .arg("source scripts/env.sh && env")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pairs(&out.stdout)
}

/// `scripts/stack.sh functions-env` (the functions' env file) with `extra` set.
fn functions_env(extra: &[(String, String)]) -> BTreeMap<String, String> {
    let out = clean(&mut Command::new("bash"))
        .arg("scripts/stack.sh")
        .arg("functions-env")
        .env("DEVCTL", env!("CARGO_BIN_EXE_devctl"))
        .envs(extra.iter().map(|(k, v)| (k, v)))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pairs(&out.stdout)
}

#[test]
fn devctl_lists_every_variable_the_functions_read() {
    let out = Command::new(env!("CARGO_BIN_EXE_devctl"))
        .arg("config-vars")
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = function_vars().iter().map(|v| v.name.to_owned()).collect();
    assert_eq!(listed, expected);
}

#[test]
fn the_stack_passes_every_variable_that_is_set_on_to_the_functions() {
    let set: Vec<(String, String)> = function_vars()
        .iter()
        .map(|v| {
            (
                v.name.to_owned(),
                format!("set-for-the-test-{}", v.name.to_lowercase()),
            )
        })
        .collect();
    let env = functions_env(&set);
    for (name, value) in &set {
        assert_eq!(
            env.get(name),
            Some(value),
            "{name} does not reach the functions"
        );
    }
}

#[test]
fn the_stack_keeps_the_functions_defaults_but_where_the_readme_says() {
    let rows = readme_rows();
    let exported = env_sh_exports();
    let env = functions_env(&[]);
    for var in function_vars() {
        // Unset for the stack: the stack passes nothing of its own...
        let Some(value) = env.get(var.name) else {
            continue;
        };
        // ...except what env.sh needs, which passes through like any setting.
        assert_eq!(
            exported.get(var.name),
            Some(value),
            "the stack gives {} a value env.sh does not export",
            var.name
        );
        let local = format!("`{value}` locally");
        assert!(
            var.default == Some(value.as_str())
                || readme_default_cell(&rows, var.name).contains(&local),
            "scripts/env.sh sets {}={value:?}, which is neither the functions' default {:?} \
             nor a local value the README names (\"{local}\")",
            var.name,
            var.default
        );
    }
}

/// The consumer counts the trigger's batching window in how late a deferred
/// message may come back; locally the trigger is the poller, so the stack
/// tells the consumer the poller's window (rounded up to whole seconds, as
/// `BATCHING_WINDOW_SECONDS` is), unless it is set outright.
#[test]
fn the_stack_tells_the_consumer_the_pollers_batching_window() {
    let window = |extra: &[(&str, &str)]| {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        functions_env(&extra)
            .get("BATCHING_WINDOW_SECONDS")
            .cloned()
    };
    assert_eq!(window(&[]).as_deref(), Some("0"));
    assert_eq!(window(&[("BATCH_WINDOW_MS", "1000")]).as_deref(), Some("1"));
    assert_eq!(window(&[("BATCH_WINDOW_MS", "1500")]).as_deref(), Some("2"));
    assert_eq!(
        window(&[("BATCH_WINDOW_MS", "0"), ("BATCHING_WINDOW_SECONDS", "5")]).as_deref(),
        Some("5")
    );
    // Not a number: nothing derived; the poller refuses it with its own error.
    assert_eq!(window(&[("BATCH_WINDOW_MS", "soon")]), None);
}
