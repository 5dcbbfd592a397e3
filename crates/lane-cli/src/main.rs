//! `a3s-lane`: the command-line tool of a3s-lane. It looks at and steers a queue in Redis
//! (`--redis URL --prefix P`, or a cluster with `--redis-node`) or the store of a durable
//! in-process queue (`--storage DIR`, a `LocalStorage` directory, read without opening
//! it, so it works while the queue's process holds the store).
//!
//! Subcommands: `stats`, `lanes`, `commands --state S`, `show ID`,
//! `dead-letters list | redrive | purge`, `cancel ID`, `pause LANE [--for 30s]`,
//! `resume LANE`, `watch`, and `dashboard` (lane-dashboard over a Redis queue). Tables
//! by default, `--json` for scripts. Any failure is a message on stderr and exit status
//! 1 (2 for a command line clap cannot parse). See the crate's README for the details of
//! each target.

mod duration;
mod output;
mod redis_target;
mod storage_target;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lane_core::CommandState;

use crate::output::Render;
use crate::redis_target::RedisTarget;
use crate::storage_target::StorageTarget;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "a3s-lane",
    version,
    about = "Look at and steer an a3s-lane queue: in Redis, or a LocalStorage directory",
    after_help = "Examples:\n  a3s-lane --redis redis://127.0.0.1:6379 --prefix jobs stats\n  \
                  a3s-lane --redis redis://127.0.0.1:6379 --prefix jobs pause email --for 30s\n  \
                  a3s-lane --storage ./queue_data dead-letters list --json\n  \
                  a3s-lane --redis redis://127.0.0.1:6379 watch\n  \
                  A3S_LANE_DASHBOARD_TOKEN=secret a3s-lane --redis redis://127.0.0.1:6379 dashboard"
)]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    /// Print JSON (one object; `watch` prints one object per line) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Which queue to talk to.
#[derive(Debug, Args)]
struct TargetArgs {
    /// A Redis server's URL (`rediss://` for TLS); its password is never printed.
    #[arg(
        long,
        value_name = "URL",
        global = true,
        conflicts_with_all = ["redis_node", "storage"],
        help = "A Redis server: redis://[user:password@]host:port[/db] (rediss:// for TLS)"
    )]
    redis: Option<String>,
    /// A node of a Redis Cluster (repeat it, or give a comma separated list).
    #[arg(
        long = "redis-node",
        value_name = "URL",
        global = true,
        value_delimiter = ',',
        conflicts_with = "storage"
    )]
    redis_node: Vec<String>,
    /// The queue's key prefix in Redis (as given to RedisQueueConfig::with_key_prefix).
    #[arg(long, value_name = "P", global = true, default_value = "a3s-lane")]
    prefix: String,
    /// How long to wait for Redis to answer a connection, e.g. 5s.
    #[arg(long, value_name = "DURATION", global = true, default_value = "5s", value_parser = duration::parse)]
    connect_timeout: Duration,
    /// A LocalStorage directory (the one holding lane.db). Read without opening it; the
    /// subcommands that change it refuse while another process has it open.
    #[arg(long, value_name = "DIR", global = true)]
    storage: Option<std::path::PathBuf>,
    /// Let a subcommand that changes a --storage store migrate one written by an older
    /// a3s-lane (after which that older version no longer opens it); refused without.
    #[arg(long, global = true)]
    migrate: bool,
}

/// What to do.
#[derive(Debug, Subcommand)]
enum Command {
    /// Counts for the queue and each lane.
    Stats,
    /// Each lane: priority, counts, cap, paused and throttled state.
    Lanes,
    /// Commands in one state, paged (all lanes by lane id, or one with --lane).
    Commands(CommandsArgs),
    /// One command: where it is, its times, result or error, and payload.
    Show {
        /// The command id.
        id: u64,
    },
    /// Dead letters: commands that failed for good.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Cancels a command (a running one is signalled and ends once it stops).
    Cancel {
        /// The command id.
        id: u64,
    },
    /// Stops a lane starting commands (running ones go on) until resumed, or for a while.
    Pause {
        /// The lane id.
        lane: String,
        /// Pause for this long, then resume by itself: 500ms, 30s, 5m, 2h, 1d, 1m30s.
        #[arg(long = "for", value_name = "DURATION", value_parser = duration::parse)]
        duration: Option<Duration>,
    },
    /// Lets a paused lane start commands again.
    Resume {
        /// The lane id.
        lane: String,
    },
    /// A live view of the lanes and the latest events, redrawn in place.
    Watch(WatchArgs),
    /// Serves the web dashboard (lane-dashboard) over a Redis queue until Ctrl-C.
    Dashboard(DashboardArgs),
}

