/** Cluster events, without a cluster: validation, envelopes, cursors, replay, retention, cursor storage. */
import test from 'ava';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEnvelope } from '../src/codec.ts';
import type { KeyValue } from '../src/sm/metadata.ts';
import {
  ACK_KIND, BUILTIN_TOPICS, CLUSTER_AUTH_EVENT_TOPIC, CLUSTER_INTP_EVENT_TOPIC, CLUSTER_INTP_SETTING_EVENT_TOPIC, CLUSTER_NB_AUTH_EVENT_TOPIC,
  CLUSTER_NOTE_EVENT_TOPIC, CursorBook, EVENT_KIND, FileCursorStore, InvalidTopicError, MemoryCursorStore, RecentIds, checkAck, checkEventBody,
  decodeCursorDoc, decodeFastEvent, encodeCursorDoc, eventKeys, isAfter, payloadProblem, planRetention, selectReplay, topicProblem, validateTopic,
  watchFromRevision, type CursorMap, type CursorStore, type StreamPosition,
} from '../actors/events.ts';

const CLUSTER = 'c1';

test('the original topics exist under their original constant names', (t) => {
  t.is(CLUSTER_INTP_EVENT_TOPIC, 'interpreter');
  t.is(CLUSTER_NOTE_EVENT_TOPIC, 'note');
  t.is(CLUSTER_AUTH_EVENT_TOPIC, 'auth');
  t.is(CLUSTER_NB_AUTH_EVENT_TOPIC, 'notebook-auth');
  t.is(CLUSTER_INTP_SETTING_EVENT_TOPIC, 'interpreter-setting');
  for (const topic of BUILTIN_TOPICS) t.is(topicProblem(topic), null);
});

test('topics: 1..64 characters of [A-Za-z0-9_-]', (t) => {
  for (const ok of ['a', 'Z9_-x', 'x'.repeat(64), 'my-topic_2']) t.is(validateTopic(ok), ok);
  for (const bad of ['', 'x'.repeat(65), 'a.b', 'a*', '>', 'a b', 'é', 'a/b', 'a~b']) {
    const err = t.throws(() => validateTopic(bad), { instanceOf: InvalidTopicError }, JSON.stringify(bad));
    t.regex(err!.message, /1\.\.64 characters/);
  }
  t.regex(topicProblem(42)!, /must be a string/);
});

test('payloads are plain data', (t) => {
  for (const ok of [null, 1, -0.5, 'x', true, new Uint8Array([1]), [1, [2]], { a: { b: [null] } }, Object.create(null)]) t.is(payloadProblem(ok), null);
  t.regex(payloadProblem(undefined)!, /undefined/);
  t.regex(payloadProblem({ a: new Date() })!, /Date/);
  t.regex(payloadProblem(new Map())!, /Map/);
  t.regex(payloadProblem(NaN)!, /finite/);
  t.regex(payloadProblem(1n)!, /bigint/);
  t.regex(payloadProblem(() => 1)!, /function/);
  let deep: unknown = 1;
  for (let i = 0; i < 40; i++) deep = [deep];
  t.regex(payloadProblem(deep)!, /nested deeper/);
});

const good = { from: 'srv-a', topic: 'note', id: 'f1', payload: { x: 1 } };

test('event bodies are validated against the subject they arrived on', (t) => {
  t.deepEqual(checkEventBody(good, { topic: 'note' }), { ok: true, body: good });
  t.deepEqual(checkEventBody({ ...good, echo: true }, { topic: 'note' }), { ok: true, body: { ...good, echo: true } });
  // Unknown fields are not carried over.
  t.deepEqual(checkEventBody({ ...good, extra: 1 }, { topic: 'note' }), { ok: true, body: good });
  const cases: [unknown, { topic: string; to?: string }, RegExp][] = [
    [null, { topic: 'note' }, /must be a map/],
    [[good], { topic: 'note' }, /must be a map/],
    [{ ...good, from: '' }, { topic: 'note' }, /from/],
    [{ ...good, from: 7 }, { topic: 'note' }, /from/],
    [{ ...good, topic: 'auth' }, { topic: 'note' }, /does not match/],
    [{ ...good, id: 3 }, { topic: 'note' }, /id/],
    [{ ...good, id: 'x'.repeat(129) }, { topic: 'note' }, /id/],
    [{ from: 'a', topic: 'note', id: 'x' }, { topic: 'note' }, /payload is missing/],
    [{ ...good, payload: { d: new Date() } }, { topic: 'note' }, /payload/],
    [{ ...good, echo: 'yes' }, { topic: 'note' }, /echo/],
    [good, { topic: 'note', to: 'srv-b' }, /to/],
    [{ ...good, to: 'srv-c' }, { topic: 'note', to: 'srv-b' }, /to/],
    [{ ...good, to: 'srv-b' }, { topic: 'note' }, /to/],
  ];
  for (const [raw, expect, re] of cases) {
    const r = checkEventBody(raw, expect);
    t.false(r.ok, JSON.stringify(raw));
    if (!r.ok) t.regex(r.problem, re);
  }
  t.true(checkEventBody({ ...good, to: 'srv-b' }, { topic: 'note', to: 'srv-b' }).ok);
});

