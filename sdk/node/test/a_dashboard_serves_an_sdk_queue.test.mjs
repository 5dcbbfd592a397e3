// serveDashboard() serves the web dashboard of a Lane or a RedisQueue in the background:
// its JSON API lists the lanes, an action needs the bearer token (without it the lane
// stays as it was), /metrics is Prometheus text, readOnly refuses every action, and once
// closed (by close() or the lane's shutdown()) the port no longer answers. Bad options
// reject with a TypeError / RangeError, a port in use with EADDRINUSE naming the address.
// The Redis test needs a Redis server (A3S_LANE_REDIS_URL).
import assert from 'node:assert/strict';
import { createServer, connect as connectTcp } from 'node:net';
import { test } from 'node:test';
import { Dashboard, Lane, RedisQueue, RedisWorker } from '@a3s-lab/lane';
import { redisUrl, runNode, uniquePrefix } from './support.mjs';

/** Status, content type and body of one request. */
async function request(url, { method = 'GET', token } = {}) {
  const headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const response = await fetch(url, { method, headers });
  return { status: response.status, type: response.headers.get('content-type') ?? '', body: await response.text() };
}

/** Whether anything accepts a connection at the dashboard's address. */
function answers(url) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connectTcp({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function startedLane(options = {}) {
  const lane = new Lane({ jobs: { priority: 1 }, bulk: { priority: 5 } }, options);
  lane.handle('double', (n) => n * 2);
  await lane.start();
  return lane;
}

test("a lane's dashboard lists its lanes and acts only with the token", async () => {
  const lane = await startedLane({ metrics: true });
  assert.equal(await lane.submit('jobs', 'double', 21), 42);
  const dashboard = await lane.serveDashboard({ port: 0, title: 'orders' });
  assert.ok(dashboard instanceof Dashboard);
  assert.match(dashboard.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.equal(typeof dashboard.token, 'string');
  assert.ok(dashboard.token.length >= 32);
  assert.ok(!dashboard.url.includes(dashboard.token));
  assert.equal(dashboard.closed, false);

  const lanes = await request(`${dashboard.url}api/lanes`);
  assert.equal(lanes.status, 200);
  assert.match(lanes.type, /^application\/json/);
  const views = JSON.parse(lanes.body).lanes;
  assert.deepEqual(views.map((view) => view.id).sort(), ['bulk', 'jobs']);
  const jobs = views.find((view) => view.id === 'jobs');
  assert.equal(jobs.paused, false);
  assert.ok('metrics' in jobs, '{ metrics: true } reaches the dashboard');
  assert.equal(JSON.parse((await request(`${dashboard.url}api/overview`)).body).title, 'orders');

  // Without the token, or with a wrong one, an action is refused and changes nothing.
  const pause = `${dashboard.url}api/lanes/jobs/pause`;
  assert.equal((await request(pause, { method: 'POST' })).status, 401);
  assert.equal((await request(pause, { method: 'POST', token: 'not-the-token' })).status, 401);
  assert.equal((await request(pause)).status, 405);
  assert.equal((await lane.stats()).lanes.jobs.paused, false);

  const paused = await request(pause, { method: 'POST', token: dashboard.token });
  assert.equal(paused.status, 200);
  assert.deepEqual(JSON.parse(paused.body), { lane: 'jobs', paused: true });
  const stats = await lane.stats();
  assert.equal(stats.lanes.jobs.paused, true);
  assert.equal(stats.lanes.bulk.paused, false);
  const resumed = await request(`${dashboard.url}api/lanes/jobs/resume`, { method: 'POST', token: dashboard.token });
  assert.equal(resumed.status, 200);
  assert.equal((await lane.stats()).lanes.jobs.paused, false);

  const metrics = await request(`${dashboard.url}metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.type, /^text\/plain/);
  assert.ok(metrics.body.includes('a3s_lane_lane_pending{lane="jobs"}'));
  assert.ok(metrics.body.includes('# TYPE'));
  assert.ok(metrics.body.includes('lane_commands_completed_total'), "the queue's own metrics series");

  await dashboard.close();
  assert.equal(dashboard.closed, true);
  assert.equal(await answers(dashboard.url), false);
  await dashboard.close(); // again: nothing to do
  await lane.shutdown();
});

test('readOnly refuses every action whatever the token', async () => {
  const lane = await startedLane();
  const dashboard = await lane.serveDashboard({ port: 0, readOnly: true });
  // A token is generated in read-only mode too: it unlocks payloads and results.
  assert.equal(typeof dashboard.token, 'string');
  assert.ok(dashboard.token.length >= 32);
  assert.equal((await request(`${dashboard.url}api/lanes`)).status, 200);
  for (const path of ['api/lanes/jobs/pause', 'api/lanes/bulk/resume', 'api/dead-letters/purge', 'api/commands/1/cancel']) {
    assert.equal((await request(dashboard.url + path, { method: 'POST' })).status, 403, path);
    assert.equal((await request(dashboard.url + path, { method: 'POST', token: 'anything' })).status, 403, path);
  }
  const withToken = await lane.serveDashboard({ port: 0, readOnly: true, token: 'a-secret-of-ours' });
  assert.equal(withToken.token, 'a-secret-of-ours');
  const refused = await request(`${withToken.url}api/lanes/jobs/pause`, { method: 'POST', token: 'a-secret-of-ours' });
  assert.equal(refused.status, 403);
  assert.equal((await lane.stats()).lanes.jobs.paused, false);
  await dashboard.close();
  await withToken.close();
  await lane.shutdown();
});

test("a read-only dashboard shows a dead letter's payload only with its token", async () => {
  const lane = new Lane({ jobs: { priority: 1 } }, { deadLetterCapacity: 10 });
  lane.handle('charge', () => {
    throw new Error('gateway down');
  });
  await lane.start();
  await assert.rejects(lane.submit('jobs', 'charge', { card: '4111-secret' }));
  const [letter] = await lane.deadLetters();
  const dashboard = await lane.serveDashboard({ port: 0, readOnly: true });
  const url = `${dashboard.url}api/dead-letters/${letter.commandId}`;
  const anonymous = await request(url);
  assert.equal(anonymous.status, 200, anonymous.body);
  assert.ok(!anonymous.body.includes('4111-secret'), anonymous.body);
  assert.equal(JSON.parse(anonymous.body).payload_hidden, true);
  const shown = await request(url, { token: dashboard.token });
  assert.equal(shown.status, 200, shown.body);
  assert.deepEqual(JSON.parse(shown.body).payload, { card: '4111-secret' });
  await dashboard.close();
  await lane.shutdown();
});

test('a request naming another host is refused', async () => {
  const lane = await startedLane();
  const dashboard = await lane.serveDashboard({ port: 0 });
  const { hostname, port } = new URL(dashboard.url);
  const { request: httpRequest } = await import('node:http');
  const statusFor = (host) =>
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: hostname, port, path: '/api/lanes', headers: { host: `${host}:${port}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      });
      req.on('error', reject);
      req.end();
    });
  assert.equal(await statusFor('evil.example'), 421);
  assert.equal(await statusFor('localhost'), 200);
  assert.equal(await statusFor(hostname), 200);
  await dashboard.close();
  await lane.shutdown();
});

