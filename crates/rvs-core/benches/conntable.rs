//! Connection table benchmarks (filled in with the schedulers).
fn main() {}
