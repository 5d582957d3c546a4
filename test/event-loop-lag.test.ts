/**
 * Event-loop lag of a member: a histogram (plus the last minute's percentiles and the longest
 * stall) in its status and in its /metrics. The member runs in this process, so blocking this
 * process's event loop blocks the member's, and that stall must be reported.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterServer } from '../actors/cluster-server.ts';
import { ClusterClient } from '../src/client.ts';
import { EventLoopLag, LOOP_LAG_MS_BUCKETS } from '../src/metrics.ts';
import { startNatsCluster } from '../src/nats/broker.ts';
import { generateCredentials } from '../src/nats/credentials.ts';
import { eventually } from './helpers/local-cluster.ts';

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // block the event loop
  }
}

test.serial('a member reports its event-loop lag in status and /metrics, and a 300 ms block as a stall', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sc-looplag-'));
  t.teardown(() => rm(dir, { recursive: true, force: true })); // last: teardowns run newest first
  const credentials = generateCredentials();
  const nats = await startNatsCluster({ size: 1, dir: join(dir, 'nats'), credentials });
  t.teardown(() => nats.stop());
  const server = await ClusterServer.start({
    id: 'solo', peers: ['solo'], nats: nats.urls, natsUser: credentials.member.user, natsPass: credentials.member.pass,
    dataDir: join(dir, 'data'), monitor: false, metricsPort: 0,
  });
  t.teardown(() => server.stop());
  const client = await ClusterClient.connect({ nats: nats.urls, user: credentials.client.user, pass: credentials.client.pass, quorumWaitMs: 5000 });
  t.teardown(() => client.close());
  await eventually('leader', async () => server.isLeader());

  // Sampling runs: samples accumulate while the loop is idle, none of them a stall.
  const before = await eventually('lag samples', async () => {
    const [s] = await client.status('solo');
    return s && s.loopLagMs.count >= 5 ? s.loopLagMs : null;
  });
  t.deepEqual(before.bounds, [...LOOP_LAG_MS_BUCKETS]);
  t.is(before.resolutionMs, 10);
  t.true(before.window.samples >= 5);

  const blockedAt = Date.now();
  busyWait(300);
  // The sampler's timer fires late once the loop is free again.
  const after = await eventually('the stall reported', async () => {
    const [s] = await client.status('solo');
    return s && s.loopLagMs.stalls.some((x) => x.at >= blockedAt) ? s.loopLagMs : null;
  }, 5000);
  const stall = after.stalls.at(-1)!;
  t.true(stall.ms >= 250 && stall.ms < 2000, `the stall: ${JSON.stringify(after.stalls)}`);
  t.true(after.longestStallMs >= 250, `longest stall ${after.longestStallMs} ms`);
  // Wall clock vs monotonic clock: allow a little drift.
  t.true(after.longestStallAt! >= blockedAt + 200, 'the longest stall ended after the block started');
  t.true(after.window.max >= 250, `last minute's max ${after.window.max} ms`);
  // In the histogram: one more sample above 250 ms.
  const over250 = (h: { counts: number[]; count: number }) => h.count - h.counts.slice(0, LOOP_LAG_MS_BUCKETS.indexOf(250) + 1).reduce((a, b) => a + b, 0);
  t.is(over250(after) - over250(before), 1);

  const text = await (await fetch(server.metricsUrl!)).text();
  t.regex(text, /^# TYPE submarine_event_loop_lag_ms histogram$/m);
  for (const le of [...LOOP_LAG_MS_BUCKETS, '+Inf']) t.regex(text, new RegExp(`^submarine_event_loop_lag_ms_bucket\\{member="solo",le="${String(le).replace("+", "\\+")}"\\} \\d+$`, 'm'));
  const inf = Number(/^submarine_event_loop_lag_ms_bucket\{member="solo",le="\+Inf"\} (\d+)$/m.exec(text)?.[1]);
  const le250 = Number(/^submarine_event_loop_lag_ms_bucket\{member="solo",le="250"\} (\d+)$/m.exec(text)?.[1]);
  t.true(inf - le250 >= 1, `a sample over 250 ms in /metrics (+Inf ${inf}, le=250 ${le250})`);
  t.is(Number(/^submarine_event_loop_lag_ms_count\{member="solo"\} (\d+)$/m.exec(text)?.[1]), inf);
  const longest = Number(/^submarine_event_loop_longest_stall_ms\{member="solo"\} ([\d.]+)$/m.exec(text)?.[1]);
  t.true(longest >= 250, `longest stall in /metrics: ${longest}`);
  const windowMax = Number(/^submarine_event_loop_lag_window_ms\{member="solo",quantile="1"\} ([\d.]+)$/m.exec(text)?.[1]);
  t.true(windowMax >= 250, `window max in /metrics: ${windowMax}`);
  t.regex(text, /^submarine_event_loop_lag_window_ms\{member="solo",quantile="0\.99"\} [\d.]+$/m);
});

test('the lag window keeps only recent samples and the stall list is bounded', (t) => {
  const lag = new EventLoopLag(10, 1000, 100);
  lag.observe(500, 0);
  for (let i = 1; i <= 99; i++) lag.observe(i % 2, 10 * i);
  let j = lag.toJSON(1000);
  t.is(j.window.samples, 100);
  t.is(j.window.max, 500);
  t.is(j.window.p50, 1);
  t.is(j.longestStallMs, 500);
  // 1.5 s later the 500 ms sample has left the window, not the longest stall.
  j = lag.toJSON(1500);
  t.is(j.window.samples, 50);
  t.is(j.window.max, 1);
  t.is(j.longestStallMs, 500);
  for (let i = 0; i < 30; i++) lag.observe(100 + i, 2000 + i);
  j = lag.toJSON(2100);
  t.is(j.stalls.length, 20);
  t.is(j.stalls.at(-1)!.ms, 129);
  t.is(j.count, 130);
  t.is(j.counts.reduce((a, b) => a + b, 0), 130);
});
