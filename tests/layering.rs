//! The layering that `src/lib.rs` and `docs/ARCHITECTURE.md` state, checked
//! against the code: every module of the crate may use only modules below
//! it (never one above, never one beside it), and palisade-proto, at the
//! bottom, depends on httparse, sha1 and base64 and nothing else.
//!
//! A module is a top-level file or directory of `src/` (`src/net/*.rs` all
//! belong to `net`). A use is any `crate::<module>` path in its code
//! (comments aside).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may use modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["config"],
    &["log"],
    &["tls", "security", "socketio", "metrics", "cluster"],
    &["http"],
    &["router"],
    &["handler"],
    &["net"],
    &["app"],
    &["server"],
    &["fuzzing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for the crate
/// roots and the binary's own files, which sit above every layer).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    match name.as_str() {
        "lib" | "main" | "cli" | "users_cmd" => None,
        _ => Some(name),
    }
}

/// The modules named by `crate::<module>` paths in `text`, comments aside.
fn uses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        if layer_of(&module).is_none() {
            unknown.push(module.clone());
        }
        let text = std::fs::read_to_string(file).unwrap();
        for used in uses(&text) {
            // `crate::proto` is palisade-proto, below every layer.
            if used == module || used == "proto" {
                continue;
            }
            let where_ = file.strip_prefix(&src).unwrap().display().to_string();
            edges
                .entry((module.clone(), used))
                .or_default()
                .push(where_);
        }
    }
    assert!(unknown.is_empty(), "modules in no layer: {unknown:?}");
    let mut wrong = Vec::new();
    for ((from, to), files) in &edges {
        let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) else {
            wrong.push(format!(
                "{from} uses {to}, which is in no layer ({files:?})"
            ));
            continue;
        };
        if b >= a {
            wrong.push(format!(
                "{from} (layer {a}) uses {to} (layer {b}) in {files:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    // The check sees the uses it is meant to see.
    assert!(edges.contains_key(&("net".to_owned(), "router".to_owned())));
    assert!(edges.contains_key(&("router".to_owned(), "security".to_owned())));
}

#[test]
fn config_imports_no_other_module() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config.rs"))
        .unwrap();
    assert_eq!(uses(&text), Vec::<String>::new());
}

#[test]
fn the_core_depends_on_three_crates_only() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("palisade-proto/Cargo.toml"),
    )
    .unwrap();
    let deps: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .split("\n[")
        .next()
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split([' ', '=']).next().unwrap())
        .collect();
    assert_eq!(deps, ["base64", "httparse", "sha1"]);
    assert!(manifest.contains("default-features = false"));
}

#[test]
fn the_checker_catches_a_use_from_below() {
    // A use of `net` from `config` would be found and refused.
    assert_eq!(
        uses("use crate::net::Server; // crate::app in a comment"),
        ["net"]
    );
    assert!(layer_of("net") > layer_of("config"));
}
