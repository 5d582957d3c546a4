import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActor, waitFor } from 'xstate';
import { Outbox, OutboxClosedError, type OutboxOptions, type OutboxOutcome, type OutboxSubmit } from '../actors/outbox.ts';
import type { Clock } from '../actors/ports.ts';
import { outboxMachine } from '../machines/outbox.ts';
import { WalCorruptionError } from '../src/storage/errors.ts';
import { SessionLostError } from '../src/errors.ts';
import { SimFileSystem } from '../src/storage/sim-fs.ts';

const DIR = '/outbox';
const LOG = `${DIR}/outbox.log`;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Retryable = the cluster could not be reached or the reply was lost; anything else is final. */
class Retryable extends Error {}
const isRetryable = (err: unknown) => err instanceof Retryable;

/** Virtual time: timers fire only when the test advances the clock. */
class FakeClock implements Clock {
  private t = 0;
  private nextId = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  now() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number) {
    this.timers.set(++this.nextId, { at: this.t + ms, fn });
    return this.nextId;
  }
  clearTimeout(h: unknown) {
    this.timers.delete(h as number);
  }
  delays(): number[] {
    return [...this.timers.values()].map((x) => x.at - this.t);
  }
  advance(ms: number) {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
  }
}

/** A submit the test answers by hand; `call(n)` waits for the n-th attempt. */
function scripted() {
  const calls: { client: string; seq: number; command: Uint8Array; resolve(v: unknown): void; reject(e: unknown): void }[] = [];
  const waiters: (() => void)[] = [];
  const submit: OutboxSubmit = (item) =>
    new Promise((resolve, reject) => {
      calls.push({ ...item, resolve, reject });
      waiters.splice(0).forEach((w) => w());
    });
  const call = async (n: number) => {
    while (calls.length < n) await new Promise<void>((r) => waiters.push(r));
    return calls[n - 1]!;
  };
  return { submit, calls, call };
}

/**
 * In-test cluster with exactly-once sessions, as the state machines keep them: the last seq and
 * result per client; a repeat of the last seq returns the stored result without applying.
 */
function fakeCluster(rng: () => number, lossy: boolean) {
  const sessions = new Map<string, { seq: number; result: unknown }>();
  const applied: string[] = [];
  const submit: OutboxSubmit = async ({ client, seq, command }) => {
    await Promise.resolve();
    if (lossy && rng() < 0.2) throw new Retryable('network down');
    const known = sessions.get(client);
    if (known && seq < known.seq) throw new Error(`stale sequence ${seq} < ${known.seq}`);
    let result = known?.result;
    if (!known || seq > known.seq) {
      applied.push(dec(command));
      result = `r${applied.length}`;
      sessions.set(client, { seq, result });
    }
    if (lossy && rng() < 0.3) throw new Retryable('reply lost'); // applied, but the client never hears
    return result;
  };
  return { submit, applied, sessions };
}

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const never = () => new Promise<unknown>(() => {});

function open(fs: SimFileSystem, o: Partial<OutboxOptions> = {}) {
  return Outbox.open({ dir: DIR, fs: fs.session(), submit: never, isRetryable, clock: new FakeClock(), random: () => 0.5, ...o });
}

function results(outbox: Outbox) {
  const seen: [number, OutboxOutcome][] = [];
  outbox.onResult((seq, outcome) => seen.push([seq, outcome]));
  return seen;
}

test('items are submitted one at a time, in seq order, and reported with their result', async (t) => {
  const s = scripted();
  const outbox = await open(new SimFileSystem(), { submit: s.submit });
  const seen = results(outbox);
  const seqs = await Promise.all(['a', 'b', 'c'].map((x) => outbox.enqueue(enc(x))));
  t.deepEqual(seqs, [{ seq: 1 }, { seq: 2 }, { seq: 3 }]);
  t.deepEqual(outbox.pending().map((i) => i.seq), [1, 2, 3]);
  for (let n = 1; n <= 3; n++) {
    const c = await s.call(n);
    t.is(s.calls.length, n, 'the head blocks the rest');
    t.is(c.client, outbox.clientId);
    t.is(c.seq, n);
    c.resolve(`result-${dec(c.command)}`);
  }
  await outbox.whenDrained();
  t.deepEqual(seen, [
    [1, { ok: true, result: 'result-a' }],
    [2, { ok: true, result: 'result-b' }],
    [3, { ok: true, result: 'result-c' }],
  ]);
  t.deepEqual(outbox.pending(), []);
  await outbox.close();
});

