//! `src/schema.rs` is exactly what `diesel print-schema` (with `diesel.toml`) prints for a
//! database the migrations ran into.

use std::path::Path;
use std::process::Command;

use anyreply_server::testing::TestDb;

/// How to get the `diesel` command the check runs.
const INSTALL: &str = "install diesel_cli (it links libpq: apt-get install libpq-dev): \
     cargo install diesel_cli --version 2.3.14 --no-default-features --features postgres --locked";

#[tokio::test]
async fn schema_rs_is_what_diesel_print_schema_prints_for_the_migrations() {
    let db = TestDb::new().await;
    anyreply_server::db::run_migrations(db.url()).await.unwrap();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("diesel")
        .arg("print-schema")
        .args(["--database-url", db.url()])
        .arg("--config-file")
        .arg(crate_dir.join("diesel.toml"))
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run `diesel` ({error}), which checks src/schema.rs: {INSTALL}")
        });
    assert!(
        output.status.success(),
        "diesel print-schema failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let path = crate_dir.join("src/schema.rs");
    let written = std::fs::read_to_string(&path).unwrap();
    if printed == written {
        return;
    }
    let fresh = std::env::temp_dir().join(format!("anyreply-schema-{}.rs", std::process::id()));
    std::fs::write(&fresh, &printed).unwrap();
    panic!(
        "{} is not what `diesel print-schema` prints for the migrations \
         (- the file, + printed):\n{}\n\
         Regenerate it: cp {} {}\n\
         (or, from the repository's root, into a new scratch database: createdb -h 127.0.0.1 \
         -U postgres anyreply_schema && diesel migration run \
         --database-url postgres://postgres@127.0.0.1:5432/anyreply_schema \
         --config-file crates/server/diesel.toml)",
        path.display(),
        line_diff(&written, &printed),
        fresh.display(),
        path.display(),
    );
}

/// The lines between the longest common head and tail of `old` and `new`, `-` and `+`
/// prefixed, with their line number in `old`.
fn line_diff(old: &str, new: &str) -> String {
    let (old, new): (Vec<_>, Vec<_>) = (old.lines().collect(), new.lines().collect());
    let head = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = format!("@@ line {} @@\n", head + 1);
    for line in &old[head..old.len() - tail] {
        out.push_str(&format!("-{line}\n"));
    }
    for line in &new[head..new.len() - tail] {
        out.push_str(&format!("+{line}\n"));
    }
    if head + tail == old.len() && head + tail == new.len() {
        out.push_str("(the same lines: they differ in line endings or the last newline)\n");
    }
    out
}
