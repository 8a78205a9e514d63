//! The code's shape: no function in `crates/*/src` runs past [`MAX_FUNCTION_LINES`], so each
//! reads on one screen and its steps have names. The longest are printed on every run
//! (`cargo test -p anyreply-e2e code_shape -- --nocapture`).

use std::fs;
use std::path::{Path, PathBuf};

/// The most lines a function may span, from its `fn` line to its closing brace.
const MAX_FUNCTION_LINES: usize = 80;

#[derive(Debug)]
struct Function {
    file: PathBuf,
    line: usize,
    name: String,
    lines: usize,
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The name of the function a line declares (`pub(crate) async fn name…`), if it does.
fn declared_name(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    loop {
        let word = words.next()?;
        match word {
            "pub" | "async" | "const" | "unsafe" | "default" => {}
            _ if word.starts_with("pub(") => {}
            _ if word.starts_with("extern") => {}
            "fn" => {
                let rest = words.next()?;
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                return Some(&rest[..end]).filter(|name| !name.is_empty());
            }
            _ => return None,
        }
    }
}

/// The functions of rustfmt-formatted source: each body ends with the first line that is
/// its `fn` line's indentation and a `}`; declarations without a body are skipped.
fn functions(file: &Path) -> Vec<Function> {
    let text = fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(name) = declared_name(line) else {
            continue;
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        let Some(opening) = lines[start..].iter().position(|l| {
            let l = l.trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[start + opening].trim_end().ends_with(';') {
            continue;
        }
        let closing = format!("{indent}}}");
        if let Some(end) = lines[start + opening..]
            .iter()
            .position(|l| l.trim_end() == closing)
        {
            found.push(Function {
                file: file.to_path_buf(),
                line: start + 1,
                name: name.to_owned(),
                lines: opening + end + 1,
            });
        }
    }
    found
}

#[test]
fn no_function_runs_past_eighty_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut all: Vec<Function> = files.iter().flat_map(|f| functions(f)).collect();
    assert!(all.len() > 500, "only {} functions found", all.len());
    all.sort_by_key(|f| std::cmp::Reverse(f.lines));
    let shown = |f: &Function| {
        format!(
            "{:>4} lines  {}:{} {}",
            f.lines,
            f.file.strip_prefix(root).unwrap().display(),
            f.line,
            f.name
        )
    };
    println!("the longest functions:");
    for function in all.iter().take(10) {
        println!("{}", shown(function));
    }
    let long: Vec<String> = all
        .iter()
        .filter(|f| f.lines > MAX_FUNCTION_LINES)
        .map(shown)
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (make their steps functions with names):\n{}",
        long.join("\n")
    );
}

#[test]
fn a_functions_lines_are_counted_from_fn_to_its_brace() {
    let dir = std::env::temp_dir().join(format!("anyreply-code-shape-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sample.rs");
    fs::write(
        &file,
        "pub(crate) async fn one(\n    a: u8,\n) -> u8 {\n    a\n}\n\ntrait T {\n    fn declared(&self);\n    fn given(&self) {\n        let _ = 1;\n    }\n}\n",
    )
    .unwrap();
    let found: Vec<(String, usize, usize)> = functions(&file)
        .into_iter()
        .map(|f| (f.name, f.line, f.lines))
        .collect();
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        found,
        [("one".to_owned(), 1, 5), ("given".to_owned(), 9, 3)]
    );
}