test('a given token is the one actions need', async () => {
  const lane = await startedLane();
  const dashboard = await lane.serveDashboard({ port: 0, token: 'a-long-random-secret' });
  assert.equal(dashboard.token, 'a-long-random-secret');
  const pause = `${dashboard.url}api/lanes/bulk/pause`;
  assert.equal((await request(pause, { method: 'POST', token: 'another' })).status, 401);
  assert.equal((await request(pause, { method: 'POST', token: 'a-long-random-secret' })).status, 200);
  assert.equal((await lane.stats()).lanes.bulk.paused, true);
  await dashboard.close();
  await lane.shutdown();
});

test("the lane's shutdown closes its dashboards", async () => {
  const lane = await startedLane();
  const first = await lane.serveDashboard({ port: 0 });
  const second = await lane.serveDashboard({ port: 0 });
  assert.notEqual(first.url, second.url);
  assert.equal(await answers(first.url), true);
  assert.equal(await answers(second.url), true);
  await lane.shutdown();
  assert.equal(first.closed, true);
  assert.equal(second.closed, true);
  assert.equal(await answers(first.url), false);
  assert.equal(await answers(second.url), false);
  await assert.rejects(lane.serveDashboard({ port: 0 }), { code: 'SHUTDOWN' });
});

test('a serving dashboard keeps the process alive until closed, and never prints its token', async () => {
  const { code, stdout, stderr, timedOut } = await runNode(`
    import { writeFileSync } from 'node:fs';
    import { Lane } from '@a3s-lab/lane';
    const lane = new Lane();
    await lane.start();
    const dashboard = await lane.serveDashboard({ port: 0 });
    const response = await fetch(dashboard.url + 'api/lanes');
    console.log('status', response.status, 'token length', dashboard.token.length);
    process.stdout.write('TOKEN=' + Buffer.from(dashboard.token).toString('hex') + '\\n');
    // Only the dashboard keeps the process alive now: the timer is unref'd.
    setTimeout(async () => {
      await dashboard.close();
      console.log('closed', dashboard.closed);
    }, 300).unref();
  `);
  assert.equal(timedOut, false, 'the process exits once the dashboard is closed');
  assert.equal(code, 0, stderr);
  assert.match(stdout, /status 200 token length \d+/);
  assert.match(stdout, /closed true/, 'the process stayed alive while the dashboard served');
  const token = Buffer.from(stdout.match(/TOKEN=([0-9a-f]+)/)[1], 'hex').toString();
  assert.ok(token.length >= 32);
  assert.ok(!stdout.replace(/TOKEN=[0-9a-f]+/, '').includes(token), 'the token is not printed');
  assert.ok(!stderr.includes(token), 'the token is not printed');
});

