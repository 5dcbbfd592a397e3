//! The 0.3 API: code written against the a3s-lane 0.3 README must keep compiling and
//! running unchanged against the facade. These modules are that promise (CONTRIBUTING.md,
//! "The 0.3 API"): do not edit them to make a change pass.

mod basic_usage_compiles_and_runs;
mod observability_examples_compile_and_run;
mod readme_examples_compile_and_run;
