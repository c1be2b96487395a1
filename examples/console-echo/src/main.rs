//! Placeholder replaced by the console echo example.
fn main() {}
