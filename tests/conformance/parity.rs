//! docs/PARITY.md lists every option's default once, for Rust, Python and Node. Each
//! row's default must be what `a3s_lane::defaults()` says (the SDKs test their option
//! objects against the same table, which they expose as `DEFAULTS`), and every default
//! of the table must have its row.

use serde_json::Value;

/// `(key, default)` of each row of the table under "## Defaults".
fn rows() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PARITY.md"))
        .expect("docs/PARITY.md exists");
    let table = doc
        .split("## Defaults")
        .nth(1)
        .expect("docs/PARITY.md has a '## Defaults' section");
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // header and separator
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let key = cells[0].trim_matches('`').to_owned();
            let default = cells.last().unwrap().trim_matches('`').to_owned();
            (key, default)
        })
        .collect()
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        // The default lanes, as the table writes them: `id priority/max`, min 1 each.
        Value::Array(lanes) => {
            let text: Vec<String> = lanes
                .iter()
                .map(|lane| {
                    assert_eq!(lane["min_concurrency"], 1, "{lane}");
                    format!(
                        "{} {}/{}",
                        lane["id"].as_str().unwrap(),
                        lane["priority"],
                        lane["max_concurrency"]
                    )
                })
                .collect();
            out.push((prefix.to_owned(), Value::String(text.join(", "))));
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

#[test]
fn the_parity_table_lists_every_default_as_the_core_defines_it() {
    let mut defaults = Vec::new();
    flatten("", &a3s_lane::defaults(), &mut defaults);
    let rows = rows();
    for (key, expected) in &defaults {
        let Some((_, written)) = rows.iter().find(|(row, _)| row == key) else {
            panic!("docs/PARITY.md has no row for the default `{key}` ({expected})");
        };
        let written: Value = match written.as_str() {
            "unset" => Value::Null,
            text => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())),
        };
        assert_eq!(&written, expected, "docs/PARITY.md's default for `{key}`");
    }
    for (key, _) in &rows {
        assert!(
            defaults.iter().any(|(default, _)| default == key),
            "docs/PARITY.md lists `{key}`, which a3s_lane::defaults() does not have"
        );
    }
}
