//! Scheduling decision benchmarks (filled in with the schedulers).
fn main() {}
