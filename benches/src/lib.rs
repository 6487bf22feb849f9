//! Benchmarks for Headwater: criterion micro-benches under `benches/` and the `log-bench`
//! binary. This library target is empty; it exists so the package has one.
