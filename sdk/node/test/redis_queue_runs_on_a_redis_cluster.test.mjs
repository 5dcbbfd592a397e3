// RedisQueue.connectCluster: a queue whose slot lives on a node other than the first
// URL's (that node answers MOVED for its keys), so its calls and its worker's blocking
// listeners work only when routed through the cluster. Needs a Redis Cluster
// (A3S_LANE_REDIS_CLUSTER_URLS); the test uses its own key prefix and clears it.
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { test } from 'node:test';
import { RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { redisClusterUrls, uniquePrefix } from './support.mjs';

/** Sends one command to the node at `url` over plain RESP (no redirection); its reply's first line. */
function firstReplyLine(url, args) {
  const { hostname, port, username, password } = new URL(url);
  const commands = [];
  if (password) commands.push(username ? ['AUTH', decodeURIComponent(username), decodeURIComponent(password)] : ['AUTH', decodeURIComponent(password)]);
  commands.push(args);
  const encode = (command) =>
    `*${command.length}\r\n` + command.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('');
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: hostname || '127.0.0.1', port: Number(port) || 6379 });
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('connect', () => socket.write(commands.map(encode).join('')));
    socket.on('data', (chunk) => {
      buffered += chunk;
      const lines = buffered.split('\r\n');
      if (lines.length > commands.length) {
        socket.end();
        resolve(lines[commands.length - 1]);
      }
    });
  });
}

/** A prefix whose slot the first node does not hold: it redirects its keys (MOVED). */
async function prefixOnAnotherNode(firstUrl, base) {
  for (let i = 0; i < 10_000; i += 1) {
    const prefix = `${base}-${i}`;
    const reply = await firstReplyLine(firstUrl, ['EXISTS', `{${prefix}}:probe`]);
    if (reply.startsWith('-MOVED')) return prefix;
    assert.equal(reply, ':0');
  }
  throw new Error('every prefix tried lives on the first node: is this a cluster?');
}

test('a queue on another node of a cluster runs its commands on a worker', async (t) => {
  const urls = redisClusterUrls();
  const keyPrefix = await prefixOnAnotherNode(urls[0], uniquePrefix('cluster'));
  const queue = await RedisQueue.connectCluster(urls, {
    keyPrefix,
    connectTimeoutMs: 5_000,
    lanes: { jobs: { priority: 0, maxConcurrency: 4 } },
  });
  t.after(() => queue.clear());
  const worker = await RedisWorker.start(queue, { slots: 2, handlers: { double: (n) => n * 2 } });
  const handles = await Promise.all([0, 1, 2, 3, 4].map((n) => queue.submit('jobs', 'double', n)));
  assert.deepEqual(await Promise.all(handles.map((handle) => handle.result)), [0, 2, 4, 6, 8]);
  assert.equal((await queue.stats()).counters.completed, 5);
  await worker.shutdown(10_000);
});

test('cluster nodes are checked before connecting', async () => {
  const code = (expected, pattern) => (error) => {
    assert.equal(error.code, expected, `${error.code}: ${error.message}`);
    assert.match(error.message, pattern);
    return true;
  };
  await assert.rejects(RedisQueue.connectCluster([]), code('CONFIG', /at least one of its nodes/));
  await assert.rejects(RedisQueue.connectCluster(['http://127.0.0.1:7000']), code('CONFIG', /'http:\/\/127\.0\.0\.1:7000'/));
  await assert.rejects(RedisQueue.connectCluster('redis://127.0.0.1:7000'), code('CONFIG', /array of node URLs/));
  await assert.rejects(RedisQueue.connectCluster([7000]), code('CONFIG', /nodes\[0\] must be a URL string/));
  await assert.rejects(RedisQueue.connectCluster(['redis://127.0.0.1:7000'], { connectTimeoutMs: 0 }), code('CONFIG', /connect_timeout must be longer than zero/));
});