test('fast events off the wire: every kind of bad input is a drop reason, never an exception', (t) => {
  const expect = { cluster: CLUSTER, maxBytes: 1024, topic: 'note' };
  const ok = decodeFastEvent(encodeEnvelope(CLUSTER, EVENT_KIND, good), expect);
  t.deepEqual(ok, { ok: true, body: good });
  const reason = (bytes: Uint8Array, e: Parameters<typeof decodeFastEvent>[1] = expect) => {
    const r = decodeFastEvent(bytes, e);
    return r.ok ? 'ok' : r.reason;
  };
  t.is(reason(encodeEnvelope('other', EVENT_KIND, good)), 'wrongCluster');
  t.is(reason(new Uint8Array([0xc1, 0xff, 0x00])), 'malformed');
  t.is(reason(new Uint8Array(0)), 'malformed');
  t.is(reason(encodeEnvelope(CLUSTER, EVENT_KIND, { ...good, payload: 'x'.repeat(2000) })), 'tooLarge');
  t.is(reason(encodeEnvelope(CLUSTER, 'req', good)), 'unknownType');
  t.is(reason(encodeEnvelope(CLUSTER, EVENT_KIND, { ...good, id: null })), 'badShape');
  t.is(reason(encodeEnvelope(CLUSTER, EVENT_KIND, 'just a string')), 'badShape');
  t.is(reason(encodeEnvelope(CLUSTER, EVENT_KIND, { ...good, topic: 'auth' })), 'misrouted');
  t.is(reason(encodeEnvelope(CLUSTER, EVENT_KIND, good), { ...expect, to: 'srv-b' }), 'misrouted');
  t.is(reason('nope' as unknown as Uint8Array), 'malformed');
  // Random bytes never throw.
  let seed = 7;
  for (let i = 0; i < 300; i++) {
    const bytes = new Uint8Array(1 + (i % 40)).map(() => (seed = (seed * 1103515245 + 12345) >>> 0) & 0xff);
    t.notThrows(() => decodeFastEvent(bytes, expect));
  }
});

test('acks are checked against the event id', (t) => {
  t.deepEqual(checkAck({ id: 'e1', ok: true, listeners: 2 }, 'e1'), { id: 'e1', ok: true, listeners: 2 });
  t.deepEqual(checkAck({ id: 'e1', ok: false, reason: 'noListener', message: 'm' }, 'e1'), { id: 'e1', ok: false, reason: 'noListener', message: 'm' });
  t.is(checkAck({ id: 'e2', ok: true, listeners: 2 }, 'e1'), null);
  t.is(checkAck({ id: 'e1', ok: true }, 'e1'), null);
  t.is(checkAck({ id: 'e1', ok: false, reason: 'other', message: 'm' }, 'e1'), null);
  t.is(checkAck('x', 'e1'), null);
  t.is(ACK_KIND, 'eventAck');
});

test('keys: fixed-width ids sort numerically, member ids are escaped', (t) => {
  t.is(eventKeys.id(42), '0000000000000042');
  t.true(eventKeys.id(9) < eventKeys.id(10));
  t.is(eventKeys.broadcastPrefix('note'), 'events/note/');
  t.is(eventKeys.unicastPrefix('127.0.0.1:80', 'note'), 'events-to/127~2e0~2e0~2e1~3a80/note/');
  t.is(eventKeys.unicastPrefix('a/b', 'x'), 'events-to/a~2fb/x/');
  t.is(eventKeys.cursor('srv-a'), 'events-cursor/srv-a');
  t.false(eventKeys.seq.startsWith('events/'), 'the counter is outside every stream');
});

