/**
 * Integration: separate member processes over a 3-server NATS cluster (all on free loopback
 * ports, started and stopped here by PID).
 */
import test from 'ava';
import { join } from 'node:path';
import { ClusterClient } from '../src/client.ts';
import { NoQuorumError } from '../src/errors.ts';
import { MAX_SESSION_WINDOW } from '../src/sm/metadata.ts';
import { clusterWithLeader, connectClient, eventually, freshCluster, tempDir, waitForLeader } from './helpers/local-cluster.ts';

test.serial('writes, linearizable and stale reads; kill -9 the leader loses no acknowledged write; restart brings all data back', async (t) => {
  const c = await freshCluster('basic');
  t.teardown(() => c.stop());
  const client = await connectClient(c);
  t.teardown(() => client.close());
  const leader = await waitForLeader(client, 3);

  const acked: string[] = [];
  for (let i = 0; i < 50; i++) {
    const r = await client.put(`k/${i}`, `v${i}`);
    t.true(r.revision > 0);
    acked.push(`k/${i}`);
  }
  const got = await client.get('k/7');
  t.is(got.kv?.value, 'v7');
  const stale = await client.list('k/', { consistency: 'stale' });
  t.true(stale.revision > 0);

  // Keep writing while the leader dies; every acknowledged write must survive.
  const victim = c.members.find((m) => m.id === leader.id)!;
  let stopWriting = false;
  const writer = (async () => {
    for (let i = 50; !stopWriting; i++) {
      try {
        await client.put(`k/${i}`, `v${i}`);
        acked.push(`k/${i}`);
      } catch {
        // unacknowledged: may or may not be there
      }
    }
  })();
  await eventually('some writes before the kill', async () => acked.length >= 60);
  await victim.kill9();
  const next = await waitForLeader(client, 2);
  t.not(next.id, leader.id);
  await eventually('writes after failover', async () => acked.length >= 90);
  stopWriting = true;
  await writer;

  const after = await client.list('k/');
  const keys = new Set(after.kvs.map((kv) => kv.key));
  for (const k of acked) t.true(keys.has(k), `acknowledged ${k} lost`);

  // Stop everything cleanly and start again: all data back.
  await Promise.all(c.members.map((m) => m.stop()));
  for (const m of c.members) m.start();
  await waitForLeader(client, 3);
  const back = await client.list('k/');
  t.deepEqual(new Set(back.kvs.map((kv) => kv.key)), keys);
});

test.serial('a NATS server dies: the cluster keeps serving; quorum lost: NoQuorumError, stale reads still work', async (t) => {
  const c = await freshCluster('faults');
  t.teardown(() => c.stop());
  const client = await connectClient(c, { quorumWaitMs: 2000 });
  t.teardown(() => client.close());
  await waitForLeader(client, 3);
  await client.put('a', '1');

  await c.nats.killServer(0);
  await eventually('writes through the remaining NATS servers', async () => (await client.put('b', '2')).ok);
  t.is((await client.get('b')).kv?.value, '2');

  const leader = await waitForLeader(client, 3);
  const others = c.members.filter((m) => m.id !== leader.id);
  await Promise.all(others.map((m) => m.kill9()));
  // Once the leader has noticed (it refuses writes without a majority, then steps down),
  // NoQuorumError is a promise that the write did not happen.
  await eventually('the lone leader to step down (CheckQuorum)', async () => {
    const [s] = await client.status(leader.id);
    return s && s.role !== 'leader';
  });
  const started = performance.now();
  const err = await t.throwsAsync(client.put('c', '3'));
  t.true(err instanceof NoQuorumError, `expected NoQuorumError, got ${err?.name}: ${err?.message}`);
  t.log(`NoQuorumError after ${Math.round(performance.now() - started)} ms`);
  const stale = await client.get('a', { consistency: 'stale' });
  t.is(stale.kv?.value, '1');
  // The majority comes back: the refused write is not there.
  for (const m of others) m.start();
  await waitForLeader(client, 3);
  t.is((await client.get('c')).kv, null, 'a write answered with NoQuorumError was applied');
});

test.serial('exactly once: a write whose reply was lost is retried with the same session and applies once', async (t) => {
  const { c, client } = await clusterWithLeader(t, 'once');
  const session = { client: await client.openSession(), seq: 1 };
  // The first attempt's reply is lost (we never wait for it), then the client retries the same command.
  const first = client.writeWithSession({ op: 'incr', key: 'counter', by: 1, session });
  const second = await client.writeWithSession({ op: 'incr', key: 'counter', by: 1, session });
  await first;
  const third = await client.writeWithSession({ op: 'incr', key: 'counter', by: 1, session });
  t.true(second.ok && third.ok);
  t.is((await client.get('counter')).kv?.value, 1);
  const next = await client.writeWithSession({ op: 'incr', key: 'counter', by: 1, session: { ...session, seq: 2 } });
  t.true(next.ok);
  t.is((await client.get('counter')).kv?.value, 2);
  // A session the cluster never handed out is refused, not applied: its outcome is reported unknown.
  const made = client.writeWithSession({ op: 'incr', key: 'counter', by: 1, session: { client: 'made-up', seq: 1 } });
  await t.throwsAsync(made, { name: 'SessionLostError' });
  t.is((await client.get('counter')).kv?.value, 2);
});

