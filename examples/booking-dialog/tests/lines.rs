//! The booking with dialogs is at most half the lines of the same booking by hand, and the book
//! says how many lines each has.

use std::path::Path;

/// Lines of a source file: (code, all), where code is neither blank nor a comment.
fn count(file: &str) -> (usize, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let code = (text.lines())
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .count();
    (code, text.lines().count())
}

/// The book's table row for a version: `| name | `file` | code | all |`.
fn row(name: &str, file: &str) -> String {
    let (code, all) = count(file);
    format!("| {name} | `examples/booking-dialog/src/{file}` | {code} | {all} |")
}

#[test]
fn the_dialog_version_is_at_most_half_the_handmade_one() {
    let (dialogs, _) = count("with_dialogs.rs");
    let (handmade, _) = count("handmade.rs");
    assert!(
        2 * dialogs <= handmade,
        "with dialogs {dialogs} lines of code, by hand {handmade}"
    );
}

#[test]
fn the_book_gives_the_real_counts() {
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book/src/concepts/dialogs.md");
    let book = std::fs::read_to_string(book).unwrap();
    for row in [
        row("with dialogs", "with_dialogs.rs"),
        row("by hand", "handmade.rs"),
    ] {
        assert!(book.contains(&row), "the book lacks the row {row}");
    }
}
