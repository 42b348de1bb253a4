//! `cargo xtask cycles`: import cycles between the source files of each crate.
//!
//! A file's module path comes from where it lies (`a/b.rs` and `a/b/mod.rs` are `a::b`). A file
//! depends on another when it names a path into it: `crate::a::b`, `super::x`, `self::c`, or a
//! bare `c::` for a submodule `c` it declares. The deepest module a path reaches is the one it
//! depends on, so `use crate::a::b::Thing` depends on `a::b`, not on `a`. Inline test modules
//! (`#[cfg(test)] mod tests { .. }`) are left out: a file's tests may use anything. A cycle is a
//! strongly connected set of two or more files; there must be none.
//!
//! Textual, not a compiler pass: comments and string literals are stripped first; a `use` of a
//! name a parent re-exports from a child counts as a use of the parent (write the child's path
//! instead, which is clearer anyway).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// A module path inside one crate (`[]` is the crate root).
pub(crate) type ModPath = Vec<String>;

/// The module path of `file`, relative to the crate's `src` directory.
pub(crate) fn module_of(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main") {
        parts.clear();
    } else if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// `text` without comments, string and char literals, and inline `#[cfg(test)]` modules.
pub(crate) fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"') => {
                // Raw string: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') || (i > 0 && is_ident(b[i - 1])) {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                // A char literal ('x', '\n', '\u{..}'); lifetimes have no closing quote.
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    drop_test_modules(&out)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Removes `#[cfg(test)] mod name { ... }` blocks (brace-matched).
fn drop_test_modules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let inline_mod = trimmed
            .strip_prefix("mod ")
            .and_then(|m| m.find(['{', ';']).map(|k| (m, k)))
            .filter(|(m, k)| m.as_bytes()[*k] == b'{');
        let Some((m, k)) = inline_mod else {
            rest = after;
            continue;
        };
        let body = &m[k..];
        let mut depth = 0usize;
        let mut end = body.len();
        for (n, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = n + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// The paths `text` (stripped) names: each as its leading keyword (`crate`, `super`, `self`
/// or a bare first segment) and the segments after it; `use a::{b, c::d}` gives `a::b` and
/// `a::c::d`.
pub(crate) fn paths(text: &str) -> Vec<Vec<String>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_ident(b[i]) && (i == 0 || !is_ident(b[i - 1]) && b[i - 1] != b':') {
            let (segs, end) = path_at(text, i);
            out.extend(segs);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The path(s) starting at `start`, and where they end.
fn path_at(text: &str, start: usize) -> (Vec<Vec<String>>, usize) {
    let b = text.as_bytes();
    let mut segs = Vec::new();
    let mut i = start;
    loop {
        let s = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if s == i {
            break;
        }
        segs.push(text[s..i].to_owned());
        if text[i..].starts_with("::{") {
            // A group: every item is a path continuing this prefix.
            let mut out = Vec::new();
            let mut j = i + 3;
            loop {
                while j < b.len() && (b[j] == b' ' || b[j] == b'\n' || b[j] == b',') {
                    j += 1;
                }
                if j >= b.len() || b[j] == b'}' {
                    break;
                }
                let (inner, end) = path_at(text, j);
                for p in inner {
                    let mut full = segs.clone();
                    full.extend(p);
                    out.push(full);
                }
                if end <= j {
                    j += 1;
                } else {
                    j = end;
                }
                // Skip `as name` and anything else up to the next item.
                while j < b.len() && b[j] != b',' && b[j] != b'}' {
                    if b[j] == b'{' {
                        break;
                    }
                    j += 1;
                }
            }
            if out.is_empty() {
                out.push(segs);
            }
            return (out, j + 1);
        }
        if text[i..].starts_with("::") {
            i += 2;
            continue;
        }
        break;
    }
    if segs.len() < 2 {
        return (Vec::new(), i);
    }
    (vec![segs], i)
}

/// The submodules `text` declares (`mod a;`, `pub mod b;`, `pub(crate) mod c;`).
fn declared(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub(super) "))
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        if let Some(name) = l.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            out.insert(name.trim().to_owned());
        }
    }
    out
}