test('order is preserved under retryable failures: the head is retried with the same seq', async (t) => {
  let inFlight = 0;
  let maxInFlight = 0;
  const attempts: number[] = [];
  const committed: string[] = [];
  const failuresLeft = new Map<number, number>();
  const submit: OutboxSubmit = async ({ seq, command }) => {
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    attempts.push(seq);
    await Promise.resolve();
    inFlight--;
    const left = failuresLeft.get(seq) ?? 2;
    failuresLeft.set(seq, left - 1);
    if (left > 0) throw new Retryable('no quorum');
    committed.push(dec(command));
  };
  const fs = new SimFileSystem();
  const outbox = await Outbox.open({ dir: DIR, fs: fs.session(), submit, isRetryable, backoff: { minMs: 1, maxMs: 2 } });
  await Promise.all(['a', 'b', 'c'].map((x) => outbox.enqueue(enc(x))));
  await outbox.whenDrained();
  t.deepEqual(committed, ['a', 'b', 'c']);
  t.deepEqual(attempts, [1, 1, 1, 2, 2, 2, 3, 3, 3]);
  t.is(maxInFlight, 1);
  await outbox.close();
});

test('a retryable failure backs off exponentially with jitter from the injected random, on the injected clock', async (t) => {
  const s = scripted();
  const clock = new FakeClock();
  const outbox = await open(new SimFileSystem(), { submit: s.submit, clock, random: () => 0.5, backoff: { minMs: 100, maxMs: 1000 } });
  await outbox.enqueue(enc('x'));
  (await s.call(1)).reject(new Retryable('timeout'));
  await waitFor(outbox.actor, (snap) => snap.matches('backoff'));
  t.like(outbox.actor.getSnapshot().context, { attempt: 1, delayMs: 100, lastError: 'timeout' });
  t.deepEqual(clock.delays(), [100]);
  clock.advance(99);
  t.is(s.calls.length, 1, 'no retry before the delay');
  clock.advance(1);
  (await s.call(2)).reject(new Retryable('timeout'));
  await waitFor(outbox.actor, (snap) => snap.matches('backoff'));
  // Retry 2: uniform in [100, 200] at 0.5.
  t.deepEqual(clock.delays(), [150]);
  clock.advance(150);
  const third = await s.call(3);
  t.is(third.seq, 1);
  third.resolve('ok');
  await outbox.whenDrained();
  t.like(outbox.actor.getSnapshot().context, { attempt: 0, delayMs: 0, pending: 0 });
  await outbox.close();
});

test('a non-retryable failure is final: reported, removed durably, and the next item proceeds', async (t) => {
  const fs = new SimFileSystem();
  const s = scripted();
  const outbox = await open(fs, { submit: s.submit });
  const seen = results(outbox);
  await outbox.enqueue(enc('bad'));
  await outbox.enqueue(enc('good'));
  (await s.call(1)).reject(new Error('casFailed'));
  (await s.call(2)).resolve('done');
  await outbox.whenDrained();
  t.is(s.calls.length, 2, 'the rejected command was not retried');
  t.is(seen[0]![0], 1);
  t.false(seen[0]![1].ok);
  t.is((seen[0]![1] as { error: Error }).error.message, 'casFailed');
  t.deepEqual(seen[1], [2, { ok: true, result: 'done' }]);
  await outbox.close();

  const s2 = scripted();
  const again = await open(fs, { submit: s2.submit });
  t.deepEqual(again.pending(), []);
  t.deepEqual(await again.enqueue(enc('next')), { seq: 3 });
  await again.close();
});

test('restart on a real disk keeps pending items, their seqs and the client id', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'outbox-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const s = scripted();
  const first = await Outbox.open({ dir, submit: s.submit, isRetryable, clock: new FakeClock() });
  await first.enqueue(enc('one'));
  await first.enqueue(enc('two'));
  (await s.call(1)).reject(new Retryable('no leader'));
  await waitFor(first.actor, (snap) => snap.matches('backoff'));
  await first.close();
  await t.throwsAsync(first.enqueue(enc('late')), { instanceOf: OutboxClosedError });

  const s2 = scripted();
  const second = await Outbox.open({ dir, submit: s2.submit, isRetryable, clock: new FakeClock() });
  t.is(second.clientId, first.clientId);
  t.deepEqual(second.pending().map((i) => [i.seq, dec(i.command)]), [[1, 'one'], [2, 'two']]);
  const c = await s2.call(1);
  t.deepEqual([c.client, c.seq, dec(c.command)], [first.clientId, 1, 'one']);
  t.deepEqual(await second.enqueue(enc('three')), { seq: 3 });
  await second.close();

  // Another id would resubmit items possibly applied under the stored session: refused.
  await t.throwsAsync(Outbox.open({ dir, submit: never, isRetryable, clientId: 'someone-else' }), { message: /belongs to client/ });
});

