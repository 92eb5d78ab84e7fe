//! The source tree's shape rules (issue 9, STYLE.md), checked by reading `src/` as text.
//!
//! - no file under `src/` is over [`MAX_LINES`] lines;
//! - every `.rs` file opens with a `//!` line saying what the module is for;
//! - nothing below the command layer names `crate::cli` or `crate::config`;
//! - no two modules import each other (top-level modules, and files within one folder);
//! - no SQL is written outside `src/store/`.
//!
//! The files are read with a small Rust lexer (comments and string literals told apart from
//! code), and a module's references are the paths it writes from `crate::`, `super::`,
//! `self::` or `kapsync::`, resolved against where the file and its inline modules sit.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The most lines a file under `src/` may have.
const MAX_LINES: usize = 600;

/// Top-level modules (or files) that make up the command layer: they may import `cli` and
/// `config`. Everything else is a library layer below them.
const COMMAND_LAYER: &[&str] = &["commands", "cli", "config", "main", "lib"];

/// Pairs of modules (full paths) allowed to import each other, each with the reason. Keep it
/// short: a cycle is better broken by moving what both need into a leaf module both import.
const ALLOWED_CYCLES: &[(&str, &str, &str)] = &[];

/// One `.rs` file under `src/`, read and lexed.
struct Source {
    /// The path from the package root, with `/` separators, e.g. `src/engine/drain.rs`.
    rel: String,
    text: String,
    /// The module path of the file, e.g. `["engine", "drain"]`; empty for `lib.rs`/`main.rs`.
    module: Vec<String>,
    lexed: Lexed,
}

