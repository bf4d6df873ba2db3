//! Documents generated from code and checked in (`docs/openapi.json`, `docs/metrics.md`): a test
//! fails when the file is not what the code generates, and rewrites it when asked.

/// Asserts that the file at `relative` (from the repository's root) holds `generated`; with the
/// environment variable `update` set to `1`, writes it instead. The failure names the first line
/// that differs and the command (`regenerate`) that rewrites the file.
///
/// # Panics
/// The file differs, or cannot be written.
pub fn assert_generated(relative: &str, generated: &str, update: &str, regenerate: &str) {
    let path = crate::moto::repo_root().join(relative);
    if std::env::var_os(update).is_some_and(|v| v == "1") {
        std::fs::write(&path, generated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != generated {
        let line = on_disk
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || on_disk.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{relative} is not the document the code generates (first difference at line \
             {line}).\nRegenerate it with:\n\n    {regenerate}\n\nand commit the result."
        );
    }
}