/// `dashboard` options.
#[derive(Debug, Args)]
struct DashboardArgs {
    /// Where to listen; loopback unless told otherwise.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9090")]
    addr: std::net::SocketAddr,
    /// No actions at all: pages and the API only read.
    #[arg(long)]
    read_only: bool,
    /// The page title.
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,
}

/// The environment variable the dashboard's action token is read from (never from the
/// command line, where other users of the machine can read it). Without it a token is
/// made, and printed once only when standard error is a terminal.
const DASHBOARD_TOKEN_ENV: &str = "A3S_LANE_DASHBOARD_TOKEN";

/// `commands` options.
#[derive(Debug, Args)]
struct CommandsArgs {
    /// The state to list.
    #[arg(long, value_enum)]
    state: StateArg,
    /// Only this lane.
    #[arg(long, value_name = "L")]
    lane: Option<String>,
    /// At most this many commands (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
    /// Continue after a previous page: the `next_cursor` it printed.
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
}

/// The states `commands --state` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StateArg {
    Pending,
    Delayed,
    Running,
    Completed,
    Failed,
    Cancelled,
    Expired,
    Dead,
}

impl StateArg {
    fn state(self) -> CommandState {
        match self {
            Self::Pending => CommandState::Pending,
            Self::Delayed => CommandState::Delayed,
            Self::Running => CommandState::Running,
            Self::Completed => CommandState::Completed,
            Self::Failed => CommandState::Failed,
            Self::Cancelled => CommandState::Cancelled,
            Self::Expired => CommandState::Expired,
            Self::Dead => CommandState::DeadLettered,
        }
    }
}

/// `dead-letters` subcommands.
#[derive(Debug, Subcommand)]
enum DeadLettersCommand {
    /// Dead letters, oldest first.
    List {
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
    },
    /// Sends dead letters back to the end of their lanes as fresh commands.
    Redrive(Which),
    /// Deletes dead letters.
    Purge(Which),
}

/// One dead letter by id, or all of them.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Which {
    /// The command id of the dead letter.
    id: Option<u64>,
    /// Every dead letter.
    #[arg(long)]
    all: bool,
}

/// `watch` options.
#[derive(Debug, Args)]
struct WatchArgs {
    /// How often to redraw where the queue reports no event: a LocalStorage directory,
    /// a Redis queue with its event stream turned off, and lane pauses (which emit no
    /// event). With events, the view is redrawn as they arrive.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration::parse)]
    interval: Duration,
    /// Stop after this many redraws (for scripts and tests); runs until Ctrl-C otherwise.
    #[arg(long, value_name = "N")]
    frames: Option<u64>,
}

/// A failure to report: its message goes to stderr and the exit status is 1.
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Self(error.to_string())
    }
}

type CliResult<T> = Result<T, Failure>;