test('seqs keep increasing across restarts after everything was acked and the file compacted', async (t) => {
  const fs = new SimFileSystem();
  const cluster = fakeCluster(mulberry32(1), false);
  const outbox = await open(fs, { submit: cluster.submit, compactAfter: 3 });
  for (let k = 1; k <= 6; k++) t.deepEqual(await outbox.enqueue(enc(`c${k}`)), { seq: k });
  await outbox.whenDrained();
  await outbox.close();
  t.deepEqual(cluster.applied, ['c1', 'c2', 'c3', 'c4', 'c5', 'c6']);

  const again = await open(fs, { submit: cluster.submit });
  // Compacted right after the 6th ack: only the header and the ack (which keeps the last seq) remain.
  t.is(again.recovery.records, 2);
  t.deepEqual(again.pending(), []);
  t.deepEqual(await again.enqueue(enc('c7')), { seq: 7 });
  await again.whenDrained();
  await again.close();
  t.deepEqual(cluster.applied.at(-1), 'c7');
  t.false((await fs.list(DIR)).some((n) => n.endsWith('.tmp')));
});

test('crash: an enqueue that resolved survives; one not yet fsynced is lost and rejects', async (t) => {
  let hold = false;
  const held: (() => void)[] = [];
  const fs = new SimFileSystem({ schedule: (_ms, fn) => (hold ? held.push(fn) : setImmediate(fn)), tornWriteProbability: 0 });
  const outbox = await open(fs);
  hold = true;
  let resolved = false;
  const durable = outbox.enqueue(enc('durable')).then((r) => ((resolved = true), r));
  await waitUntil(() => held.length > 0);
  await new Promise((r) => setImmediate(r)); // a chance to resolve early, were it allowed to
  t.false(resolved, 'enqueue must not resolve before its fsync');
  hold = false;
  held.splice(0).forEach((fn) => fn());
  t.deepEqual(await durable, { seq: 1 });
  hold = true; // from here no fsync completes before the crash
  const unsynced = outbox.enqueue(enc('in flight'));
  await waitUntil(() => held.length > 0); // its fsync is issued but not done
  fs.crash(() => 0.99);
  hold = false;
  held.splice(0).forEach((fn) => fn());
  await t.throwsAsync(unsynced);

  const again = await open(fs);
  t.is(again.clientId, outbox.clientId);
  t.deepEqual(again.pending().map((i) => [i.seq, dec(i.command)]), [[1, 'durable']]);
  await again.close();
});

test('a torn last record is cut and reported; damage before valid records is refused', async (t) => {
  const fs = new SimFileSystem();
  const outbox = await open(fs);
  await outbox.enqueue(enc('kept'));
  await outbox.close();
  // Append half a record behind the outbox's back, as a crash mid-append leaves it.
  const h = await fs.openAppend(LOG);
  await h.append(new Uint8Array([0x53, 0x57, 0, 0, 0, 40, 1, 2, 3, 4, 5]));
  await h.datasync();

  const again = await open(fs);
  t.like(again.recovery, { pending: 1, truncatedBytes: 11 });
  t.truthy(again.recovery.tornReason);
  t.deepEqual(again.pending().map((i) => i.seq), [1]);
  t.deepEqual(await again.enqueue(enc('after')), { seq: 2 });
  await again.close();
  const third = await open(fs);
  t.like(third.recovery, { pending: 2, truncatedBytes: 0, tornReason: null });
  await third.close();

  // Flip a byte inside the first item: valid records follow, so this is not a torn write.
  const bytes = await fs.readFile(LOG);
  const itemStart = bytes.findIndex((b, i) => i > 0 && b === 0x53 && bytes[i + 1] === 0x57);
  bytes[itemStart + 12] ^= 0xff;
  await fs.writeFile(LOG, bytes);
  await t.throwsAsync(open(fs), { instanceOf: WalCorruptionError });
});

