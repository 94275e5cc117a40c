//! The code's shape: no crate's modules depend on each other in a cycle (a cycle means two
//! modules are one responsibility split badly, or one that should be split), and the
//! libraries neither print nor exit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's source folders: each library's and the CLI's.
fn source_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.push(root.join("cli/src"));
    dirs.sort();
    dirs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`conn/flow.rs` is in `conn`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The source without `//` comments and `#[cfg(test)]` modules (tests may reach anywhere).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Module → the modules of the same crate it uses (`crate::NAME`).
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = module_of(src, f);
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        let uses = g.entry(from.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let is_module = files.iter().any(|f| module_of(src, f) == name);
            if is_module && name != from {
                uses.insert(name);
            }
        }
    }
    g
}

/// A cycle through `node`, if there is one (depth-first, with the path so far).
fn cycle(g: &BTreeMap<String, BTreeSet<String>>, node: &str, path: &mut Vec<String>) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|n| n == node) {
        let mut c = path[i..].to_vec();
        c.push(node.to_string());
        return Some(c);
    }
    path.push(node.to_string());
    for next in g.get(node).into_iter().flatten() {
        if let Some(c) = cycle(g, next, path) {
            return Some(c);
        }
    }
    path.pop();
    None
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let mut found = Vec::new();
    for src in source_dirs() {
        let g = graph(&src);
        for node in g.keys() {
            if let Some(c) = cycle(&g, node, &mut Vec::new()) {
                let line = format!("{}: {}", src.display(), c.join(" -> "));
                if !found.contains(&line) {
                    found.push(line);
                }
            }
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

#[test]
fn libraries_neither_print_nor_exit() {
    let mut found = Vec::new();
    for src in source_dirs().into_iter().filter(|d| !d.ends_with("cli/src")) {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let code = code_of(&std::fs::read_to_string(&f).unwrap());
            for bad in ["println!", "eprintln!", "print!(", "eprint!(", "process::exit"] {
                if code.contains(bad) {
                    found.push(format!("{}: {bad}", f.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