/// The queue the command line names.
#[derive(Debug)]
enum Target {
    Redis(RedisTarget),
    Storage(StorageTarget),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("a3s-lane: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("a3s-lane: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(args: &TargetArgs) -> CliResult<Target> {
    if let Some(dir) = &args.storage {
        return Ok(Target::Storage(StorageTarget::new(dir, args.migrate)?));
    }
    let nodes = match (&args.redis, args.redis_node.is_empty()) {
        (Some(url), _) => vec![url.clone()],
        (None, false) => args.redis_node.clone(),
        (None, true) => {
            return Err(Failure(
                "say which queue: --redis URL [--prefix P], --redis-node URL (a cluster, \
                 repeated or comma separated), or --storage DIR"
                    .into(),
            ));
        }
    };
    let cluster = args.redis.is_none();
    Ok(Target::Redis(
        RedisTarget::connect(nodes, cluster, &args.prefix, args.connect_timeout).await?,
    ))
}

async fn run(cli: Cli) -> CliResult<()> {
    let target = connect(&cli.target).await?;
    let json = cli.json;
    let out: Box<dyn Render> = match (&target, cli.command) {
        (_, Command::Watch(args)) => {
            return watch::run(&target, args.interval, args.frames, json).await;
        }
        (Target::Redis(t), Command::Dashboard(args)) => return dashboard(t, args).await,
        (Target::Storage(_), Command::Dashboard(_)) => {
            return Err(Failure(
                "the dashboard serves a live queue: a Redis queue (--redis), or mount \
                 lane_dashboard::router over the QueueManager in the process that owns the \
                 store"
                    .into(),
            ));
        }
        (Target::Redis(t), Command::Stats) => Box::new(t.stats().await?),
        (Target::Storage(t), Command::Stats) => Box::new(t.stats().await?),
        (Target::Redis(t), Command::Lanes) => Box::new(t.stats().await?.lanes_view()),
        (Target::Storage(t), Command::Lanes) => Box::new(t.stats().await?.lanes_view()),
        (Target::Redis(t), Command::Commands(a)) => Box::new(
            t.commands(
                a.state.state(),
                a.lane.as_deref(),
                a.limit,
                a.after.as_deref(),
            )
            .await?,
        ),
        (Target::Storage(t), Command::Commands(a)) => Box::new(
            t.commands(
                a.state.state(),
                a.lane.as_deref(),
                a.limit,
                a.after.as_deref(),
            )
            .await?,
        ),
        (Target::Redis(t), Command::Show { id }) => Box::new(t.show(id).await?),
        (Target::Storage(t), Command::Show { id }) => Box::new(t.show(id).await?),
        (Target::Redis(t), Command::DeadLetters(DeadLettersCommand::List { limit })) => {
            Box::new(t.dead_letters(limit).await?)
        }
        (Target::Storage(t), Command::DeadLetters(DeadLettersCommand::List { limit })) => {
            Box::new(t.dead_letters(limit).await?)
        }
        (Target::Redis(t), Command::DeadLetters(DeadLettersCommand::Redrive(w))) => {
            Box::new(t.redrive(w.id).await?)
        }
        (Target::Storage(t), Command::DeadLetters(DeadLettersCommand::Redrive(w))) => {
            Box::new(t.redrive(w.id).await?)
        }
        (Target::Redis(t), Command::DeadLetters(DeadLettersCommand::Purge(w))) => {
            Box::new(t.purge(w.id).await?)
        }
        (Target::Storage(t), Command::DeadLetters(DeadLettersCommand::Purge(w))) => {
            Box::new(t.purge(w.id).await?)
        }
        (Target::Redis(t), Command::Cancel { id }) => Box::new(t.cancel(id).await?),
        (Target::Storage(t), Command::Cancel { id }) => Box::new(t.cancel(id).await?),
        (Target::Redis(t), Command::Pause { lane, duration }) => {
            Box::new(t.pause(&lane, duration).await?)
        }
        (Target::Redis(t), Command::Resume { lane }) => Box::new(t.resume(&lane).await?),
        (Target::Storage(t), Command::Pause { .. } | Command::Resume { .. }) => {
            return Err(t.no_pause_state());
        }
    };
    output::print(out.as_ref(), json)
}

/// `dashboard`: lane-dashboard's server over the Redis queue, until Ctrl-C.
async fn dashboard(target: &RedisTarget, args: DashboardArgs) -> CliResult<()> {
    let mut config = lane_dashboard::DashboardConfig::new()
        .with_addr(args.addr)
        .read_only(args.read_only)
        // No connection details (user, host, prefix) in a page anyone may see.
        .with_title(args.title.unwrap_or_else(|| "a3s-lane".to_owned()));
    if let Some(token) = std::env::var(DASHBOARD_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
    {
        config = config.with_token(token);
    }
    let listener = lane_dashboard::bind(&config)
        .await
        .map_err(|e| Failure(format!("cannot listen on {}: {e}", args.addr)))?;
    let client: std::sync::Arc<dyn lane_core::QueueClient> =
        std::sync::Arc::new(target.queue.clone());
    lane_dashboard::serve(listener, client, config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| Failure(format!("the dashboard stopped: {e}")))
}
