/**
 * Integration: cluster events over a real 3-member cluster (separate processes) and a 3-server NATS
 * cluster. Every ClusterEvents instance has its own client connection with the client credentials.
 */
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { ClusterEvents, EventDeliveryError, EventTooLargeError, InvalidTopicError, type ClusterEventsOptions, type EventMeta } from '../actors/events.ts';
import type { ClusterClient } from '../src/client.ts';
import { encodeEnvelope } from '../src/codec.ts';
import type { LocalCluster } from '../src/local-cluster.ts';
import { subjects } from '../src/nats/subjects.ts';
import { connectClient, eventually, freshCluster, tempDir, waitForLeader } from './helpers/local-cluster.ts';

const test = anyTest as TestFn<{ c: LocalCluster; admin: ClusterClient }>;

interface Got {
  payload: { n?: number; warm?: boolean; [k: string]: unknown };
  meta: EventMeta;
}

test.before(async (t) => {
  const c = await freshCluster('events');
  const admin = await connectClient(c);
  await waitForLeader(admin, 3);
  t.context = { c, admin };
});

test.after.always(async (t) => {
  await t.context.admin?.close();
  await t.context.c?.stop();
});

/** An events instance on its own client connection; closed (then its client) at the end of the test. */
async function startEvents(t: ExecutionContext<{ c: LocalCluster }>, memberId: string, o: Partial<ClusterEventsOptions> = {}) {
  const client = await connectClient(t.context.c);
  const ev = await ClusterEvents.start({ client, memberId, ...o });
  t.teardown(async () => {
    await ev.close();
    await client.close();
  });
  return { ev, client };
}

/** Records every non-warm-up event of `topic`. */
function record(ev: ClusterEvents, topic: string): { got: Got[]; warm: number; off: () => void } {
  const r = { got: [] as Got[], warm: 0, off: () => {} };
  r.off = ev.on(topic, (payload, meta) => {
    const p = payload as Got['payload'];
    if (p.warm) r.warm++;
    else r.got.push({ payload: p, meta });
  });
  return r;
}

/**
 * Fast events are at most once: a subscription reaches the other NATS servers over the routes a
 * little after it is made. Publish marked warm-up events until every listener has seen one.
 */
async function warmUp(from: ClusterEvents, topic: string, recs: { warm: number }[]) {
  await eventually('subscriptions routed to every broker server', async () => {
    await from.broadcast(topic, { warm: true }, { includeSelf: true });
    await new Promise((r) => setImmediate(r));
    return recs.every((r) => r.warm > 0);
  }, 10_000, 50);
}

const ns = (got: Got[]) => got.map((g) => g.payload.n);

test.serial('fast broadcast reaches every other member (self only with includeSelf); bad input is dropped and counted', async (t) => {
  const { c } = t.context;
  const a = await startEvents(t, 'srv-a');
  const b = await startEvents(t, 'srv-b');
  const cc = await startEvents(t, 'srv-c');
  const [ra, rb, rc] = [record(a.ev, 'note'), record(b.ev, 'note'), record(cc.ev, 'note')];
  await Promise.all([a.ev.ready(), b.ev.ready(), cc.ev.ready()]);
  await warmUp(a.ev, 'note', [ra, rb, rc]);

  const { id } = await a.ev.broadcast('note', { n: 1 });
  await a.ev.broadcast('note', { n: 2 }, { includeSelf: true });
  await eventually('both broadcasts at b and c, the second at a', async () => rb.got.length >= 2 && rc.got.length >= 2 && ra.got.length >= 1);
  t.deepEqual(ns(rb.got), [1, 2]);
  t.deepEqual(ns(rc.got), [1, 2]);
  // Same publisher connection, same subscription: n=2 arriving means n=1 was not delivered to a.
  t.deepEqual(ns(ra.got), [2], 'no self-delivery without includeSelf');
  t.like(rb.got[0]!.meta, { from: 'srv-a', topic: 'note', mode: 'fast', id });
  t.is(rb.got[0]!.meta.revision, undefined);

  // Garbage on the topic's subject: dropped, counted, the subscriber keeps working.
  const nc = b.client.nc;
  const subject = subjects.events(c.cluster, 'note');
  nc.publish(subject, new Uint8Array([0xc1, 0x00, 0xff]));
  nc.publish(subject, encodeEnvelope('another-cluster', 'event', { from: 'x', topic: 'note', id: 'i', payload: 1 }));
  nc.publish(subject, encodeEnvelope(c.cluster, 'event', { from: 'x', topic: 'note', id: 7, payload: 1 }));
  nc.publish(subject, encodeEnvelope(c.cluster, 'event', { from: 'x', topic: 'auth', id: 'i', payload: 1 }));
  await a.ev.broadcast('note', { n: 3 });
  await eventually('drops counted at c', async () => {
    const k = cc.ev.counters;
    return k.get('events_dropped_total', { reason: 'malformed' }) >= 1 && k.get('events_dropped_total', { reason: 'wrongCluster' }) >= 1
      && k.get('events_dropped_total', { reason: 'badShape' }) >= 1 && k.get('events_dropped_total', { reason: 'misrouted' }) >= 1;
  });
  await eventually('n=3 still delivered', async () => rc.got.length >= 3);
  t.deepEqual(ns(rc.got), [1, 2, 3], 'no garbage reached a listener');

  // Limits are checked before anything is sent.
  const tooBig = await t.throwsAsync(a.ev.broadcast('note', { blob: 'x'.repeat(300 * 1024) }), { instanceOf: EventTooLargeError });
  t.regex(tooBig!.message, /note.*over the limit of 262144 bytes/);
  await t.throwsAsync(a.ev.broadcast('bad.topic', 1), { instanceOf: InvalidTopicError });
  await t.throwsAsync(a.ev.broadcast('note', { d: new Date() }), { message: /Date/ });
});