const kv = (key: string, modRevision: number, value: unknown = { from: 'a', topic: 'note', id: key.slice(-4), payload: null }): KeyValue =>
  ({ key, value, createRevision: modRevision, modRevision, version: 1, lease: 0 });

test('stream positions order events by revision, then by key within a batch', (t) => {
  const pos: StreamPosition = { revision: 10, key: 'events/note/0002' };
  t.true(isAfter(pos, 11, 'events/note/0001'));
  t.true(isAfter(pos, 10, 'events/note/0003'));
  t.false(isAfter(pos, 10, 'events/note/0002'));
  t.false(isAfter(pos, 10, 'events/note/0001'));
  t.false(isAfter(pos, 9, 'events/note/0009'));
  const whole: StreamPosition = { revision: 10, key: null };
  t.false(isAfter(whole, 10, 'events/note/9999'));
  t.true(isAfter(whole, 11, 'events/note/0000'));
  t.is(watchFromRevision(pos), 9, 'resume inside the partly processed batch');
  t.is(watchFromRevision(whole), 10);
  t.is(watchFromRevision({ revision: 0, key: 'x' }), 0);
});

test('replay after a resync: retained events after the position, in stream order', (t) => {
  const kvs = [kv('events/note/0005', 12), kv('events/note/0001', 7), kv('events/note/0004', 10), kv('events/note/0003', 10), kv('events/note/0002', 9)];
  const replay = selectReplay(kvs, { revision: 10, key: 'events/note/0003' });
  t.deepEqual(replay.map((k) => k.key), ['events/note/0004', 'events/note/0005']);
  t.deepEqual(selectReplay(kvs, { revision: 0, key: null }).map((k) => k.key), ['events/note/0001', 'events/note/0002', 'events/note/0003', 'events/note/0004', 'events/note/0005']);
  t.deepEqual(selectReplay(kvs, { revision: 12, key: null }), []);
});

test('recent ids dedupe with a bounded memory', (t) => {
  const r = new RecentIds(3);
  for (const id of ['a', 'b', 'c']) r.add(id);
  t.true(r.has('a'));
  r.add('d');
  t.false(r.has('a'), 'the oldest is forgotten');
  t.true(r.has('b') && r.has('c') && r.has('d'));
});

test('retention plan: keeps the newest by count, bytes and revisions, deletes the rest conditionally', (t) => {
  const kvs = Array.from({ length: 10 }, (_, i) => kv(`events/note/${eventKeys.id(i)}`, 100 + Math.floor(i / 2)));
  const size = () => 100;
  const byCount = planRetention(kvs, 200, { keepLast: 4, keepBytes: 1e9 }, size);
  t.deepEqual(byCount.map((d) => d.key), kvs.slice(0, 6).map((k) => k.key), 'oldest six go, in stream order');
  t.deepEqual(byCount.map((d) => d.expectedRevision), kvs.slice(0, 6).map((k) => k.modRevision), 'each delete is conditional on the listed version');
  t.is(planRetention(kvs, 200, { keepLast: 100, keepBytes: 350 }, size).length, 7, 'three fit in 350 bytes');
  t.is(planRetention(kvs, 200, { keepLast: 100, keepBytes: 1 }, size).length, 9, 'the newest is always kept');
  t.is(planRetention(kvs, 105, { keepLast: 100, keepBytes: 1e9, keepRevisions: 2 }, size).length, 8, 'only events younger than 2 revisions (rev 104) are kept');
  t.deepEqual(planRetention(kvs, 200, {}, size), [], 'defaults keep a small stream whole');
  // Deterministic: independent of the order the list came in.
  const shuffled = [...kvs].reverse();
  t.deepEqual(planRetention(shuffled, 200, { keepLast: 4 }, size), byCount);
  // Default size measure is the encoded value.
  const big = [kv('events/x/1', 1, { p: 'x'.repeat(1000) }), kv('events/x/2', 2, { p: 'y'.repeat(1000) })];
  t.deepEqual(planRetention(big, 2, { keepBytes: 1500 }).map((d) => d.key), ['events/x/1']);
});

