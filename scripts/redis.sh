# Sourced by the test scripts: `ensure_redis` exports A3S_LANE_REDIS_URL, starting a
# throwaway redis-server on a free loopback port (stopped on exit) when it is not set;
# `ensure_redis_cluster` exports A3S_LANE_REDIS_CLUSTER_URLS (comma separated), starting a
# throwaway three-master Redis Cluster (stopped on exit) when it is not set.

# Cleanup commands of everything started here, run together by one EXIT trap.
A3S_LANE_REDIS_CLEANUP=()

_a3s_lane_redis_cleanup() {
    local command
    for command in "${A3S_LANE_REDIS_CLEANUP[@]}"; do
        eval "$command" || true
    done
}

# Registers a cleanup command, keeping an EXIT trap the sourcing script set before.
_a3s_lane_on_exit() {
    local command=$1
    if [[ ${#A3S_LANE_REDIS_CLEANUP[@]} -eq 0 ]]; then
        # `trap -p EXIT` prints `trap -- 'COMMAND' EXIT`, quoted for the shell to read back.
        local previous
        previous=$(trap -p EXIT)
        if [[ -n "$previous" ]]; then
            eval "set -- $previous"
            if [[ "$3" != _a3s_lane_redis_cleanup ]]; then
                A3S_LANE_REDIS_CLEANUP+=("$3")
            fi
        fi
        trap _a3s_lane_redis_cleanup EXIT
    fi
    A3S_LANE_REDIS_CLEANUP+=("$command")
}

_a3s_lane_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_a3s_lane_need_redis_server() {
    if ! command -v redis-server >/dev/null 2>&1; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "==> redis-server not found; installing it with apt-get"
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
        fi
    fi
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        echo "error: the Redis tests need redis-server and redis-cli." >&2
        echo "  Either set $1 to use a running Redis," >&2
        echo "  or install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)." >&2
        return 1
    fi
}

# The fault-injection and TLS tests start servers of their own (AOF restarts, Sentinel,
# a cluster with replicas, a TLS server with certificates made by openssl), whatever
# A3S_LANE_REDIS_URL says: they need redis-server, redis-cli and openssl on the PATH.
ensure_redis_tools() {
    _a3s_lane_need_redis_server "A3S_LANE_REDIS_URL" || return 1
    if ! command -v openssl >/dev/null 2>&1; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "==> openssl not found; installing it with apt-get"
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl) >/dev/null
        fi
    fi
    if ! command -v openssl >/dev/null 2>&1; then
        echo "error: the Redis TLS tests make their certificates with openssl; install it (Debian/Ubuntu: apt-get install openssl)." >&2
        return 1
    fi
}

# Waits up to 5 s for the server on 127.0.0.1:$1 to answer PING; $2 names it and $3 is
# its log, for the error.
_a3s_lane_wait_for_ping() {
    for _ in $(seq 1 50); do
        if redis-cli -p "$1" ping >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "error: $2 on port $1 did not start; see $3" >&2
    return 1
}

# Stops the redis-server whose pid file is $1 and waits (up to 5 s) until it has exited,
# so that its directory can be removed without it writing there again.
_a3s_lane_stop_server() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
}

ensure_redis() {
    if [[ -n "${A3S_LANE_REDIS_URL:-}" ]]; then
        return 0
    fi
    _a3s_lane_need_redis_server "A3S_LANE_REDIS_URL=redis://HOST:PORT" || return 1
    local port dir
    port=$(_a3s_lane_free_port)
    dir=$(mktemp -d)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    _a3s_lane_wait_for_ping "$port" "the throwaway redis-server" "$dir/redis.log" || return 1
    export A3S_LANE_REDIS_URL="redis://127.0.0.1:$port"
    _a3s_lane_on_exit "_a3s_lane_stop_server '$dir/redis.pid'; rm -rf '$dir'"
    echo "==> started a throwaway Redis at $A3S_LANE_REDIS_URL"
}

ensure_redis_cluster() {
    if [[ -n "${A3S_LANE_REDIS_CLUSTER_URLS:-}" ]]; then
        return 0
    fi
    _a3s_lane_need_redis_server "A3S_LANE_REDIS_CLUSTER_URLS=redis://HOST:PORT,redis://HOST:PORT,..." || return 1
    local dir port ports=() urls=() addresses=()
    dir=$(mktemp -d)
    for node in 1 2 3; do
        port=$(_a3s_lane_free_port)
        # The cluster bus listens on port + 10000: both must be free.
        while [[ $port -gt 55000 || " ${ports[*]:-} " == *" $port "* ]] ||
            ! python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', $port + 10000))" 2>/dev/null; do
            port=$(_a3s_lane_free_port)
        done
        mkdir -p "$dir/$node"
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir/$node" \
            --cluster-enabled yes --cluster-config-file "$dir/$node/nodes.conf" \
            --cluster-node-timeout 5000 \
            --daemonize yes --pidfile "$dir/$node/redis.pid" --logfile "$dir/$node/redis.log"
        _a3s_lane_on_exit "_a3s_lane_stop_server '$dir/$node/redis.pid'"
        ports+=("$port")
        urls+=("redis://127.0.0.1:$port")
        addresses+=("127.0.0.1:$port")
    done
    _a3s_lane_on_exit "rm -rf '$dir'"
    for port in "${ports[@]}"; do
        _a3s_lane_wait_for_ping "$port" "a throwaway cluster node" "$dir/*/redis.log" || return 1
    done
    if ! redis-cli --cluster create "${addresses[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1; then
        echo "error: redis-cli --cluster create failed; see $dir/create.log:" >&2
        cat "$dir/create.log" >&2
        return 1
    fi
    local ready
    for _ in $(seq 1 100); do
        ready=yes
        for port in "${ports[@]}"; do
            if ! redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
                ready=no
                break
            fi
        done
        if [[ $ready == yes ]]; then break; fi
        sleep 0.1
    done
    if [[ $ready != yes ]]; then
        echo "error: the throwaway Redis Cluster on ports ${ports[*]} did not reach cluster_state:ok; see $dir/*/redis.log" >&2
        return 1
    fi
    A3S_LANE_REDIS_CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")
    export A3S_LANE_REDIS_CLUSTER_URLS
    echo "==> started a throwaway Redis Cluster at $A3S_LANE_REDIS_CLUSTER_URLS"
}