test.serial('fast unicast is acknowledged by a live member; a closed member fails fast with EventDeliveryError', async (t) => {
  const a = await startEvents(t, 'srv-a');
  const b = await startEvents(t, 'srv-b');
  const rb = record(b.ev, 'note');
  b.ev.on('boom', () => {
    throw new Error('listener exploded');
  });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  b.ev.on('slow', () => gate);
  await b.ev.ready();

  // Unicast needs b's subscription routed to a's broker server: the first ack proves it.
  const ack = await eventually('a first acknowledged unicast', async () => a.ev.unicast('srv-b', 'note', { n: 1 }).catch(() => null), 10_000);
  t.is(ack.listeners, 1);
  t.deepEqual(ns(rb.got), [1], 'the listener ran before the ack');
  t.like(rb.got[0]!.meta, { from: 'srv-a', to: 'srv-b', mode: 'fast', id: ack.id });

  const noListener = await t.throwsAsync(a.ev.unicast('srv-b', 'auth', { n: 2 }), { instanceOf: EventDeliveryError });
  t.like(noListener, { member: 'srv-b', topic: 'auth', reason: 'noListener' });
  const failed = await t.throwsAsync(a.ev.unicast('srv-b', 'boom', {}), { instanceOf: EventDeliveryError });
  t.is((failed as EventDeliveryError).reason, 'listenerFailed');
  t.regex(failed!.message, /listener exploded/);
  const slowAt = performance.now();
  const timeout = await t.throwsAsync(a.ev.unicast('srv-b', 'slow', {}, { timeoutMs: 300 }), { instanceOf: EventDeliveryError });
  t.is((timeout as EventDeliveryError).reason, 'timeout');
  t.regex(timeout!.message, /srv-b.*no acknowledgement within 300 ms/);
  t.true(performance.now() - slowAt < 2000);
  release();

  await b.ev.close();
  const started = performance.now();
  const gone = await t.throwsAsync(a.ev.unicast('srv-b', 'note', { n: 3 }), { instanceOf: EventDeliveryError });
  const tookMs = performance.now() - started;
  t.like(gone, { member: 'srv-b', topic: 'note', reason: 'noResponders' });
  t.regex(gone!.message, /topic "note" to member srv-b.*no responders.*gone/);
  t.true(tookMs < 1000, `failed after ${tookMs.toFixed(0)} ms, not at the 2 s timeout`);
  const never = await t.throwsAsync(a.ev.unicast('srv-nobody', 'note', {}), { instanceOf: EventDeliveryError });
  t.is((never as EventDeliveryError).reason, 'noResponders');
  t.deepEqual(ns(rb.got), [1], 'nothing after close');
});