/// The modules `file` (at `module`, text stripped) depends on, among `modules`.
pub(crate) fn dependencies(
    module: &ModPath,
    text: &str,
    modules: &BTreeSet<ModPath>,
) -> BTreeSet<ModPath> {
    let children = declared(text);
    let mut out = BTreeSet::new();
    for path in paths(text) {
        let (mut base, rest): (ModPath, &[String]) = match path[0].as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (module.clone(), &path[1..]),
            "super" => {
                let mut base = module.clone();
                base.pop();
                let mut rest = &path[1..];
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            first if children.contains(first) => (module.clone(), &path[..]),
            _ => continue,
        };
        for seg in rest {
            let mut next = base.clone();
            next.push(seg.clone());
            if !modules.contains(&next) {
                break;
            }
            base = next;
        }
        if &base != module && modules.contains(&base) {
            out.insert(base);
        }
    }
    out
}

/// The cycles (strongly connected sets of two or more modules) of `graph`, each sorted.
pub(crate) fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    // Tarjan's algorithm, iterative over an index of the nodes.
    let nodes: Vec<&ModPath> = graph.keys().collect();
    let index_of: BTreeMap<&ModPath, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edges: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            graph[*n]
                .iter()
                .filter_map(|m| index_of.get(m).copied())
                .collect()
        })
        .collect();
    let n = nodes.len();
    let (mut index, mut low) = (vec![usize::MAX; n], vec![0; n]);
    let (mut on_stack, mut stack, mut next, mut out) = (vec![false; n], Vec::new(), 0, Vec::new());
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut e)) = work.last_mut() {
            if *e == 0 {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = edges[v].get(*e) {
                *e += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(nodes[w].clone());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    out.push(comp);
                }
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The import graph of the crate whose sources are under `src`. Files outside the crate's
/// module tree (binaries under `src/bin`) are separate crates and left out.
pub(crate) fn crate_graph(src: &Path) -> anyhow::Result<BTreeMap<ModPath, BTreeSet<ModPath>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    let mut texts = BTreeMap::new();
    for f in files {
        if f.strip_prefix(src).is_ok_and(|r| r.starts_with("bin")) {
            continue;
        }
        if let Some(m) = module_of(src, &f) {
            let text = fs::read_to_string(&f).with_context(|| format!("read {}", f.display()))?;
            texts.insert(m, strip(&text));
        }
    }
    let mut modules: BTreeSet<ModPath> = texts.keys().cloned().collect();
    // Modules declared here whose file lies elsewhere (`#[path = ..]`) are nodes without
    // edges: the crate uses them, they cannot close a cycle through its files.
    for (m, t) in &texts {
        for name in declared(t) {
            let mut child = m.clone();
            child.push(name);
            modules.insert(child);
        }
    }
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    graph.extend(
        texts
            .iter()
            .map(|(m, t)| (m.clone(), dependencies(m, t, &modules))),
    );
    Ok(graph)
}

/// The `src` of every member of the workspace at `root` (its Cargo.toml's `members`), and each
/// binary under `src/bin` with a directory of its own.
pub(crate) fn crate_sources(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let manifest = root.join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("read {}", manifest.display()))?;
    let members: Vec<String> = toml::from_str::<toml::Table>(&text)
        .with_context(|| format!("parse {}", manifest.display()))?
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .context("the workspace manifest has no [workspace] members")?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let mut out = Vec::new();
    for krate in members {
        let src = root.join(krate).join("src");
        if let Ok(bins) = fs::read_dir(src.join("bin")) {
            out.extend(bins.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        out.push(src);
    }
    Ok(out)
}

fn show(m: &ModPath) -> String {
    if m.is_empty() {
        "(crate root)".to_owned()
    } else {
        m.join("::")
    }
}

/// `cargo xtask cycles`: prints each crate's cycles; fails when there is one.
pub fn run() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let mut found = 0;
    for src in crate_sources(root)? {
        let graph = crate_graph(&src)?;
        let cycles = cycles(&graph);
        let rel = src.strip_prefix(root).unwrap_or(&src).display().to_string();
        if cycles.is_empty() {
            println!("{rel}: {} files, no import cycle", graph.len());
        }
        for c in &cycles {
            found += 1;
            let names: Vec<String> = c.iter().map(show).collect();
            println!("{rel}: import cycle: {}", names.join(" <-> "));
        }
    }
    if found > 0 {
        bail!("{found} import cycle(s)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> ModPath {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split("::").map(str::to_owned).collect()
        }
    }

    #[test]
    fn module_paths_from_file_names() {
        let src = Path::new("/x/src");
        assert_eq!(module_of(src, Path::new("/x/src/lib.rs")), Some(m("")));
        assert_eq!(module_of(src, Path::new("/x/src/a/mod.rs")), Some(m("a")));
        assert_eq!(module_of(src, Path::new("/x/src/a/b.rs")), Some(m("a::b")));
    }

    #[test]
    fn comments_strings_and_test_modules_do_not_count() {
        let text = "use crate::a; // crate::b\n/* crate::c */ let s = \"crate::d\";\n\
                    #[cfg(test)]\nmod tests {\n    use crate::e;\n    fn f() { {} }\n}\nuse crate::g;\n";
        let s = strip(text);
        assert!(s.contains("crate::a") && s.contains("crate::g"), "{s}");
        for gone in ["crate::b", "crate::c", "crate::d", "crate::e"] {
            assert!(!s.contains(gone), "{gone} in {s}");
        }
        // A test module declared as a file stays a declaration (the file is its own module).
        assert!(strip("#[cfg(test)]\nmod tests;\nuse crate::h;").contains("crate::h"));
    }

    #[test]
    fn grouped_imports_reach_the_deepest_module() {
        let modules: BTreeSet<ModPath> = ["", "a", "a::b", "c", "c::d", "e"]
            .into_iter()
            .map(m)
            .collect();
        let text = strip("use crate::{a::b::Thing, c::{d::f, Other}};\nuse super::e as x;\n");
        let deps = dependencies(&m("c::d"), &text, &modules);
        assert_eq!(deps, [m("a::b"), m("c")].into_iter().collect(), "{deps:?}");
        let child = dependencies(&m("c"), &strip("mod d;\nfn f() { d::g(); }\n"), &modules);
        assert_eq!(child, [m("c::d")].into_iter().collect());
    }

    #[test]
    fn a_parent_and_child_that_use_each_other_are_a_cycle() {
        let graph: BTreeMap<ModPath, BTreeSet<ModPath>> = [
            (m(""), [m("a")].into_iter().collect()),
            (m("a"), [m("a::b")].into_iter().collect()),
            (m("a::b"), [m("a")].into_iter().collect()),
            (m("c"), BTreeSet::new()),
        ]
        .into_iter()
        .collect();
        assert_eq!(cycles(&graph), vec![vec![m("a"), m("a::b")]]);
        let acyclic: BTreeMap<ModPath, BTreeSet<ModPath>> = [
            (m("a"), [m("b")].into_iter().collect()),
            (m("b"), BTreeSet::new()),
        ]
        .into_iter()
        .collect();
        assert!(cycles(&acyclic).is_empty());
    }

    #[test]
    fn the_workspace_has_no_import_cycle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace");
        let mut all = Vec::new();
        for src in crate_sources(root).expect("workspace members") {
            let graph = crate_graph(&src).expect("read the sources");
            assert!(!graph.is_empty(), "no sources read under {}", src.display());
            for c in cycles(&graph) {
                all.push(format!(
                    "{}: {}",
                    src.display(),
                    c.iter().map(show).collect::<Vec<_>>().join(" <-> ")
                ));
            }
        }
        assert!(all.is_empty(), "import cycles:\n{}", all.join("\n"));
    }
}
