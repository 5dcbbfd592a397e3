//! The Lua scripts, each loaded once per Redis server and then called by hash (EVALSHA;
//! `redis::Script` reloads a script the server forgot, after a restart for example).

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = include_str!("lua/prelude.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

pub(crate) struct Scripts {
    pub(crate) submit: Script,
    pub(crate) exchange: Script,
    pub(crate) cancel: Script,
    pub(crate) declare: Script,
    pub(crate) pause: Script,
    pub(crate) redrive: Script,
    pub(crate) leave: Script,
    pub(crate) stats: Script,
    pub(crate) inspect: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    submit: script(include_str!("lua/submit.lua")),
    exchange: script(include_str!("lua/exchange.lua")),
    cancel: script(include_str!("lua/cancel.lua")),
    declare: script(include_str!("lua/declare.lua")),
    pause: script(include_str!("lua/pause.lua")),
    redrive: script(include_str!("lua/redrive.lua")),
    leave: script(include_str!("lua/leave.lua")),
    stats: script(include_str!("lua/stats.lua")),
    inspect: script(include_str!("lua/inspect.lua")),
});
