//! Integration tests: real servers on port 0, real SQLite files in temp dirs.
//! One test binary (faster to build and link than one per file), one module per area.

mod durability;
mod helpers;
mod mega;
mod randoms;
