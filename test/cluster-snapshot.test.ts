/**
 * Snapshots of the metadata center through Raft compaction, across processes: a member that was
 * down while the leader compacted past it catches up by InstallSnapshot; a member restarted from
 * its own snapshot has the same data; a watch from a compacted revision re-lists.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterServer } from '../actors/cluster-server.ts';
import { ClusterClient } from '../src/client.ts';
import { startNatsCluster } from '../src/nats/broker.ts';
import { generateCredentials } from '../src/nats/credentials.ts';
import { registerReducer, type KeyValue } from '../src/sm/metadata.ts';
import { ReplyTooLargeError } from '../src/errors.ts';
import { connectClient, eventually, freshCluster, waitForLeader } from './helpers/local-cluster.ts';

test.serial('a member down during compaction catches up by snapshot and serves the same data', async (t) => {
  const c = await freshCluster('snapshot', { memberArgs: ['--snapshot-every', '50'] });
  t.teardown(() => c.stop());
  const client = await connectClient(c);
  t.teardown(() => client.close());
  const leader = await waitForLeader(client, 3);
  const lagging = c.members.find((m) => m.id !== leader.id)!;
  for (let i = 0; i < 60; i++) await client.put(`s/${i}`, i);
  await lagging.kill9();
  for (let i = 60; i < 400; i++) await client.put(`s/${i}`, i);
  const now = (await client.status()).find((s) => s.role === 'leader')!;
  t.true(now.snapshotIndex > 60, `the leader compacted (snapshot at ${now.snapshotIndex})`);

  lagging.start();
  const caught = await eventually('the lagging member caught up', async () => {
    const [s] = await client.status(lagging.id);
    return s && s.appliedIndex >= now.commitIndex ? s : null;
  }, 60_000);
  t.true(caught.snapshotIndex >= now.snapshotIndex - 50, 'it installed a snapshot from the leader');
  t.is(caught.counters['raft_messages_received_total{type="snapshot"}'] > 0, true, 'InstallSnapshot chunks arrived');

  // Let it lead, then read everything linearizably from it.
  await client.transferLeader(lagging.id);
  await eventually('leadership moved', async () => (await client.status()).find((s) => s.role === 'leader')?.id === lagging.id);
  const all = await client.list('s/');
  t.is(all.member, lagging.id);
  t.is(all.kvs.length, 400);
  t.deepEqual(all.kvs.map((kv) => kv.value).sort((a, b) => (a as number) - (b as number)), Array.from({ length: 400 }, (_, i) => i));

  // A member restarted from its own snapshot has no watch history before it: a watch from
  // revision 1 served there is told to re-list and continues from the listed state.
  await Promise.all(c.members.map((m) => m.stop()));
  for (const m of c.members) m.start();
  await waitForLeader(client, 3);
  let resync: KeyValue[] | null = null;
  const events: string[] = [];
  const w = await client.watch('s/', { fromRevision: 1, onEvent: (ev) => events.push(ev.kv.key), onResync: (kvs) => (resync = kvs) });
  t.teardown(() => w.close());
  await client.put('s/after', 'restart');
  await eventually('the watch continued after the re-list', async () => events.includes('s/after'));
  t.truthy(resync, 'the compacted revision made the watcher re-list');
  t.is(resync!.length, 400);
});

/** One member in this process on a one-server broker, leading, and a client of it; all stopped at teardown. */
async function soloMember(t: ExecutionContext, prefix: string, opts: Partial<Parameters<typeof ClusterServer.start>[0]>) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const credentials = generateCredentials();
  const nats = await startNatsCluster({ size: 1, dir: join(dir, 'nats'), credentials });
  t.teardown(() => nats.stop());
  const server = await ClusterServer.start({
    id: 'solo', peers: ['solo'], nats: nats.urls, natsUser: credentials.member.user, natsPass: credentials.member.pass,
    dataDir: join(dir, 'data'), monitor: false, ...opts,
  });
  t.teardown(() => server.stop());
  const client = await ClusterClient.connect({ nats: nats.urls, user: credentials.client.user, pass: credentials.client.pass, quorumWaitMs: 5000 });
  t.teardown(() => client.close());
  await eventually('leader', async () => server.isLeader());
  return { server, client };
}

test.serial('a member serves /metrics with Raft gauges, counters and the fsync histogram', async (t) => {
  const { server, client } = await soloMember(t, 'sc-metrics-', { metricsPort: 0 });
  for (let i = 0; i < 20; i++) await client.put(`m/${i}`, i);
  const text = await (await fetch(server.metricsUrl!)).text();
  t.regex(text, /^submarine_raft_term\{member="solo"\} [1-9]/m);
  t.regex(text, /^submarine_raft_is_leader\{member="solo"\} 1$/m);
  t.regex(text, /^submarine_raft_elections_total\{member="solo"\} [1-9]/m);
  t.regex(text, /^submarine_proposals_total\{member="solo"\} (2\d|[3-9]\d)/m);
  const count = Number(/^submarine_wal_fsync_ms_count\{member="solo"\} (\d+)$/m.exec(text)?.[1]);
  t.true(count >= 1 && count <= 22, `fsyncs: ${count}`); // at most one per entry: the client's openSession and 20 puts, plus the no-op
  t.regex(text, /^# TYPE submarine_wal_fsync_ms histogram$/m);
  t.regex(text, /^# TYPE submarine_gc_pause_ms histogram$/m);
  t.regex(text, /^submarine_gc_pause_ms_count\{member="solo"\} \d+$/m);
  const [st] = await client.status('solo');
  t.deepEqual(st!.gcMs.bounds, [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100]);
  t.is((await fetch(server.metricsUrl!.replace('/metrics', '/other'))).status, 404);
});

test.serial('a reply over the broker message limit is a ReplyTooLargeError naming the size (a write says it was applied), not a timeout', async (t) => {
  registerReducer('test.grow', (_cur, action) => ({ value: 'x'.repeat((action as { n: number }).n) }));
  const { client } = await soloMember(t, 'sc-bigreply-', { maxValueBytes: 4 << 20 });
  // A small command whose outcome (the new value, returned with the write) is 1.5 MB.
  const err = await t.throwsAsync(() => client.write({ op: 'reduce', reducer: 'test.grow', key: 'huge', action: { n: 1_500_000 } }));
  t.is(err?.name, 'ReplyTooLargeError');
  t.regex(err!.message, /reply of \d+ bytes is over the \d+-byte limit of one message \(the write was applied at log index \d+/);
  const e2 = await t.throwsAsync(() => client.get('huge'));
  t.true(e2 instanceof ReplyTooLargeError, String(e2));
  // The member keeps serving.
  await client.put('small', 1);
  t.deepEqual((await client.list('small')).kvs.map((kv) => kv.value), [1]);
  t.is((await client.status('solo'))[0]!.counters['api_replies_too_large_total'], 2);
});
