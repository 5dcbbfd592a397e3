//! The Lua scripts, each loaded once per Redis server and then called by hash (EVALSHA;
//! `redis::Script` reloads a script the server forgot, after a restart for example; on a
//! cluster the reload goes to every node).

use std::future::Future;
use std::sync::LazyLock;

use redis::{ErrorKind, FromRedisValue, RedisResult, Script, ScriptInvocation, ServerErrorKind};

use crate::connection::Conn;

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
    pub(crate) purge: Script,
    pub(crate) outcomes: Script,
    pub(crate) list: Script,
    pub(crate) schedule_put: Script,
    pub(crate) schedule_control: Script,
    pub(crate) schedule_due: Script,
    pub(crate) schedule_fire: Script,
    pub(crate) group: Script,
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
    purge: script(include_str!("lua/purge.lua")),
    outcomes: script(include_str!("lua/outcomes.lua")),
    list: script(include_str!("lua/list.lua")),
    schedule_put: script(include_str!("lua/schedule_put.lua")),
    schedule_control: script(include_str!("lua/schedule_control.lua")),
    schedule_due: script(include_str!("lua/schedule_due.lua")),
    schedule_fire: script(include_str!("lua/schedule_fire.lua")),
    group: script(include_str!("lua/group.lua")),
});

/// Calling a script invocation on the queue's connection.
pub(crate) trait RunScript {
    /// Runs the script. `redis::Script` loads a script the server forgot and calls it
    /// again; should the server forget it once more in between (a SCRIPT FLUSH or a
    /// failover at that moment), this starts over, a bounded number of times. A NOSCRIPT
    /// reply means the script did not run, so starting over is safe.
    fn run<T: FromRedisValue + Send>(
        &self,
        conn: &mut Conn,
    ) -> impl Future<Output = RedisResult<T>> + Send;
}

impl RunScript for ScriptInvocation<'_> {
    async fn run<T: FromRedisValue + Send>(&self, conn: &mut Conn) -> RedisResult<T> {
        let mut reloads = 0;
        loop {
            match self.invoke_async(conn).await {
                Err(error)
                    if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
                        && reloads < 3 =>
                {
                    reloads += 1;
                }
                outcome => return outcome,
            }
        }
    }
}