test.serial('durable broadcast: subscribers closed during 20 events get exactly the missed ones, in order, after restart', async (t) => {
  const topic = 'ddd';
  const cursorDir = await tempDir('events-cursor');
  const a = await startEvents(t, 'srv-a');
  const ra = record(a.ev, topic);
  // b keeps its cursor in a local file, c in the metadata center.
  const b1 = await startEvents(t, 'srv-b', { cursorDir });
  const c1 = await startEvents(t, 'srv-c');
  const [rb1, rc1] = [record(b1.ev, topic), record(c1.ev, topic)];
  await Promise.all([a.ev.ready(), b1.ev.ready(), c1.ev.ready()]);

  // Five at once: they go out as one group commit, still in call order.
  const first = await Promise.all(Array.from({ length: 5 }, (_, n) => a.ev.broadcast(topic, { n }, { mode: 'durable' })));
  t.true(first.every((r) => typeof r.revision === 'number' && /^\d{16}$/.test(r.id)));
  await eventually('5 events at b and c', async () => rb1.got.length >= 5 && rc1.got.length >= 5);
  await Promise.all([b1.ev.close(), c1.ev.close()]);
  for (let n = 5; n < 20; n++) await a.ev.broadcast(topic, { n }, { mode: 'durable' });

  const b2 = await startEvents(t, 'srv-b', { cursorDir });
  const c2 = await startEvents(t, 'srv-c');
  const [rb2, rc2] = [record(b2.ev, topic), record(c2.ev, topic)];
  await eventually('the 15 missed events replayed', async () => rb2.got.length >= 15 && rc2.got.length >= 15);
  // A last event with includeSelf, so its arrival shows nothing else is still on the way.
  const last = await a.ev.broadcast(topic, { n: 20 }, { mode: 'durable', includeSelf: true });
  await eventually('the last event everywhere', async () => [rb2, rc2, ra].every((r) => r.got.some((g) => g.payload.n === 20)));

  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
  t.deepEqual(ns(rb1.got), range(0, 5));
  t.deepEqual(ns(rc1.got), range(0, 5));
  t.deepEqual(ns(rb2.got), range(5, 21), 'file cursor: every missed event once, in order');
  t.deepEqual(ns(rc2.got), range(5, 21), 'cluster cursor: every missed event once, in order');
  t.deepEqual(ns(ra.got), [20], 'the publisher sees only its includeSelf event');
  for (const r of [rb2, rc2]) {
    const revs = r.got.map((g) => g.meta.revision!);
    t.true(revs.every((rev, i) => i === 0 || rev > revs[i - 1]!), 'one event per revision here, strictly increasing');
    t.like(r.got.at(-1)!.meta, { from: 'srv-a', mode: 'durable', id: last.id, revision: last.revision });
  }
  t.is(b2.ev.status().cursorStore, 'file');
  t.is(c2.ev.status().cursorStore, 'cluster');
});

test.serial('retention keeps the newest events per topic with conditional deletes; a retained-start subscriber replays them', async (t) => {
  const { admin } = t.context;
  const a = await startEvents(t, 'srv-a', { retention: { keepLast: 5 }, cleanupEvery: 8 });
  for (let n = 0; n < 20; n++) await a.ev.broadcast('ret', { n }, { mode: 'durable' });
  await a.ev.cleanup();
  const listed = await admin.list('events/ret/');
  t.deepEqual(listed.kvs.map((kv) => (kv.value as { payload: { n: number } }).payload.n), [15, 16, 17, 18, 19]);
  t.true(a.ev.counters.get('events_cleanup_deleted_total') >= 15);
  t.is(await a.ev.cleanup(), 0, 'nothing more to delete');

  const r = await startEvents(t, 'srv-r', { freshStart: 'retained' });
  const rr = record(r.ev, 'ret');
  await eventually('the retained events', async () => rr.got.length >= 5);
  await a.ev.broadcast('ret', { n: 20 }, { mode: 'durable' });
  await eventually('the next one', async () => rr.got.length >= 6);
  t.deepEqual(ns(rr.got), [15, 16, 17, 18, 19, 20]);
});

test.serial('durable unicast commits without its target; durable events survive kill -9 of the leader', async (t) => {
  const { c, admin } = t.context;
  const a = await startEvents(t, 'srv-a');
  const b = await startEvents(t, 'srv-b', { cursorDir: await tempDir('events-cursor') });
  const rb = record(b.ev, 'kk');
  await b.ev.ready();

  // The target does not exist yet: committing is all a durable unicast waits for.
  const sent = [];
  for (let n = 0; n < 3; n++) sent.push(await a.ev.unicast('srv-late', 'kk', { n }, { mode: 'durable' }));
  t.true(sent.every((s) => s.revision! > 0));

  for (let n = 0; n < 10; n++) await a.ev.broadcast('kk', { n }, { mode: 'durable' });
  const leader = (await admin.status()).find((s) => s.role === 'leader')!;
  await c.members.find((m) => m.id === leader.id)!.kill9();
  for (let n = 10; n < 20; n++) await a.ev.broadcast('kk', { n }, { mode: 'durable' });
  await eventually('20 events at b across the leader kill', async () => rb.got.length >= 20, 30_000);

  const late = await startEvents(t, 'srv-late');
  const rl = record(late.ev, 'kk');
  await late.ev.ready();
  await eventually('srv-late got its unicasts', async () => rl.got.length >= 3);
  // Again a final marker proves nothing more is coming.
  await a.ev.broadcast('kk', { n: 20 }, { mode: 'durable' });
  await eventually('marker at b and srv-late', async () => rb.got.length >= 21 && rl.got.length >= 4);

  t.deepEqual(ns(rb.got), Array.from({ length: 21 }, (_, i) => i), 'in order, exactly once, across kill -9');
  t.deepEqual(ns(rl.got.slice(0, 3)), [0, 1, 2]);
  t.true(rl.got.slice(0, 3).every((g) => g.meta.to === 'srv-late' && g.meta.mode === 'durable'));
  t.deepEqual(ns(rl.got.slice(3)), [20], 'a fresh broadcast stream starts now; unicasts replay what is retained');
  t.is(b.ev.counters.total('events_dropped_total'), 0);
});
