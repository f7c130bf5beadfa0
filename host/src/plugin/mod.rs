//! Plugin engine: runs a scenario's scoring formula as a sandboxed WebAssembly component.