test('exactly once: lost replies, failures and a restart mid-way apply every command once, in order', async (t) => {
  const fs = new SimFileSystem();
  const cluster = fakeCluster(mulberry32(7), true);
  const commands = Array.from({ length: 30 }, (_, k) => `cmd-${k + 1}`);
  const o = { submit: cluster.submit, clock: undefined, random: mulberry32(3), backoff: { minMs: 1, maxMs: 2 } };
  const first = await open(fs, o);
  const seen = results(first);
  const halfway = new Promise<void>((r) => first.onResult(() => seen.length === 12 && r()));
  for (const c of commands) await first.enqueue(enc(c));
  await halfway;
  await first.close(); // a submit may still be in flight and apply later: the same seq is reused

  const second = await open(fs, o);
  const seen2 = results(second);
  t.true(seen.length >= 12);
  t.is(second.pending()[0]!.seq, seen.length + 1, 'resumes right after the last reported item');
  await second.whenDrained();
  await second.close();

  t.deepEqual(cluster.applied, commands);
  const outcomes = [...seen, ...seen2];
  t.deepEqual(outcomes.map(([seq]) => seq), commands.map((_, k) => k + 1));
  t.true(outcomes.every(([, out]) => out.ok));
});

test('crash after commit but before the ack is durable: resubmitted with the same seq, applied once', async (t) => {
  let hold = false;
  const held: (() => void)[] = [];
  const fs = new SimFileSystem({ schedule: (_ms, fn) => (hold ? held.push(fn) : setImmediate(fn)), tornWriteProbability: 0 });
  const cluster = fakeCluster(() => 0.99, false);
  const submit: OutboxSubmit = async (item) => {
    const result = await cluster.submit(item);
    hold = true; // the ack's fsync will hang until the crash
    return result;
  };
  const first = await open(fs, { submit });
  const seen = results(first);
  await first.enqueue(enc('pay 10'));
  await waitUntil(() => held.length > 0);
  fs.crash(() => 0.99);
  hold = false;
  held.splice(0).forEach((fn) => fn());
  t.deepEqual(seen, [], 'not reported before the ack was durable');

  const second = await open(fs, { submit: cluster.submit });
  const seen2 = results(second);
  t.deepEqual(second.pending().map((i) => i.seq), [1]);
  await second.whenDrained();
  t.deepEqual(cluster.applied, ['pay 10']);
  t.deepEqual(seen2, [[1, { ok: true, result: 'r1' }]]);
  await second.close();
});

test('group commit: concurrent enqueues share one fsync', async (t) => {
  const fs = new SimFileSystem();
  const outbox = await open(fs);
  const before = fs.stats().datasyncs;
  const seqs = await Promise.all(Array.from({ length: 50 }, (_, k) => outbox.enqueue(enc(`m${k}`))));
  t.deepEqual(seqs.map((s) => s.seq), Array.from({ length: 50 }, (_, k) => k + 1));
  t.is(fs.stats().datasyncs - before, 1);
  await outbox.close();
});

test('whenDrained waits for in-flight enqueues and the last commit; close stops retrying and rejects it', async (t) => {
  const s = scripted();
  const clock = new FakeClock();
  const fs = new SimFileSystem();
  const outbox = await open(fs, { submit: s.submit, clock });
  await outbox.whenDrained(); // empty: at once
  void outbox.enqueue(enc('a'));
  let drained = false;
  const drainedP = outbox.whenDrained().then(() => (drained = true));
  (await s.call(1)).resolve('ok');
  await drainedP;
  t.true(drained);

  await outbox.enqueue(enc('b'));
  (await s.call(2)).reject(new Retryable('partition'));
  await waitFor(outbox.actor, (snap) => snap.matches('backoff'));
  const stuck = outbox.whenDrained();
  await outbox.close();
  await t.throwsAsync(stuck, { instanceOf: OutboxClosedError });
  t.deepEqual(clock.delays(), [], 'retry timer cancelled');
  clock.advance(60_000);
  t.is(s.calls.length, 2, 'no retry after close');
  t.true(outbox.actor.getSnapshot().matches('closed'));
  const again = await open(fs);
  t.deepEqual(again.pending().map((i) => i.seq), [2]);
  await again.close();
});

