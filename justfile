# a3s-lane development tasks. `just ready` runs exactly what CI runs.
# (No `just`? `cargo install just`, or `pip install rust-just`.)

# List the recipes.
default:
    @just --list

# What CI runs: fmt check, clippy -D warnings, docs, then every test (Rust, Python, Node).
ready:
    bash .ci/run

# The main demo: control commands preempt a saturated prompt lane; cancel stops a generation.
demo:
    cargo run --example priority_preemption

# Every test (starts a throwaway Redis and Redis Cluster when A3S_LANE_REDIS_URL and
# A3S_LANE_REDIS_CLUSTER_URLS are not set).
test:
    bash scripts/test.sh

# Rust tests only.
test-rust:
    cargo test --workspace --all-features

# Format the code.
fmt:
    cargo fmt --all

# Lints, as CI runs them.
lint:
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# API docs.
doc:
    cargo doc --workspace --all-features --no-deps --open

# The criterion benchmarks (figures in README.md).
bench:
    cargo bench --bench scheduler
    cargo bench --bench idle_managers
    cargo bench --bench durable_submit
