//! The streamer's module graph has no cycles: a lower module never calls back into the one
//! that drives it (the upstream knows nothing of the hub; `app`, `http1` and `sse` share state
//! and the drain signal through modules of their own).
//!
//! The graph is read from the sources: an edge for every `crate::…` and `super::…` path (in
//! `use` lines or inline) and every path through a declared child module (`feed::run` in
//! `hub/mod.rs`), each resolved to the longest module it names. Test modules are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`hub::stream`; the crate root is ``) → the modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The production text of `source`: comments and the `#[cfg(test)] mod …` at its end left out.
fn production(source: &str) -> String {
    let mut text = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|next| {
                let next = next.trim_start();
                let next = next.strip_prefix("pub(crate) ").unwrap_or(next);
                next.starts_with("mod ")
            })
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        text.push_str(line.split(" // ").next().unwrap_or(line));
        text.push('\n');
    }
    text
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Parses the path (tree) starting at `*i`: `a::b::{c, d::e}` gives `a::b::c` and `a::b::d::e`.
fn parse_tree(s: &[u8], i: &mut usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
        if *i < s.len() && s[*i] == b'{' {
            *i += 1;
            loop {
                while *i < s.len() && (s[*i].is_ascii_whitespace() || s[*i] == b',') {
                    *i += 1;
                }
                if *i >= s.len() || s[*i] == b'}' {
                    *i += 1;
                    return;
                }
                let before = *i;
                parse_tree(s, i, prefix.clone(), out);
                // Not a path (`*`, `as` renames): skip to the next item.
                while *i < s.len() && !matches!(s[*i], b',' | b'}') {
                    *i += 1;
                }
                if *i == before {
                    *i += 1;
                }
            }
        }
        let start = *i;
        while *i < s.len() && is_ident(s[*i]) {
            *i += 1;
        }
        if *i == start {
            out.push(prefix);
            return;
        }
        prefix.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
        if s[*i..].starts_with(b"::") {
            *i += 2;
        } else {
            out.push(prefix);
            return;
        }
    }
}

fn parent(module: &[String]) -> Vec<String> {
    module[..module.len().saturating_sub(1)].to_vec()
}

/// The modules `text` (of `module`, whose child modules are `children`) uses.
fn uses(
    text: &str,
    module: &[String],
    children: &BTreeSet<String>,
    modules: &BTreeSet<String>,
) -> BTreeSet<String> {
    let s = text.as_bytes();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < s.len() {
        let starts_word = i == 0 || !(is_ident(s[i - 1]) || s[i - 1] == b':');
        let word_end = (i..s.len()).find(|&j| !is_ident(s[j])).unwrap_or(s.len());
        let word = std::str::from_utf8(&s[i..word_end]).unwrap_or_default();
        let is_path = s[word_end..].starts_with(b"::");
        if !(starts_word
            && is_path
            && (word == "crate" || word == "super" || children.contains(word)))
        {
            i += 1;
            continue;
        }
        let mut paths = Vec::new();
        let mut j = i;
        parse_tree(s, &mut j, Vec::new(), &mut paths);
        for path in paths {
            let mut base: Vec<String> = module.to_vec();
            let mut rest = path.as_slice();
            match rest.first().map(String::as_str) {
                Some("crate") => {
                    base.clear();
                    rest = &rest[1..];
                }
                Some("super") => {
                    while rest.first().is_some_and(|p| p == "super") {
                        base = parent(&base);
                        rest = &rest[1..];
                    }
                }
                _ => {}
            }
            let full: Vec<String> = base.iter().chain(rest).cloned().collect();
            let target = (0..=full.len())
                .rev()
                .map(|n| full[..n].join("::"))
                .find(|m| modules.contains(m))
                .unwrap_or_default();
            if target != module.join("::") {
                found.insert(target);
            }
        }
        i = j.max(i + 1);
    }
    found
}

/// The module graph of the crate whose sources are in `src`.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the sources are readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let module_of = |path: &Path| -> Option<Vec<String>> {
        let relative = path.strip_prefix(src).ok()?.with_extension("");
        let mut parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        match parts.last().map(String::as_str) {
            // A binary, not a module of the library; and this test itself.
            Some("main" | "layering") if parts.len() == 1 => return None,
            Some("lib" | "mod") => {
                parts.pop();
            }
            _ => {}
        }
        Some(parts)
    };
    let sources: Vec<(Vec<String>, String)> = files
        .iter()
        .filter_map(|path| {
            let module = module_of(path)?;
            let text = std::fs::read_to_string(path).expect("a readable source");
            Some((module, production(&text)))
        })
        .collect();
    let modules: BTreeSet<String> = sources.iter().map(|(m, _)| m.join("::")).collect();
    sources
        .iter()
        .map(|(module, text)| {
            let name = module.join("::");
            let children: BTreeSet<String> = modules
                .iter()
                .filter_map(|m| {
                    let rest = if name.is_empty() {
                        Some(m.as_str())
                    } else {
                        m.strip_prefix(&format!("{name}::"))
                    }?;
                    (!rest.is_empty() && !rest.contains("::")).then(|| rest.to_owned())
                })
                .collect();
            (name, uses(text, module, &children, &modules))
        })
        .collect()
}

/// A cycle of `graph`, as the modules along it (the first repeated at the end), if any.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn name(module: &str) -> &str {
    if module.is_empty() { "crate" } else { module }
}

#[test]
fn the_streamer_module_graph_has_no_cycles() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));

    if let Some(cycle) = cycle(&graph) {
        let named: Vec<&str> = cycle.iter().map(|m| name(m)).collect();
        panic!(
            "the streamer's modules form a cycle: {}",
            named.join(" -> ")
        );
    }
}

#[test]
fn the_module_graph_sees_every_kind_of_path() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let edge = |from: &str, to: &str| graph.get(from).is_some_and(|uses| uses.contains(to));

    assert!(edge("sse", "hub"), "a `use crate::` line");
    assert!(
        edge("hub::feed", "upstream"),
        "a `use crate::…::{{…}}` group"
    );
    assert!(
        edge("hub::client", "hub::backfill"),
        "an inline `super::` path"
    );
    assert!(edge("hub", "hub::feed"), "a path through a child module");
    assert!(
        !edge("upstream", "hub"),
        "the upstream knows nothing of the hub"
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: Graph = [
        ("app", vec!["hub"]),
        ("hub", vec!["upstream"]),
        ("upstream", vec!["hub", "metrics"]),
        ("metrics", vec![]),
    ]
    .into_iter()
    .map(|(m, uses)| (m.to_owned(), uses.into_iter().map(str::to_owned).collect()))
    .collect();

    assert_eq!(
        cycle(&graph),
        Some(vec![
            "hub".to_owned(),
            "upstream".to_owned(),
            "hub".to_owned()
        ])
    );
}