test('chart states visited: idle → sending → backoff → sending → idle', async (t) => {
  const s = scripted();
  const clock = new FakeClock();
  const outbox = await open(new SimFileSystem(), { submit: s.submit, clock });
  const visited: string[] = [String(outbox.actor.getSnapshot().value)];
  outbox.actor.subscribe((snap) => {
    if (visited.at(-1) !== snap.value) visited.push(String(snap.value));
  });
  await outbox.enqueue(enc('x'));
  (await s.call(1)).reject(new Retryable('no quorum'));
  await waitFor(outbox.actor, (snap) => snap.matches('backoff'));
  clock.advance(100);
  (await s.call(2)).resolve('ok');
  await outbox.whenDrained();
  t.deepEqual(visited, ['idle', 'sending', 'backoff', 'sending', 'idle']);
  await outbox.close();
});

test('the pure chart: recovered items start sending; delays come from the injected policy', (t) => {
  const actor = createActor(outboxMachine, { input: { pending: 2, nextDelayMs: (n) => n * 10 } }).start();
  t.true(actor.getSnapshot().matches('sending'));
  actor.send({ type: 'FAILED', seq: 1, retryable: true, error: 'e1' });
  t.like(actor.getSnapshot().context, { attempt: 1, delayMs: 10 });
  actor.send({ type: 'RETRY_DUE' });
  actor.send({ type: 'FAILED', seq: 1, retryable: true, error: 'e2' });
  t.like(actor.getSnapshot().context, { attempt: 2, delayMs: 20 });
  t.true(actor.getSnapshot().matches('backoff'));
  actor.send({ type: 'RETRY_DUE' });
  actor.send({ type: 'FAILED', seq: 1, retryable: false, error: 'rejected' });
  t.true(actor.getSnapshot().matches('sending'), 'the next item goes out');
  t.like(actor.getSnapshot().context, { pending: 1, attempt: 0 });
  actor.send({ type: 'SENT', seq: 2, result: null });
  t.true(actor.getSnapshot().matches('idle'));
  actor.send({ type: 'ENQUEUED', seq: 3 });
  t.true(actor.getSnapshot().matches('sending'));
  actor.send({ type: 'CLOSE' });
  t.is(actor.getSnapshot().status, 'done');
});

/** Waits (on the event loop, not a timer) until the condition holds. */
async function waitUntil(cond: () => boolean): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 10_000) throw new Error('condition never held');
    await new Promise((r) => setImmediate(r));
  }
}

test('with openSession, items go out under a cluster session stored before its first use, kept across a reopen', async (t) => {
  const fs = new SimFileSystem();
  const opened: string[] = [];
  const openSession = async () => {
    const id = `s${opened.length + 1}`;
    opened.push(id);
    return id;
  };
  const cluster = fakeCluster(() => 1, false);
  let outbox = await open(fs, { submit: cluster.submit, openSession });
  await outbox.enqueue(enc('a'));
  await outbox.enqueue(enc('b'));
  await outbox.whenDrained();
  t.deepEqual(opened, ['s1']);
  t.deepEqual([...cluster.sessions.keys()], ['s1']);
  t.is(cluster.sessions.get('s1')!.seq, 2, 'session seqs count from 1');
  await outbox.close();
  // A new incarnation keeps the stored session (a pending retry must reuse it).
  outbox = await open(fs, { submit: cluster.submit, openSession });
  await outbox.enqueue(enc('c'));
  await outbox.whenDrained();
  t.deepEqual(opened, ['s1']);
  t.is(cluster.sessions.get('s1')!.seq, 3);
  t.deepEqual(cluster.applied, ['a', 'b', 'c']);
  await outbox.close();
});

test('a session the cluster lost makes the head an unknown outcome (never resent under a new session); the next item opens one', async (t) => {
  const fs = new SimFileSystem();
  const { submit, call } = scripted();
  let n = 0;
  const outbox = await open(fs, { submit, openSession: async () => `s${++n}` });
  const seen = results(outbox);
  await outbox.enqueue(enc('x'));
  await outbox.enqueue(enc('y'));
  const first = await call(1);
  t.like(first, { client: 's1', seq: 1 });
  first.reject(new SessionLostError('outcome unknown: session s1 is unknown or expired'));
  const second = await call(2);
  t.like(second, { client: 's2', seq: 1 }, 'y goes out under a new session');
  t.is(dec(second.command), 'y');
  second.resolve('ok-y');
  await outbox.whenDrained();
  t.is(seen.length, 2);
  t.is(seen[0]![0], 1);
  t.true(!seen[0]![1].ok && seen[0]![1].error instanceof SessionLostError);
  t.deepEqual(seen[1], [2, { ok: true, result: 'ok-y' }]);
  await outbox.close();
});