test.serial('sessions across processes: a retry finds its result however many later writes completed; beyond the window nothing is applied', async (t) => {
  // Issue 18, cause 2: the metadata center kept at most 1,024 results per session and, past that,
  // forgot the oldest and moved the session's ack on its own; a slow retry of an applied write was
  // then refused ("stale session sequence") although it had taken effect.
  const { c, client } = await clusterWithLeader(t, 'window');
  const id = await client.openSession();
  const put = (seq: number) => client.writeWithSession({ op: 'put', key: `w/${seq}`, value: seq, session: { client: id, seq, ack: 0 } });
  const first = await put(1); // applied; say its reply was lost
  for (let seq = 2; seq <= MAX_SESSION_WINDOW; seq += 64) {
    await Promise.all(Array.from({ length: Math.min(64, MAX_SESSION_WINDOW + 1 - seq) }, (_, k) => put(seq + k)));
  }
  const over = await put(MAX_SESSION_WINDOW + 1);
  t.like(over, { ok: false, code: 'sessionWindow' });
  t.is((await client.get(`w/${MAX_SESSION_WINDOW + 1}`)).kv, null, 'a refused write was not applied');
  t.deepEqual(await put(1), first, 'the retry of seq 1 gets the result of its first apply');
  t.is((await client.get('w/1')).kv?.version, 1);

  // One client shared by more callers than the window: later writes wait for room instead of
  // being refused, and every one applies once.
  const callers = 2 * MAX_SESSION_WINDOW + 100;
  const results = await Promise.all(Array.from({ length: callers }, (_, i) => client.put(`shared/${i}`, i)));
  t.is(results.length, callers);
  const listed = await client.list('shared/');
  t.is(listed.kvs.length, callers);
  t.true(listed.kvs.every((kv) => kv.version === 1));
});

test.serial('outbox: writes queued while the cluster is down survive a client restart and commit in order, once', async (t) => {
  const c = await freshCluster('outbox');
  t.teardown(() => c.stop());
  const outboxDir = join(await tempDir('outbox-client'), 'outbox');
  const probe = await connectClient(c);
  t.teardown(() => probe.close());
  await waitForLeader(probe, 3);
  await Promise.all(c.members.map((m) => m.stop()));

  const first = await ClusterClient.connect({ ...c.clientOptions(), outboxDir, quorumWaitMs: 300 });
  for (let i = 0; i < 10; i++) {
    await first.enqueue({ op: 'put', key: `o/${i}`, value: i });
    await first.enqueue({ op: 'incr', key: 'o/count', by: 1 });
  }
  t.is(first.outbox.pending().length, 20);
  await first.close();

  const second = await ClusterClient.connect({ ...c.clientOptions(), outboxDir, quorumWaitMs: 300 });
  t.teardown(() => second.close());
  t.is(second.outbox.pending().length, 20, 'the queue survived the client restart');
  for (const m of c.members) m.start();
  await second.outbox.whenDrained();
  const listed = await second.list('o/');
  const byKey = new Map(listed.kvs.map((kv) => [kv.key, kv]));
  t.is(byKey.get('o/count')?.value, 10, 'each increment applied exactly once');
  const revs = Array.from({ length: 10 }, (_, i) => byKey.get(`o/${i}`)!.modRevision);
  t.deepEqual([...revs].sort((a, b) => a - b), revs, 'applied in queue order');
});

test.serial('list: a listing larger than one reply (1 MB broker limit) comes back whole, paged under the hood; limit/after page by hand', async (t) => {
  const { c, client } = await clusterWithLeader(t, 'list');
  const big = 'v'.repeat(200 * 1024);
  for (let i = 0; i < 6; i++) await client.put(`big/${i}`, `${i}${big}`); // 1.2 MB of values
  await client.put('other', 1);
  for (const consistency of ['linearizable', 'stale'] as const) {
    const all = await client.list('big/', { consistency });
    t.deepEqual(all.kvs.map((kv) => kv.key), [0, 1, 2, 3, 4, 5].map((i) => `big/${i}`), consistency);
    t.true(all.kvs.every((kv, i) => kv.value === `${i}${big}`));
    t.false(all.more);
  }
  const p1 = await client.list('big/', { limit: 4 });
  t.true(p1.more);
  t.true(p1.kvs.length >= 1 && p1.kvs.length <= 2, `a page stays under the reply size: ${p1.kvs.length} of 200 KiB`);
  const p2 = await client.list('big/', { limit: 4, after: p1.kvs.at(-1)!.key });
  t.is(p2.kvs[0]!.key, `big/${p1.kvs.length}`);
  const small = await client.list('', { limit: 1, after: 'big/5' });
  t.deepEqual([small.kvs.map((kv) => kv.key), small.more], [['other'], false]);
  await t.throwsAsync(() => client.list('big/', { limit: 0 }), { message: /list\.limit must be an integer/ });
});