impl Source {
    /// The top-level module the file belongs to (`main` and `lib` for the crate roots).
    fn top(&self) -> &str {
        match self.module.first() {
            Some(top) => top,
            None => self.rel.trim_start_matches("src/").trim_end_matches(".rs"),
        }
    }
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(root)
                .expect("under the package root")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("failed to read {rel}: {e}"));
            let module = module_path(&rel);
            let lexed = lex(&text);
            Source {
                rel,
                text,
                module,
                lexed,
            }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("failed to read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `src/engine/drain.rs` → `engine::drain`; `src/engine/mod.rs` → `engine`; `src/lib.rs` → root.
fn module_path(rel: &str) -> Vec<String> {
    let inner = rel.trim_start_matches("src/").trim_end_matches(".rs");
    let mut parts: Vec<String> = inner.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

// ---------------------------------------------------------------------------------------------
// The lexer: code tokens with their lines, and string literals with theirs.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Default)]
struct Lexed {
    tokens: Vec<(Tok, usize)>,
    /// String literals' contents (escapes left as written) and the line each starts on.
    strings: Vec<(String, usize)>,
}

fn lex(text: &str) -> Lexed {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Lexed::default();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '"' || ((c == 'b' || c == 'c') && at(i + 1) == '"') {
            let start_line = line;
            i += if c == '"' { 1 } else { 2 };
            let mut content = String::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    content.push(chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    line += usize::from(chars[i] == '\n');
                    content.push(chars[i]);
                    i += 1;
                }
            }
            i += 1;
            out.strings.push((content, start_line));
        } else if let Some(skip) = raw_string_start(&chars, i) {
            let start_line = line;
            let hashes = skip.1;
            i += skip.0;
            let mut content = String::new();
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(chars[i] == '\n');
                content.push(chars[i]);
                i += 1;
            }
            out.strings.push((content, start_line));
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.tokens.push((Tok::Ident(word), line));
        } else if c == ':' && at(i + 1) == ':' {
            out.tokens.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.tokens.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// At a raw string's start (`r"`, `r#"`, `br##"`, ...): how many chars open it, and its `#`s.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') || chars.get(j) == Some(&'c') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((j + 1 - i, hashes))
}

// ---------------------------------------------------------------------------------------------
// Paths: every `crate::`/`super::`/`self::`/`kapsync::` path a file writes, made absolute.

/// One module path a file refers to, made absolute (`["store", "Store"]`), and its line.
struct Reference {
    path: Vec<String>,
    line: usize,
}

fn references(source: &Source) -> Vec<Reference> {
    let tokens = &source.lexed.tokens;
    let mut found = Vec::new();
    // Inline modules (`mod tests { ... }`) nest the module path: (name, brace depth inside).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(word) if word == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(word)
                if matches!(word.as_str(), "crate" | "super" | "self" | "kapsync")
                    && tokens.get(i + 1).map(|t| &t.0) == Some(&Tok::PathSep)
                    && !(i > 0 && tokens[i - 1].0 == Tok::PathSep)
                    && !(i > 0 && tokens[i - 1].0 == Tok::Punct('$')) =>
            {
                let mut here = source.module.clone();
                here.extend(inline.iter().map(|(name, _)| name.clone()));
                let (paths, next) = parse_path(tokens, i);
                for (path, line) in paths {
                    if let Some(path) = resolve(&here, &path, source.rel == "src/main.rs") {
                        found.push(Reference { path, line });
                    }
                }
                i = next;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Reads the path starting at `tokens[i]`, expanding a `{a, b::c}` group into separate paths
/// (a group nested in the group counts as its prefix). Returns them and the index after the path.
fn parse_path(tokens: &[(Tok, usize)], mut i: usize) -> (Vec<(Vec<String>, usize)>, usize) {
    let line = tokens[i].1;
    let mut prefix = Vec::new();
    loop {
        match tokens.get(i).map(|t| &t.0) {
            Some(Tok::Ident(word)) => {
                prefix.push(word.clone());
                i += 1;
            }
            Some(Tok::Punct('*')) => return (vec![(prefix, line)], i + 1),
            _ => return (vec![(prefix, line)], i),
        }
        match (tokens.get(i).map(|t| &t.0), tokens.get(i + 1).map(|t| &t.0)) {
            (Some(Tok::PathSep), Some(Tok::Punct('{'))) => {
                i += 2;
                let mut paths = Vec::new();
                // The entry being read: its path so far (nested groups add nothing), its line,
                // and whether the next word is an `as` alias.
                let mut current: Option<(Vec<String>, usize)> = None;
                let mut alias = false;
                let mut nested = 0;
                while let Some((tok, tok_line)) = tokens.get(i) {
                    match tok {
                        Tok::Punct('{') => nested += 1,
                        Tok::Punct('}') if nested > 0 => nested -= 1,
                        Tok::Punct('}' | ',') => {
                            paths.extend(current.take());
                            alias = false;
                            if *tok == Tok::Punct('}') {
                                return (paths, i + 1);
                            }
                        }
                        Tok::Ident(word) if nested == 0 && word == "as" => alias = true,
                        Tok::Ident(_) if nested == 0 && alias => alias = false,
                        Tok::Ident(word) if nested == 0 => {
                            let (path, _) =
                                current.get_or_insert_with(|| (prefix.clone(), *tok_line));
                            if word != "self" {
                                path.push(word.clone());
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                return (paths, i);
            }
            (Some(Tok::PathSep), _) => i += 1,
            _ => return (vec![(prefix, line)], i),
        }
    }
}

/// Makes `path` (starting with `crate`, `super`, `self` or the crate's name) absolute from the
/// module `here`. `None` when it names no library module: it climbs above the crate root, or
/// it is `crate::` in the binary's `main.rs`.
fn resolve(here: &[String], path: &[String], in_binary: bool) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            if in_binary {
                return None;
            }
            base.clear();
            rest = &rest[1..];
        }
        Some("kapsync") => {
            base.clear();
            rest = &rest[1..];
        }
        _ => {}
    }
    loop {
        match rest.first().map(String::as_str) {
            Some("super") => {
                base.pop()?;
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            _ => break,
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

// ---------------------------------------------------------------------------------------------
// The rules.

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter_map(|s| {
            let lines = s.text.lines().count();
            (lines > MAX_LINES).then(|| format!("  {} ({lines} lines)", s.rel))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files under src/ must be at most {MAX_LINES} lines; split these by what they do:\n{}",
        long.join("\n")
    );
}

#[test]
fn every_module_opens_with_a_doc_line_saying_its_job() {
    let missing: Vec<String> = sources()
        .iter()
        .filter_map(|s| {
            let first = s.text.lines().next().unwrap_or_default();
            let said = first
                .strip_prefix("//!")
                .is_some_and(|rest| rest.split_whitespace().count() >= 3);
            (!said).then(|| format!("  {}: {first:?}", s.rel))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "every file under src/ must start with a `//!` line stating the module's one job:\n{}",
        missing.join("\n")
    );
}

#[test]
fn nothing_below_the_commands_imports_cli_or_config() {
    let mut offences = Vec::new();
    for source in sources() {
        if COMMAND_LAYER.contains(&source.top()) {
            continue;
        }
        for reference in references(&source) {
            if let Some(top @ ("cli" | "config")) = reference.path.first().map(String::as_str) {
                offences.push(format!(
                    "  {}:{} uses crate::{top} ({})",
                    source.rel,
                    reference.line,
                    reference.path.join("::")
                ));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "only src/commands/, src/main.rs, src/cli.rs and src/config* may import `cli` or \
         `config`; move the name down to the layer that owns it:\n{}",
        offences.join("\n")
    );
}

/// An import edge between two sibling modules, with where it is written.
type Edges = BTreeMap<(String, String), Vec<String>>;

#[test]
fn no_two_modules_import_each_other() {
    let sources = sources();
    // The children of each module (files and folders), to tell modules from items.
    let mut children: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for source in &sources {
        if let Some((last, parent)) = source.module.split_last() {
            children
                .entry(parent.to_vec())
                .or_default()
                .insert(last.clone());
        }
    }
    // Edges between siblings: `engine -> store` at the root, `engine/worker -> engine/writer`
    // inside `engine`, keyed by the parent module.
    let mut edges: BTreeMap<Vec<String>, Edges> = BTreeMap::new();
    for source in &sources {
        if source.module.is_empty() {
            continue;
        }
        for reference in references(source) {
            let common = source
                .module
                .iter()
                .zip(&reference.path)
                .take_while(|(a, b)| a == b)
                .count();
            let (Some(from), Some(to)) = (source.module.get(common), reference.path.get(common))
            else {
                continue;
            };
            let parent = source.module[..common].to_vec();
            if !children.get(&parent).is_some_and(|c| c.contains(to)) {
                continue;
            }
            edges
                .entry(parent)
                .or_default()
                .entry((from.clone(), to.clone()))
                .or_default()
                .push(format!("{}:{}", source.rel, reference.line));
        }
    }
    assert!(
        edges.get(&Vec::new()).is_some_and(|root| root.len() > 5),
        "the checker found almost no imports between top-level modules: is it reading src/?"
    );
    let mut cycles = String::new();
    for (parent, edges) in &edges {
        for ((a, b), at) in edges {
            if a >= b {
                continue;
            }
            let Some(back) = edges.get(&(b.clone(), a.clone())) else {
                continue;
            };
            let name = |m: &str| {
                let mut full = parent.clone();
                full.push(m.to_owned());
                full.join("::")
            };
            let (a_name, b_name) = (name(a), name(b));
            let allowed = ALLOWED_CYCLES.iter().any(|(x, y, _)| {
                (*x, *y) == (a_name.as_str(), b_name.as_str())
                    || (*y, *x) == (a_name.as_str(), b_name.as_str())
            });
            if allowed {
                continue;
            }
            let (mut at, mut back) = (at.clone(), back.clone());
            at.dedup();
            back.dedup();
            let _ = writeln!(
                cycles,
                "  {a_name} <-> {b_name}\n    {a_name} -> {b_name}: {}\n    {b_name} -> {a_name}: {}",
                at.join(", "),
                back.join(", ")
            );
        }
    }
    assert!(
        cycles.is_empty(),
        "these modules import each other; move what both need into a leaf module:\n{cycles}"
    );
}

/// SQL keywords that open a statement, each with a word that must follow somewhere after it,
/// so that prose such as "UPDATE the ticket" does not count.
const SQL_OPENERS: &[(&str, &[&str])] = &[
    ("SELECT", &["FROM", "COUNT", "EXISTS", "1", "*"]),
    ("INSERT", &["INTO"]),
    ("REPLACE", &["INTO"]),
    ("UPDATE", &["SET"]),
    ("DELETE", &["FROM"]),
    ("CREATE", &["TABLE", "INDEX", "VIEW", "TRIGGER"]),
    ("DROP", &["TABLE", "INDEX", "VIEW", "TRIGGER"]),
    ("ALTER", &["TABLE"]),
    ("PRAGMA", &[""]),
    ("WITH", &["SELECT"]),
];

/// Whether a string literal is an SQL statement.
fn is_sql(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some(first) = words.first() else {
        return false;
    };
    SQL_OPENERS.iter().any(|(opener, follows)| {
        *first == *opener
            && words.len() > 1
            && follows
                .iter()
                .any(|f| f.is_empty() || words[1..].iter().any(|w| w.trim_matches(',') == *f))
    })
}

#[test]
fn all_sql_lives_in_the_store() {
    let mut offences = Vec::new();
    for source in sources() {
        if source.rel.starts_with("src/store/") {
            continue;
        }
        for (text, line) in &source.lexed.strings {
            let text = text.replace("\\\n", " ").replace("\\n", " ");
            if is_sql(&text) {
                let first = text
                    .split_whitespace()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" ");
                offences.push(format!("  {}:{line}: \"{first} ...\"", source.rel));
            }
        }
        let tokens = &source.lexed.tokens;
        for window in tokens.windows(3) {
            if let [(Tok::Ident(a), line), (Tok::PathSep, _), (Tok::Ident(b), _)] = window
                && a == "sqlx"
                && b.starts_with("query")
            {
                offences.push(format!("  {}:{line}: sqlx::{b}", source.rel));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "SQL is written only under src/store/; give the store a method instead:\n{}",
        offences.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The checker's own parts, on small inputs, so a rule cannot pass by reading nothing.

fn refs_of(rel: &str, text: &str) -> Vec<String> {
    let source = Source {
        rel: rel.to_owned(),
        text: text.to_owned(),
        module: module_path(rel),
        lexed: lex(text),
    };
    references(&source)
        .into_iter()
        .map(|r| r.path.join("::"))
        .collect()
}

#[test]
fn the_checker_resolves_paths_from_where_a_file_sits() {
    let refs = refs_of(
        "src/engine/worker.rs",
        "//! w\nuse crate::{store::Store, kapture::{self, Client}};\nuse super::writer::X;\n\
         fn f() { let s = \"crate::cli\"; crate::config::load(); }\n\
         // crate::cli in a comment\nmod tests { use super::*; use super::super::policy; }\n",
    );
    assert_eq!(
        refs,
        [
            "store::Store",
            "kapture",
            "engine::writer::X",
            "config::load",
            "engine::worker",
            "engine::policy",
        ]
    );
    assert_eq!(refs_of("src/logging.rs", "use super::report;"), ["report"]);
    assert!(refs_of("src/main.rs", "use crate::x;").is_empty());
    assert_eq!(
        refs_of("src/main.rs", "use kapsync::cli::Cli;"),
        ["cli::Cli"]
    );
}

#[test]
fn the_checker_tells_sql_from_prose() {
    assert!(is_sql("SELECT id FROM jobs WHERE run_id = ?"));
    assert!(is_sql("UPDATE jobs SET state = 'pending'"));
    assert!(is_sql("INSERT OR IGNORE INTO runs (id) VALUES (?)"));
    assert!(is_sql("PRAGMA journal_mode"));
    assert!(!is_sql("UPDATE the ticket"));
    assert!(!is_sql("Select a file"));
    let lexed = lex("let a = r#\"DELETE FROM x\"#; let b = '\"'; let c = \"it's\";");
    let strings: Vec<&str> = lexed.strings.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(strings, ["DELETE FROM x", "it's"]);
}
