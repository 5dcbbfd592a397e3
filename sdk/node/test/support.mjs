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