test('close() ends open event streams at once', async () => {
  const lane = await startedLane();
  const dashboard = await lane.serveDashboard({ port: 0 });
  const response = await fetch(`${dashboard.url}api/events`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^text\/event-stream/);
  const reader = response.body.getReader();
  const first = await reader.read(); // the first `stats` message, at once
  assert.match(new TextDecoder().decode(first.value), /^event:/);
  const started = Date.now();
  await dashboard.close(); // does not wait for the page to go away
  // What was in flight may still arrive; then the stream ends (or breaks off).
  for (;;) {
    const { done } = await reader.read().catch(() => ({ done: true }));
    if (done) break;
  }
  assert.ok(Date.now() - started < 5000, 'the stream ended with close()');
  assert.equal(await answers(dashboard.url), false);
  await lane.shutdown();
});

test('bad options say what to give', async () => {
  const lane = new Lane();
  const bad = [
    [{ port: 65536 }, RangeError, /options\.port must be a whole number from 0 to 65535/],
    [{ port: -1 }, RangeError, /options\.port must be a whole number from 0 to 65535/],
    [{ port: 1.5 }, RangeError, /options\.port/],
    [{ port: '9090' }, TypeError, /options\.port must be a number/],
    [{ host: 'localhost' }, RangeError, /options\.host must be an IP address/],
    [{ host: 127 }, TypeError, /options\.host must be a string/],
    [{ token: '' }, RangeError, /options\.token must not be empty/],
    [{ readOnly: 'yes' }, TypeError, /options\.readOnly must be true or false/],
    [{ prot: 0 }, TypeError, /unknown option 'prot'/],
    ['fast', TypeError, /options must be an object/],
  ];
  for (const [options, Class, message] of bad) {
    await assert.rejects(lane.serveDashboard(options), (error) => {
      assert.ok(error instanceof Class, `${error}`);
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.match(error.message, message);
      return true;
    });
  }

  // A port in use: EADDRINUSE, naming the address and what to do.
  const taken = createServer();
  await new Promise((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const { port } = taken.address();
  try {
    await assert.rejects(lane.serveDashboard({ port }), (error) => {
      assert.equal(error.code, 'EADDRINUSE');
      assert.ok(error.message.includes(`127.0.0.1:${port}`), error.message);
      assert.match(error.message, /port: 0/);
      return true;
    });
  } finally {
    taken.close();
  }
  await lane.shutdown();
});

test("a RedisQueue's dashboard shows and pauses its lanes", async (t) => {
  const queue = await RedisQueue.connect(redisUrl(), {
    keyPrefix: uniquePrefix('dashboard'),
    lanes: { jobs: { priority: 1 }, bulk: { priority: 5 } },
  });
  const worker = await RedisWorker.start(queue, { slots: 2, handlers: { double: (n) => n * 2 } });
  t.after(async () => {
    await worker.shutdownNow();
    await queue.clear();
  });
  const handle = await queue.submit('jobs', 'double', 4);
  assert.equal(await handle.result, 8);

  const dashboard = await queue.serveDashboard({ port: 0 });
  const lanes = await request(`${dashboard.url}api/lanes`);
  assert.equal(lanes.status, 200);
  assert.deepEqual(JSON.parse(lanes.body).lanes.map((view) => view.id).sort(), ['bulk', 'jobs']);
  const pause = `${dashboard.url}api/lanes/jobs/pause`;
  assert.equal((await request(pause, { method: 'POST' })).status, 401);
  assert.equal((await queue.stats()).lanes.jobs.paused, false);
  assert.equal((await request(pause, { method: 'POST', token: dashboard.token })).status, 200);
  assert.equal((await queue.stats()).lanes.jobs.paused, true);
  const metrics = await request(`${dashboard.url}metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.type, /^text\/plain/);
  assert.ok(metrics.body.includes('a3s_lane_lane_paused{lane="jobs"} 1'));
  await queue.resumeLane('jobs');
  await dashboard.close();
  assert.equal(await answers(dashboard.url), false);
});
