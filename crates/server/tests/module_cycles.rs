//! No import circles among the server's modules. Every `crate::` path in `src/**/*.rs` (in a
//! `use` or written out in the code; comments aside) is an edge from the file's top-level
//! module (`reply/queue.rs` is `reply`) to the top-level module it names; a cycle among them
//! fails the test, listed with the files that make each of its edges. A module's own files
//! may use one another (`super::`), which the graph does not see.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// From a module, to a module, by the files that make the edge.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn the_server_s_modules_import_one_another_in_no_circle() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.contains_key("reply"), "the sources were not read");
    let cycles = cycles(&graph);
    let report: Vec<String> = cycles.iter().map(|cycle| describe(&graph, cycle)).collect();
    assert!(
        cycles.is_empty(),
        "modules that import each other in a circle:\n{}",
        report.join("\n")
    );
}

/// The engine (`reply/`, its state, the idempotency store, `Caller`) knows nothing of HTTP:
/// it answers with its own errors and outcomes, made HTTP in the controllers; and the
/// settings import nothing of the engine.
#[test]
fn the_engine_knows_no_http_and_the_settings_no_engine() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut engine = rust_files(&src.join("reply"));
    engine.extend(
        [
            "idempotency.rs",
            "engine_state.rs",
            "caller.rs",
            "pricing.rs",
        ]
        .map(|f| src.join(f)),
    );
    for file in &engine {
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        for http in ["axum", "http::", "StatusCode", "HeaderMap", "ApiError"] {
            assert!(!code.contains(http), "{} names {http}", file.display());
        }
        let named = named(&code);
        for above in ["error", "extract", "controllers", "router", "console"] {
            assert!(!named.contains(above), "{} imports {above}", file.display());
        }
    }
    let config = named(&std::fs::read_to_string(src.join("config.rs")).unwrap());
    for part in ["reply", "engine_state", "idempotency"] {
        assert!(!config.contains(part), "config.rs imports {part}");
    }
}

#[test]
fn a_circle_is_found() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph
            .entry(from.to_owned())
            .or_default()
            .entry(to.to_owned())
            .or_default()
            .insert(format!("{from}.rs"));
    }
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
    assert_eq!(
        named(
            "use crate::{app::App, db::{self, Commit}};\nlet x = crate::pg_cluster::gone(); // crate::config\n",
        ),
        BTreeSet::from(["app", "db", "pg_cluster"].map(str::to_owned))
    );
}

/// The graph of the top-level modules under `src`; the crate's root (`lib.rs`, `main.rs`)
/// declares them all and is left out.
fn graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let path = relative.to_string_lossy().replace('\\', "/");
        if path == "lib.rs" || path == "main.rs" {
            continue;
        }
        let first = path.split('/').next().unwrap();
        let module = first.strip_suffix(".rs").unwrap_or(first).to_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        for used in named(&text) {
            if used != module {
                graph
                    .entry(module.clone())
                    .or_default()
                    .entry(used)
                    .or_default()
                    .insert(path.clone());
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// `text` without its line comments (and, harmlessly, whatever follows `//` in a string).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules that `text` names by `crate::`, outside line comments.
fn named(text: &str) -> BTreeSet<String> {
    let code = without_comments(text);
    let mut names = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b::{self, Y}}`: the first name of each item at the top level.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[i..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphabetic() || c == '_') => {
                        names.insert(identifier(&group[i..]));
                        item_start = false;
                    }
                    c if c.is_whitespace() => {}
                    _ => item_start = false,
                }
            }
        } else {
            names.insert(identifier(rest));
        }
    }
    names.retain(|name| !name.is_empty() && name != "self" && name != "super");
    names
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every set of modules that reach one another (Tarjan's strongly connected components of
/// more than one module), each sorted, in order.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Search<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Search<'g> {
        fn visit(&mut self, module: &'g str) {
            let index = self.index.len();
            self.index.insert(module, index);
            self.low.insert(module, index);
            self.stack.push(module);
            self.on_stack.insert(module);
            for next in self.graph.get(module).into_iter().flat_map(|to| to.keys()) {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[module].min(self.low[next]);
                    self.low.insert(module, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[module].min(self.index[next]);
                    self.low.insert(module, low);
                }
            }
            if self.low[module] == self.index[module] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_owned());
                    if member == module {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for module in graph.keys() {
        if !search.index.contains_key(module.as_str()) {
            search.visit(module);
        }
    }
    search.found.sort();
    search.found
}

/// A circle's modules and, for each edge among them, the files that make it.
fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut lines = vec![format!("  {}", cycle.join(", "))];
    for from in cycle {
        for (to, files) in &graph[from] {
            if cycle.contains(to) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                lines.push(format!("    {from} -> {to}: {}", files.join(", ")));
            }
        }
    }
    lines.join("\n")
}
