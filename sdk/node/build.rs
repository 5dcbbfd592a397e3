//! Build script: the linker settings napi-rs needs for a Node.js addon.

fn main() {
    napi_build::setup();
}
