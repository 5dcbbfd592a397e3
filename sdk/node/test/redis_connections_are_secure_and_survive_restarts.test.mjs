// A RedisQueue over TLS with an ACL user and a client certificate, behind Redis
// Sentinel, and across a restart of Redis itself: servers of the test's own
// (redis-server with TLS or AOF, a sentinel), certificates made with openssl. Passwords
// never appear in errors. The same stem in the Python suite checks the same things.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { sleep } from './support.mjs';

const PASSWORD = 'node-s3cret-Pa55';

function need(tool) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    assert.fail(`${tool} is not on the PATH: these tests start their own servers; install it (Debian: apt-get install redis-server openssl) or run scripts/test.sh`);
  }
  return tool;
}

async function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitPort(port, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    assert.ok(Date.now() < deadline, `nothing listens on ${port}`);
    await sleep(20);
  }
}

function workdir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'a3s-lane-node-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function server(t, args, cwd) {
  const child = spawn(need('redis-server'), args, { cwd, stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  return child;
}

function certificates(dir) {
  const openssl = (...args) => execFileSync(need('openssl'), args, { cwd: dir, stdio: 'ignore' });
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=a3s-lane node test CA');
  for (const name of ['server', 'client']) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  }
  const pem = (name) => readFileSync(join(dir, name), 'utf8');
  return { tlsCa: pem('ca.crt'), tlsCert: pem('client.crt'), tlsKey: pem('client.key') };
}

async function tlsServer(t) {
  const dir = workdir(t);
  const tls = certificates(dir);
  const port = await freePort();
  server(t, ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-cert-file', 'server.crt', '--tls-key-file', 'server.key',
    '--tls-ca-cert-file', 'ca.crt', '--tls-auth-clients', 'yes', '--save', '', '--user', 'app', 'on', `>${PASSWORD}`, '~*', '&*', '+@all', '--user', 'default', 'off'], dir);
  await waitPort(port);
  return { port, tls };
}

test('a queue runs over TLS with an ACL user and a client certificate', async (t) => {
  const { port, tls } = await tlsServer(t);
  const queue = await RedisQueue.connect(`rediss://app:${PASSWORD}@127.0.0.1:${port}`, { ...tls, lanes: { jobs: { priority: 0, maxConcurrency: 2 } } });
  const worker = await RedisWorker.start(queue, { slots: 2, handlers: { echo: (payload) => payload } });
  t.after(() => worker.shutdownNow());
  const handle = await queue.submit('jobs', 'echo', { secure: true });
  assert.deepEqual(await handle.result, { secure: true });
});

test('refusals say why and never show the password', async (t) => {
  const { port, tls } = await tlsServer(t);
  const refused = async (url, options) => {
    const error = await RedisQueue.connect(url, { connectTimeoutMs: 3000, ...options }).then(
      () => assert.fail('connected'),
      (error) => error,
    );
    assert.ok(!error.message.includes(PASSWORD) && !error.message.includes('wrong-pass'), error.message);
    return error;
  };
  let error = await refused(`rediss://app:wrong-pass@127.0.0.1:${port}`, tls);
  assert.equal(error.code, 'STORAGE');
  assert.match(error.message, /credentials/);
  error = await refused(`rediss://app:${PASSWORD}@127.0.0.1:${port}`, {});
  assert.match(error.message, /certificate/i);
  error = await refused(`redis://app:${PASSWORD}@127.0.0.1:${port}`, tls);
  assert.equal(error.code, 'CONFIG');
  assert.match(error.message, /rediss:\/\//);
  error = await refused(`rediss://127.0.0.1:${port}`, { tlsCert: tls.tlsCert });
  assert.match(error.message, /tlsCert and options\.tlsKey go together/);
  error = await refused('redis://127.0.0.1:1', { reconnectMinDelayMs: 2000, reconnectMaxDelayMs: 1000 });
  assert.match(error.message, /reconnect backoff/);
});

test('handles answer after Redis restarts', async (t) => {
  const dir = workdir(t);
  const port = await freePort();
  const aof = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir];
  let redis = server(t, aof, dir);
  await waitPort(port);
  const options = { responseTimeoutMs: 1000, reconnectWaitMs: 10000, reconnectMaxDelayMs: 200 };
  const url = `redis://127.0.0.1:${port}`;
  const queue = await RedisQueue.connect(url, { ...options, lanes: { jobs: { priority: 0, maxConcurrency: 4 } } });
  const worker = await RedisWorker.start(await RedisQueue.connect(url, options), {
    slots: 4,
    handlers: { slow: async (n) => { await sleep(300); return n * 2; } },
  });
  t.after(() => worker.shutdownNow());
  const handles = [];
  for (let n = 0; n < 8; n++) handles.push(await queue.submit('jobs', 'slow', n));
  redis.kill('SIGKILL');
  await sleep(1000);
  redis = server(t, aof, dir);
  await waitPort(port);
  assert.deepEqual(await Promise.all(handles.map((h) => h.result)), [0, 2, 4, 6, 8, 10, 12, 14]);
  const after = await queue.submit('jobs', 'slow', 21);
  assert.equal(await after.result, 42);
});

test('a queue behind Sentinel finds its master', async (t) => {
  const dir = workdir(t);
  const port = await freePort();
  server(t, ['--port', String(port), '--bind', '127.0.0.1', '--save', ''], dir);
  await waitPort(port);
  const sentinelPort = await freePort();
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, `port ${sentinelPort}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${port} 1\n`);
  server(t, [conf, '--sentinel'], dir);
  await waitPort(sentinelPort);
  const queue = await RedisQueue.connectSentinel('redis://mymaster', [`redis://127.0.0.1:${sentinelPort}`], {
    lanes: { jobs: { priority: 0, maxConcurrency: 2 } },
  });
  const worker = await RedisWorker.start(queue, { slots: 2, handlers: { echo: (payload) => payload } });
  t.after(() => worker.shutdownNow());
  const handle = await queue.submit('jobs', 'echo', 'via sentinel');
  assert.equal(await handle.result, 'via sentinel');
  await assert.rejects(
    RedisQueue.connectSentinel('redis://nosuchmaster', [`redis://127.0.0.1:${sentinelPort}`], { connectTimeoutMs: 2000 }),
    (error) => error.code === 'STORAGE' && /nosuchmaster/.test(error.message),
  );
});