test('cursor documents round-trip and reject foreign or broken content', (t) => {
  const m: CursorMap = { 'b/note': { revision: 5, key: 'events/note/0001' }, 'u/note': { revision: 3, key: null } };
  const doc = encodeCursorDoc('srv-a', m);
  t.deepEqual(decodeCursorDoc(JSON.parse(JSON.stringify(doc)), 'srv-a', 'test'), m);
  t.throws(() => decodeCursorDoc(doc, 'srv-b', 'test'), { message: /belongs to member "srv-a"/ });
  t.throws(() => decodeCursorDoc({ v: 2 }, 'srv-a', 'test'), { message: /unsupported/ });
  t.throws(() => decodeCursorDoc({ ...doc, streams: { x: [-1, null] } }, 'srv-a', 'test'), { message: /bad position/ });
  t.throws(() => decodeCursorDoc({ ...doc, streams: { x: [1, 2] } }, 'srv-a', 'test'), { message: /bad position/ });
});

test('file cursor store: atomic replace, survives reopen, missing file = no cursor, corrupt file = clear error', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sc-evcur-'));
  const store = new FileCursorStore(join(dir, 'sub'), 'srv/a');
  t.deepEqual(await store.load(), {});
  await store.save({ 'b/note': { revision: 7, key: null } });
  await store.save({ 'b/note': { revision: 9, key: 'events/note/0003' } });
  t.deepEqual(await new FileCursorStore(join(dir, 'sub'), 'srv/a').load(), { 'b/note': { revision: 9, key: 'events/note/0003' } });
  t.deepEqual(await readdir(join(dir, 'sub')), ['events-cursor-srv~2fa.json'], 'no temp file left behind');
  t.truthy(JSON.parse(await readFile(store.path, 'utf8')).streams);
  await writeFile(store.path, '{"v":1,"mem');
  await t.throwsAsync(store.load(), { message: /not valid JSON/ });
});

test('cursor book: write-behind coalesces, keeps the newest, retries failures, flush waits', async (t) => {
  const store = new MemoryCursorStore();
  const book = new CursorBook(store, { 'b/x': { revision: 1, key: null } });
  t.deepEqual(book.get('b/x'), { revision: 1, key: null });
  for (let i = 2; i <= 100; i++) book.set('b/x', { revision: i, key: null });
  await book.flush();
  t.deepEqual(store.cursors, { 'b/x': { revision: 100, key: null } });
  t.true(store.saves <= 3, `coalesced into few saves (${store.saves})`);

  // A store that fails twice, then works: the positions still land.
  let failures = 2;
  const errors: Error[] = [];
  const flaky: CursorStore & { saved: CursorMap | null } = {
    kind: 'flaky',
    saved: null,
    async load() {
      return {};
    },
    async save(c) {
      if (failures-- > 0) throw new Error('disk full');
      this.saved = c;
    },
  };
  const b2 = new CursorBook(flaky, {}, (e) => errors.push(e), 5);
  b2.set('u/y', { revision: 4, key: 'k' });
  await b2.flush(5);
  t.deepEqual(flaky.saved, { 'u/y': { revision: 4, key: 'k' } });
  t.is(errors.length, 2);

  // One that never works: flush gives up with the store's error.
  const dead: CursorStore = { kind: 'dead', load: async () => ({}), save: async () => { throw new Error('gone'); } };
  const b3 = new CursorBook(dead, {}, () => {}, 5);
  b3.set('b/z', { revision: 1, key: null });
  await t.throwsAsync(b3.flush(2), { message: 'gone' });
  b3.close();
  b2.close();
  book.close();
});

test('cursor book: a position set just as a save completes is still stored, without a flush', async (t) => {
  // The set lands d microtasks after the save resolved, for every d around the end of the write loop.
  for (let d = 0; d < 12; d++) {
    let book!: CursorBook;
    const saved: number[] = [];
    const store: CursorStore = {
      kind: 'probe',
      load: async () => ({}),
      save: async (c) => {
        saved.push(c['b/x']!.revision);
        if (saved.length > 1) return;
        let p = Promise.resolve();
        for (let i = 0; i < d; i++) p = p.then(() => {});
        void p.then(() => book.set('b/x', { revision: 2, key: null }));
      },
    };
    book = new CursorBook(store, {});
    book.set('b/x', { revision: 1, key: null });
    // Let the write-behind run on its own (no flush): poll the store, bounded.
    for (let i = 0; i < 100 && saved.at(-1) !== 2; i++) await new Promise((r) => setImmediate(r));
    t.deepEqual(saved, [1, 2], `set ${d} microtasks after the save`);
    book.close();
  }
});
