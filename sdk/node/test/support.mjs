// Shared helpers of the test suite.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package directory (sdk/node). */
export const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/** A promise with its resolve and reject functions. */
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh temporary directory, removed when `t` (a test context) ends. */
export function tempDir(t, prefix = 'a3s-lane-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Runs `source` as a separate Node.js process (ESM unless `type` is 'cjs') inside the
 * package, so it can import '@a3s-lab/lane' by name. Resolves with its exit code,
 * signal, stdout, stderr and how long it ran; kills it after `timeoutMs`.
 */
export function runNode(source, { type = 'mjs', timeoutMs = 20_000, args = [], env = {} } = {}) {
  const flag = type === 'cjs' ? '--input-type=commonjs' : '--input-type=module';
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [flag, '-e', source, ...args], {
      cwd: packageDir,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, elapsedMs: Date.now() - started });
    });
  });
}

/** Lanes p0..p(n-1) with priorities 0..n-1 and the given options. */
export function priorityLanes(n, options = {}) {
  const lanes = {};
  for (let p = 0; p < n; p++) lanes[`p${p}`] = { priority: p, minConcurrency: 0, maxConcurrency: 8, ...options };
  return lanes;
}

/**
 * Waits until `condition()` is true (checked every 5 ms), or fails after `timeoutMs`
 * saying what it waited for. For conditions, never for durations.
 */
export async function waitFor(condition, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * The Redis server of the Redis tests. They fail without one: a test that needs Redis
 * never passes by skipping.
 */
export function redisUrl() {
  const url = process.env.A3S_LANE_REDIS_URL;
  if (!url) {
    throw new Error(
      'A3S_LANE_REDIS_URL is not set, and this test needs a Redis server. Run sdk/node/scripts/test.sh ' +
        '(it starts a throwaway redis-server when one is installed: apt-get install redis-server, ' +
        'brew install redis), or set A3S_LANE_REDIS_URL=redis://HOST:PORT to use a running one.',
    );
  }
  return url;
}

/**
 * The seed nodes of the Redis Cluster of the cluster tests. They fail without one: a test
 * that needs a cluster never passes by skipping.
 */
export function redisClusterUrls() {
  const urls = (process.env.A3S_LANE_REDIS_CLUSTER_URLS ?? '')
    .split(',')
    .map((url) => url.trim())
    .filter((url) => url !== '');
  if (urls.length === 0) {
    throw new Error(
      'A3S_LANE_REDIS_CLUSTER_URLS is not set, and this test needs a Redis Cluster. Run ' +
        'sdk/node/scripts/test.sh or scripts/test.sh (they start a throwaway three-node cluster), or set ' +
        'A3S_LANE_REDIS_CLUSTER_URLS=redis://HOST:PORT,redis://HOST:PORT,... to the nodes of a running one.',
    );
  }
  return urls;
}

let prefixes = 0;

/** A key prefix no other test (or run) uses, so Redis tests never share a queue. */
export function uniquePrefix(name = 'test') {
  prefixes += 1;
  return `node-${name}-${process.pid}-${Date.now().toString(36)}-${prefixes}`;
}

/**
 * Starts `source` as a separate Node.js process (ESM) inside the package, like
 * `runNode`, but hands back at once: `line(pattern)` waits for a line of its output,
 * `exited` resolves like `runNode`'s result.
 */
export function startNode(source, { timeoutMs = 60_000, env = {} } = {}) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
    cwd: packageDir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers = new Set();
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
    for (const watcher of [...watchers]) watcher();
  });
  child.stderr.on('data', (chunk) => (stderr += chunk));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const exited = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      for (const watcher of [...watchers]) watcher();
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
  function line(pattern) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = stdout.match(pattern);
        if (match) {
          watchers.delete(check);
          resolve(match);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          watchers.delete(check);
          reject(new Error(`the child exited without printing ${pattern}:\n${stdout}\n${stderr}`));
        }
      };
      watchers.add(check);
      check();
    });
  }
  return { child, line, exited };
}
