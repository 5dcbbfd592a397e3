# Sourced by the test scripts: `ensure_redis` exports A3S_LANE_REDIS_URL, starting a
# throwaway redis-server on a free loopback port (stopped on exit) when it is not set.

ensure_redis() {
    if [[ -n "${A3S_LANE_REDIS_URL:-}" ]]; then
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "==> redis-server not found; installing it with apt-get"
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
        fi
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "error: the Redis tests need a Redis server." >&2
        echo "  Either set A3S_LANE_REDIS_URL=redis://HOST:PORT to use a running one," >&2
        echo "  or install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)." >&2
        return 1
    fi
    local port dir
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    dir=$(mktemp -d)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    for _ in $(seq 1 50); do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
    if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "error: the throwaway redis-server on port $port did not start; see $dir/redis.log" >&2
        return 1
    fi
    export A3S_LANE_REDIS_URL="redis://127.0.0.1:$port"
    A3S_LANE_REDIS_PIDFILE="$dir/redis.pid"
    trap 'kill "$(cat "$A3S_LANE_REDIS_PIDFILE")" 2>/dev/null || true' EXIT
    echo "==> started a throwaway Redis at $A3S_LANE_REDIS_URL"
}
