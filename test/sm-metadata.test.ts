import { deepStrictEqual, strictEqual } from 'node:assert';
import test from 'ava';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { EntryType, type Entry } from '../src/raft/types.ts';
import {
  DEFAULT_MAX_KEY_BYTES,
  DEFAULT_MAX_VALUE_BYTES,
  MetadataStateMachine,
  MAX_SESSION_WINDOW,
  decodeMetaCommand,
  encodeMetaCommand,
  type MetaCommand,
  type MetaResult,
  type MetadataOptions,
  type WatchEvent,
} from '../src/sm/metadata.ts';

let index = 0;
const entry = (data: Uint8Array | null): Entry => ({ index: ++index, term: 1, type: EntryType.Command, data });
const run = (sm: MetadataStateMachine, cmd: MetaCommand) => sm.apply(entry(encodeMetaCommand(cmd)));
const rawPackr = new Packr({ useRecords: false });
const runRaw = (sm: MetadataStateMachine, raw: unknown) => sm.apply(entry(rawPackr.pack(raw)));
/** A new session's id, as the cluster hands it out. */
const open = (sm: MetadataStateMachine): string => {
  const r = run(sm, { op: 'openSession' });
  if (!r.ok || !r.session) throw new Error('openSession failed');
  return r.session;
};

function ok(r: MetaResult) {
  if (!r.ok) throw new Error(`expected ok, got ${r.code}: ${r.message}`);
  return r;
}
function err(r: MetaResult) {
  if (r.ok) throw new Error(`expected an error, got ${JSON.stringify(r)}`);
  return r;
}

test('put creates then updates, tracking create/mod revision and version', (t) => {
  const sm = new MetadataStateMachine();
  const r1 = ok(run(sm, { op: 'put', key: 'svc/a', value: { port: 1 } }));
  t.is(r1.revision, 1);
  t.deepEqual(r1.kv, { key: 'svc/a', value: { port: 1 }, createRevision: 1, modRevision: 1, version: 1, lease: 0 });
  t.is(r1.prev, null);
  run(sm, { op: 'put', key: 'other', value: 'x' });
  const r3 = ok(run(sm, { op: 'put', key: 'svc/a', value: { port: 2 } }));
  t.is(r3.revision, 3);
  t.deepEqual(r3.kv, { key: 'svc/a', value: { port: 2 }, createRevision: 1, modRevision: 3, version: 2, lease: 0 });
  t.deepEqual(r3.prev, r1.kv);
  t.deepEqual(sm.get('svc/a'), r3.kv);
  t.is(sm.get('missing'), undefined);
  t.is(sm.revision, 3);
  t.deepEqual(
    sm.list('').map((kv) => kv.key),
    ['other', 'svc/a'],
  );
});

test('handed-out KeyValues are frozen and never change under the holder', (t) => {
  const sm = new MetadataStateMachine();
  const held = ok(run(sm, { op: 'put', key: 'k', value: { a: { deep: 1 } } })).kv!;
  t.true(Object.isFrozen(held));
  t.throws(() => {
    (held.value as { a: { deep: number } }).a.deep = 2;
  });
  run(sm, { op: 'put', key: 'k', value: { a: { deep: 9 } } });
  run(sm, { op: 'put', key: 'k', value: { b: 1 }, merge: true });
  t.deepEqual(held, { key: 'k', value: { a: { deep: 1 } }, createRevision: 1, modRevision: 1, version: 1, lease: 0 });
  t.deepEqual(sm.get('k')!.value, { a: { deep: 9 }, b: 1 });
});

test('binary values are copied out of the entry bytes', (t) => {
  const sm = new MetadataStateMachine();
  const bytes = encodeMetaCommand({ op: 'put', key: 'bin', value: new Uint8Array([1, 2, 3]) });
  ok(sm.apply(entry(bytes)));
  bytes.fill(0); // the transport may reuse its buffer
  t.deepEqual([...(sm.get('bin')!.value as Uint8Array)], [1, 2, 3]);
});

test('expectedRevision: 0 means absent, otherwise must equal modRevision', (t) => {
  const sm = new MetadataStateMachine();
  ok(run(sm, { op: 'put', key: 'k', value: 1, expectedRevision: 0 }));
  const fail0 = err(run(sm, { op: 'put', key: 'k', value: 2, expectedRevision: 0 }));
  t.is(fail0.code, 'casFailed');
  t.regex(fail0.message, /expected revision 0, actual 1/);
  t.is(fail0.revision, 1);
  const stale = err(run(sm, { op: 'put', key: 'k', value: 2, expectedRevision: 7 }));
  t.is(stale.code, 'casFailed');
  t.regex(stale.message, /expected revision 7, actual 1/);
  t.is(sm.get('k')!.value, 1);
  t.is(sm.revision, 1);
  t.is(ok(run(sm, { op: 'put', key: 'k', value: 3, expectedRevision: 1 })).revision, 2);
  t.is(err(run(sm, { op: 'put', key: 'new', value: 3, expectedRevision: 1 })).code, 'casFailed');
  t.is(sm.get('new'), undefined);
});

test('delete: missing key is a no-op, existing returns prev, cas applies', (t) => {
  const sm = new MetadataStateMachine();
  t.deepEqual(run(sm, { op: 'delete', key: 'nope' }), { ok: true, revision: 0, deleted: 0, prev: null });
  const put = ok(run(sm, { op: 'put', key: 'k', value: 'v' }));
  t.is(err(run(sm, { op: 'delete', key: 'k', expectedRevision: 5 })).code, 'casFailed');
  t.truthy(sm.get('k'));
  const del = ok(run(sm, { op: 'delete', key: 'k', expectedRevision: 1 }));
  t.is(del.deleted, 1);
  t.is(del.revision, 2);
  t.deepEqual(del.prev, put.kv);
  t.is(sm.get('k'), undefined);
  t.is(ok(run(sm, { op: 'delete', key: 'k' })).revision, 2);
  // Recreating starts a new generation.
  t.like(ok(run(sm, { op: 'put', key: 'k', value: 'again' })).kv, { createRevision: 3, version: 1 });
});

test('deletePrefix removes exactly the prefixed keys at one revision', (t) => {
  const sm = new MetadataStateMachine();
  for (const key of ['a/1', 'a/2', 'ab', 'b/1']) run(sm, { op: 'put', key, value: key });
  const events: WatchEvent[] = [];
  sm.onChange((ev) => events.push(ev));
  const r = ok(run(sm, { op: 'deletePrefix', prefix: 'a/' }));
  t.is(r.deleted, 2);
  t.is(r.revision, 5);
  t.deepEqual(
    sm.list('').map((kv) => kv.key),
    ['ab', 'b/1'],
  );
  t.deepEqual(
    events.map((e) => [e.type, e.revision, e.kv.key, e.prev?.value]),
    [
      ['delete', 5, 'a/1', 'a/1'],
      ['delete', 5, 'a/2', 'a/2'],
    ],
  );
  t.deepEqual(run(sm, { op: 'deletePrefix', prefix: 'zzz' }), { ok: true, revision: 5, deleted: 0 });
});

test('merge is a shallow partial update of object values', (t) => {
  const sm = new MetadataStateMachine();
  ok(run(sm, { op: 'put', key: 'm', value: { name: 'a', tags: { x: 1, y: 2 } }, merge: true })); // missing key: stored as is
  const r = ok(run(sm, { op: 'put', key: 'm', value: { tags: { z: 3 }, port: 80 }, merge: true }));
  t.deepEqual(r.kv!.value, { name: 'a', tags: { z: 3 }, port: 80 }); // nested objects replaced, not merged
  t.is(r.kv!.version, 2);
  ok(run(sm, { op: 'put', key: 'm', value: { port: 81 } }));
  t.deepEqual(sm.get('m')!.value, { port: 81 }); // without merge the value is replaced
  run(sm, { op: 'put', key: 's', value: 'scalar' });
  const onScalar = err(run(sm, { op: 'put', key: 's', value: { a: 1 }, merge: true }));
  t.is(onScalar.code, 'notObject');
  t.is(sm.get('s')!.value, 'scalar');
  run(sm, { op: 'put', key: 'arr', value: [1] });
  t.is(err(run(sm, { op: 'put', key: 'arr', value: { a: 1 }, merge: true })).code, 'notObject');
  t.is(err(run(sm, { op: 'put', key: 'm', value: [1, 2], merge: true })).code, 'notObject');
  t.deepEqual(sm.get('m')!.value, { port: 81 });
});

test('size limits: value and key bytes, empty key', (t) => {
  const sm = new MetadataStateMachine({ maxValueBytes: 100, maxKeyBytes: 4 });
  const big = err(run(sm, { op: 'put', key: 'k', value: 'x'.repeat(100) }));
  t.is(big.code, 'tooLarge');
  t.regex(big.message, /100 bytes \(maxValueBytes\)/);
  ok(run(sm, { op: 'put', key: 'k', value: 'x'.repeat(97) })); // 2-byte str8 header + 97 = 99 bytes
  ok(run(sm, { op: 'put', key: 'o', value: { a: 'x'.repeat(60) } }));
  // The merged value is what must fit.
  t.is(err(run(sm, { op: 'put', key: 'o', value: { b: 'y'.repeat(60) }, merge: true })).code, 'tooLarge');
  ok(run(sm, { op: 'put', key: 'ééé'.slice(0, 2), value: 1 })); // 4 UTF-8 bytes
  const longKey = err(run(sm, { op: 'put', key: 'ééé', value: 1 })); // 3 chars, 6 bytes
  t.is(longKey.code, 'tooLarge');
  t.regex(longKey.message, /maxKeyBytes/);
  t.is(err(run(sm, { op: 'incr', key: 'abcde', by: 1 })).code, 'tooLarge');
  t.is(err(run(sm, { op: 'put', key: '', value: 1 })).code, 'badCommand');
  t.is(sm.revision, 3);
  t.is(DEFAULT_MAX_VALUE_BYTES, 512 * 1024);
  t.is(DEFAULT_MAX_KEY_BYTES, 1024);
  const dflt = new MetadataStateMachine();
  t.is(err(run(dflt, { op: 'put', key: 'k', value: new Uint8Array(DEFAULT_MAX_VALUE_BYTES) })).code, 'tooLarge');
  ok(run(dflt, { op: 'put', key: 'k', value: new Uint8Array(DEFAULT_MAX_VALUE_BYTES - 5) }));
});

test('incr adds to numbers, treats missing as 0 and rejects non-numbers and overflow', (t) => {
  const sm = new MetadataStateMachine();
  t.is(ok(run(sm, { op: 'incr', key: 'n', by: 5 })).kv!.value, 5);
  const r = ok(run(sm, { op: 'incr', key: 'n', by: -2 }));
  t.like(r.kv, { value: 3, version: 2, createRevision: 1, modRevision: 2 });
  t.is(r.prev!.value, 5);
  run(sm, { op: 'put', key: 's', value: 'str' });
  const notNum = err(run(sm, { op: 'incr', key: 's', by: 1 }));
  t.is(notNum.code, 'badCommand');
  t.regex(notNum.message, /not a number/);
  run(sm, { op: 'put', key: 'max', value: Number.MAX_SAFE_INTEGER });
  t.is(err(run(sm, { op: 'incr', key: 'max', by: 1 })).code, 'badCommand');
  t.is(err(runRaw(sm, { op: 'incr', key: 'n', by: 1.5 })).code, 'badCommand');
  t.is(sm.get('n')!.value, 3);
});

test('leaseGrant uses the new revision as id and validates ttl', (t) => {
  const sm = new MetadataStateMachine();
  run(sm, { op: 'put', key: 'x', value: 1 });
  t.deepEqual(run(sm, { op: 'leaseGrant', ttlMs: 5000 }), { ok: true, revision: 2, leaseId: 2 });
  t.deepEqual(sm.lease(2), { id: 2, ttlMs: 5000, keys: [] });
  for (const ttlMs of [0, -1, 1.5, 24 * 60 * 60 * 1000 + 1]) t.is(err(run(sm, { op: 'leaseGrant', ttlMs })).code, 'badCommand');
  ok(run(sm, { op: 'leaseGrant', ttlMs: 24 * 60 * 60 * 1000 }));
  t.deepEqual(
    sm.leases().map((l) => l.id),
    [2, 3],
  );
  t.is(sm.lease(99), undefined);
});

test('put attaches keys to leases; absent lease keeps, 0 detaches, unknown is noLease', (t) => {
  const sm = new MetadataStateMachine();
  const l1 = ok(run(sm, { op: 'leaseGrant', ttlMs: 1000 })).leaseId!;
  const l2 = ok(run(sm, { op: 'leaseGrant', ttlMs: 2000 })).leaseId!;
  const missing = err(run(sm, { op: 'put', key: 'k', value: 1, lease: 42 }));
  t.is(missing.code, 'noLease');
  t.is(sm.get('k'), undefined);
  t.is(ok(run(sm, { op: 'put', key: 'k', value: 1, lease: l1 })).kv!.lease, l1);
  t.deepEqual(sm.lease(l1)!.keys, ['k']);
  t.is(ok(run(sm, { op: 'put', key: 'k', value: { a: 1 } })).kv!.lease, l1); // keeps
  t.is(ok(run(sm, { op: 'incr', key: 'n', by: 1 })).kv!.lease, 0);
  t.is(ok(run(sm, { op: 'put', key: 'k', value: 2, lease: l2 })).kv!.lease, l2); // moves
  t.deepEqual(sm.lease(l1)!.keys, []);
  t.deepEqual(sm.lease(l2)!.keys, ['k']);
  t.is(ok(run(sm, { op: 'put', key: 'k', value: 3, lease: 0 })).kv!.lease, 0); // detaches
  t.deepEqual(sm.lease(l2)!.keys, []);
  run(sm, { op: 'put', key: 'j', value: 3, lease: l2 });
  run(sm, { op: 'delete', key: 'j' });
  t.deepEqual(sm.lease(l2)!.keys, []);
});

test('leaseRevoke deletes attached keys at one revision and removes the lease', (t) => {
  const sm = new MetadataStateMachine();
  const id = ok(run(sm, { op: 'leaseGrant', ttlMs: 1000 })).leaseId!;
  for (const key of ['s/b', 's/a']) run(sm, { op: 'put', key, value: key, lease: id });
  run(sm, { op: 'put', key: 'keep', value: 1 });
  const events: WatchEvent[] = [];
  sm.onChange((ev) => events.push(ev));
  const r = ok(run(sm, { op: 'leaseRevoke', id }));
  t.is(r.deleted, 2);
  t.is(r.revision, 5);
  t.is(sm.lease(id), undefined);
  t.deepEqual(
    sm.list('').map((kv) => kv.key),
    ['keep'],
  );
  t.deepEqual(
    events.map((e) => [e.type, e.revision, e.kv.key, e.kv.modRevision, e.prev!.lease]),
    [
      ['delete', 5, 's/a', 5, id],
      ['delete', 5, 's/b', 5, id],
    ],
  );
  t.is(err(run(sm, { op: 'leaseRevoke', id })).code, 'noLease');
  // A lease without keys still changes the store when revoked.
  const empty = ok(run(sm, { op: 'leaseGrant', ttlMs: 1 })).leaseId!;
  t.is(ok(run(sm, { op: 'leaseRevoke', id: empty })).revision, 7);
  t.deepEqual(sm.leases(), []);
});

test('a retried session seq is applied once and returns the same result', (t) => {
  const sm = new MetadataStateMachine();
  const c1 = open(sm);
  const c2 = open(sm);
  t.not(c1, c2);
  const cmd: MetaCommand = { session: { client: c1, seq: 1 }, op: 'incr', key: 'n', by: 1 };
  const first = run(sm, cmd);
  t.is(run(sm, cmd), first);
  t.deepEqual(run(sm, cmd), first);
  t.is(sm.get('n')!.value, 1);
  t.is(sm.revision, 1);
  ok(run(sm, { session: { client: c1, seq: 2 }, op: 'incr', key: 'n', by: 1 }));
  ok(run(sm, { session: { client: c2, seq: 1 }, op: 'incr', key: 'n', by: 1 })); // independent seq space
  t.is(sm.get('n')!.value, 3);
  // Failures are remembered too: a retried failed cas must not suddenly succeed.
  const cas: MetaCommand = { session: { client: c1, seq: 3 }, op: 'put', key: 'n', value: 0, expectedRevision: 0 };
  t.is(err(run(sm, cas)).code, 'casFailed');
  run(sm, { op: 'delete', key: 'n' });
  t.is(err(run(sm, cas)).code, 'casFailed');
  t.is(sm.get('n'), undefined);
});

test('an acknowledged session seq is refused as stale (sessionStale) without applying', (t) => {
  const sm = new MetadataStateMachine();
  const c = open(sm);
  run(sm, { session: { client: c, seq: 5 }, op: 'put', key: 'k', value: 'new' }); // no ack: sequential, acknowledges 4
  t.deepEqual(run(sm, { session: { client: c, seq: 4 }, op: 'put', key: 'k', value: 'old' }), {
    ok: false,
    code: 'sessionStale',
    message: `seq 4 of session ${c} was acknowledged (ack 4): a late duplicate, not applied again`,
    revision: 1,
  });
  t.is(sm.get('k')!.value, 'new');
  t.is(sm.revision, 1);
});

test('a session never opened, or evicted as least recently used, is refused (sessionExpired), never applied twice', (t) => {
  const sm = new MetadataStateMachine({ maxSessions: 2 });
  const incr = (client: string) => run(sm, { session: { client, seq: 1 }, op: 'incr', key: 'n', by: 1 });
  t.is(err(incr('made-up')).code, 'sessionExpired');
  const a = open(sm);
  const b = open(sm);
  incr(a);
  incr(b);
  incr(a); // retry touches a
  const c = open(sm); // evicts b
  incr(c);
  t.is(sm.get('n')!.value, 3);
  incr(a); // still deduplicated
  t.is(sm.get('n')!.value, 3);
  // b's result is gone: its retry is refused instead of applied a second time.
  t.is(err(incr(b)).code, 'sessionExpired');
  t.is(sm.get('n')!.value, 3);
  // A retried open makes another session; it never revives an old id.
  t.not(open(sm), b);
});

test('a session keeps every result until the client acknowledges it, however many later seqs complete', (t) => {
  // Issue 18: the window used to drop the oldest result (and advance ack) after 1,024 later
  // writes, so a slow retry of an applied write was refused as if it had not been applied.
  const sm = new MetadataStateMachine();
  const c = open(sm);
  const put = (seq: number, ack: number) => run(sm, { session: { client: c, seq, ack }, op: 'put', key: `k${seq}`, value: seq });
  const first = ok(put(1, 0)); // applied; its reply is lost
  for (let seq = 2; seq <= MAX_SESSION_WINDOW; seq++) ok(put(seq, 0)); // all in (ack 0, 1024]
  t.deepEqual(put(1, 0), first, 'the retry finds its result');
  // Beyond the window the state machine refuses, and applies nothing.
  const over = err(put(MAX_SESSION_WINDOW + 1, 0));
  t.is(over.code, 'sessionWindow');
  t.is(sm.get(`k${MAX_SESSION_WINDOW + 1}`), undefined);
  // Once the client acknowledges 1, the window moves on.
  ok(put(MAX_SESSION_WINDOW + 1, 1));
  t.is(err(put(1, 0)).code, 'sessionStale'); // a late duplicate of the first attempt
  t.is(sm.get('k1')!.version, 1);
});

test('batch applies in order at one revision and returns per-op results', (t) => {
  const sm = new MetadataStateMachine();
  run(sm, { op: 'put', key: 'gone', value: 1 });
  const events: WatchEvent[] = [];
  sm.onChange((ev) => events.push(ev));
  const r = ok(
    run(sm, {
      op: 'batch',
      ops: [
        { op: 'leaseGrant', ttlMs: 100 },
        { op: 'put', key: 'a', value: 1, lease: 2 }, // sees the grant made earlier in the batch
        { op: 'incr', key: 'a', by: 1 },
        { op: 'delete', key: 'gone' },
        { op: 'delete', key: 'never' },
      ],
    }),
  );
  t.is(r.revision, 2);
  t.is(r.results!.length, 5);
  t.true(r.results!.every((x) => x.ok && x.revision === 2));
  t.is((r.results![0] as { leaseId: number }).leaseId, 2);
  t.like(sm.get('a'), { value: 2, version: 2, createRevision: 2, modRevision: 2, lease: 2 });
  t.deepEqual(
    events.map((e) => [e.type, e.kv.key, e.revision]),
    [
      ['put', 'a', 2],
      ['put', 'a', 2],
      ['delete', 'gone', 2],
    ],
  );
  t.is(sm.revision, 2);
  t.deepEqual(run(sm, { op: 'batch', ops: [] }), { ok: true, revision: 2, results: [] });
});

test('a failing batch applies nothing and reports the first failure', (t) => {
  const sm = new MetadataStateMachine();
  const lease = ok(run(sm, { op: 'leaseGrant', ttlMs: 100 })).leaseId!;
  run(sm, { op: 'put', key: 'held', value: 'v', lease });
  const before = sm.digest();
  const events: WatchEvent[] = [];
  sm.onChange((ev) => events.push(ev));
  const r = err(
    run(sm, {
      op: 'batch',
      ops: [
        { op: 'put', key: 'a', value: 1 },
        { op: 'leaseRevoke', id: lease },
        { op: 'leaseGrant', ttlMs: 5 },
        { op: 'put', key: 'b', value: 1, expectedRevision: 9 },
        { op: 'put', key: 'c', value: 1, lease: 999 },
      ],
    }),
  );
  t.is(r.code, 'casFailed');
  t.regex(r.message, /^op 3: /);
  t.is(r.revision, 2);
  t.is(sm.revision, 2);
  t.is(sm.get('a'), undefined);
  t.deepEqual(sm.leases(), [{ id: lease, ttlMs: 100, keys: ['held'] }]);
  t.deepEqual(events, []);
  t.is(sm.digest(), before);
  // Two grants in one batch would share an id.
  t.is(err(run(sm, { op: 'batch', ops: [{ op: 'leaseGrant', ttlMs: 1 }, { op: 'leaseGrant', ttlMs: 1 }] })).code, 'badCommand');
  t.is(sm.digest(), before);
});

test('batch ops carry no session and cannot nest', (t) => {
  const sm = new MetadataStateMachine();
  const inner = err(runRaw(sm, { op: 'batch', ops: [{ op: 'put', key: 'a', value: 1, session: { client: 'c', seq: 1 } }] }));
  t.is(inner.code, 'badCommand');
  t.regex(inner.message, /op 0: batch ops carry no session/);
  const nested = err(runRaw(sm, { op: 'batch', ops: [{ op: 'batch', ops: [] }] }));
  t.regex(nested.message, /cannot be nested/);
  t.regex(err(runRaw(sm, { op: 'batch', ops: [{ op: 'put', key: 'a', value: 1 }, { op: 'put' }] })).message, /op 1: /);
  t.is(sm.revision, 0);
  t.is(sm.get('a'), undefined);
});

test('onChange and onApplied fire in log order and can be unsubscribed', (t) => {
  const sm = new MetadataStateMachine();
  const seen: string[] = [];
  const offChange = sm.onChange((ev) => seen.push(`${ev.type}:${ev.kv.key}@${ev.revision}:${sm.get(ev.kv.key)?.modRevision ?? '-'}`));
  const offApplied = sm.onApplied((i, r) => seen.push(`applied:${i}:${r.ok}:${r.revision}`));
  const first = index + 1;
  run(sm, { op: 'put', key: 'a', value: 1 });
  sm.apply(entry(null));
  run(sm, { op: 'delete', key: 'a' });
  run(sm, { op: 'put', key: 'a', value: 1, expectedRevision: 5 });
  t.deepEqual(seen, [
    'put:a@1:1',
    `applied:${first}:true:1`,
    `applied:${first + 1}:true:1`,
    'delete:a@2:-',
    `applied:${first + 2}:true:2`,
    `applied:${first + 3}:false:2`,
  ]);
  offChange();
  offApplied();
  run(sm, { op: 'put', key: 'b', value: 1 });
  t.is(seen.length, 6);
});

test('changesSince filters by revision and prefix and reports compaction', (t) => {
  const sm = new MetadataStateMachine({ historySize: 4 });
  run(sm, { op: 'put', key: 'a/1', value: 1 }); // rev 1
  run(sm, { op: 'put', key: 'b/1', value: 1 }); // rev 2
  run(sm, { op: 'leaseGrant', ttlMs: 10 }); // rev 3, no event
  run(sm, { op: 'put', key: 'a/2', value: 2 }); // rev 4
  const all = sm.changesSince(0, '');
  t.deepEqual(
    'events' in all ? all.events.map((e) => [e.revision, e.kv.key]) : all,
    [
      [1, 'a/1'],
      [2, 'b/1'],
      [4, 'a/2'],
    ],
  );
  const a = sm.changesSince(1, 'a/');
  t.deepEqual('events' in a ? a.events.map((e) => e.kv.key) : a, ['a/2']);
  t.deepEqual(sm.changesSince(4, ''), { events: [] });
  t.deepEqual(sm.changesSince(100, ''), { events: [] });
  run(sm, { op: 'deletePrefix', prefix: 'a/' }); // rev 5: two events; history now holds 2,4,5,5 → rev 1 dropped
  t.deepEqual(sm.changesSince(0, ''), { compacted: true, compactRevision: 1 });
  const since1 = sm.changesSince(1, '');
  t.deepEqual('events' in since1 ? since1.events.map((e) => `${e.type}:${e.revision}`) : since1, ['put:2', 'put:4', 'delete:5', 'delete:5']);
  run(sm, { op: 'put', key: 'c', value: 1 }); // rev 6 drops rev 2
  t.deepEqual(sm.changesSince(1, 'zzz'), { compacted: true, compactRevision: 2 });
  t.false('compacted' in sm.changesSince(2, ''));
});

test('after restore the history is empty and older revisions are compacted', (t) => {
  const a = new MetadataStateMachine();
  run(a, { op: 'put', key: 'k', value: 1 });
  run(a, { op: 'put', key: 'k', value: 2 });
  const b = new MetadataStateMachine();
  b.restore(a.snapshot());
  t.deepEqual(b.changesSince(1, ''), { compacted: true, compactRevision: 2 });
  t.deepEqual(b.changesSince(2, ''), { events: [] });
  run(b, { op: 'put', key: 'k', value: 3 });
  const since = b.changesSince(2, '');
  t.deepEqual('events' in since ? since.events.map((e) => e.kv.value) : since, [3]);
});

test('snapshot / restore round trip preserves everything and later behaviour', (t) => {
  const a = new MetadataStateMachine({ maxSessions: 3 });
  const lease = ok(run(a, { op: 'leaseGrant', ttlMs: 3000 })).leaseId!;
  run(a, { op: 'put', key: 'z', value: { n: 1, bin: new Uint8Array([7]) }, lease });
  run(a, { op: 'put', key: 'a', value: [1, 'two', null, true] });
  const c = open(a);
  const sessioned: MetaCommand = { session: { client: c, seq: 3, ack: 1 }, op: 'incr', key: 'ctr', by: 10 };
  const remembered = run(a, sessioned);
  const b = new MetadataStateMachine({ maxSessions: 3 });
  run(b, { op: 'put', key: 'junk', value: 'replaced by restore' });
  b.restore(a.snapshot());
  t.is(b.digest(), a.digest());
  t.deepEqual(Buffer.from(b.snapshot()), Buffer.from(a.snapshot()));
  t.deepEqual(b.list(''), a.list(''));
  t.deepEqual(b.leases(), a.leases());
  t.is(b.revision, a.revision);
  t.is(b.get('junk'), undefined);
  t.true(Object.isFrozen(b.get('a')!.value));
  t.deepEqual(run(b, sessioned), remembered); // session survived: deduplicated
  t.is(b.get('ctr')!.value, 10);
  const later: MetaCommand[] = [
    { op: 'leaseRevoke', id: lease },
    { op: 'put', key: 'a', value: { x: 1 }, expectedRevision: 3 },
    { op: 'leaseGrant', ttlMs: 5 },
    { session: { client: c, seq: 2, ack: 1 }, op: 'incr', key: 'ctr', by: 1 },
    { op: 'openSession' },
  ];
  for (const cmd of later) t.deepEqual(run(b, cmd), run(a, cmd));
  t.is(b.digest(), a.digest());
  run(b, { op: 'put', key: 'a', value: 0 });
  t.not(b.digest(), a.digest());
});

test('digest depends on state, not on insertion order', (t) => {
  const a = new MetadataStateMachine();
  const b = new MetadataStateMachine();
  run(a, { op: 'batch', ops: [{ op: 'put', key: 'x', value: 1 }, { op: 'put', key: 'y', value: 2 }] });
  run(b, { op: 'batch', ops: [{ op: 'put', key: 'y', value: 2 }, { op: 'put', key: 'x', value: 1 }] });
  t.is(a.digest(), b.digest());
  t.regex(a.digest(), /^[0-9a-f]{64}$/);
});

test('restore rejects a bad snapshot and keeps the current state', (t) => {
  const sm = new MetadataStateMachine();
  run(sm, { op: 'put', key: 'k', value: 1 });
  const before = sm.digest();
  t.throws(() => sm.restore(new Uint8Array([0xc1])), { message: /metadata snapshot/ });
  t.throws(() => sm.restore(rawPackr.pack({ v: 2 })), { message: /unsupported format/ });
  t.throws(() => sm.restore(rawPackr.pack({ v: 1, revision: 1, kvs: [['k', 1, 1, 1, 1, 7]], leases: [], sessions: [] })), {
    message: /missing lease 7/,
  });
  // Version 2: truncated, or a record missing.
  const other = new MetadataStateMachine();
  for (let i = 0; i < 300; i++) run(other, { op: 'put', key: `k${String(i).padStart(3, '0')}`, value: i });
  const pieces = [...other.snapshotPieces()];
  t.true(pieces.length > 2);
  t.throws(() => sm.restore(pieces.slice(0, -1)), { message: /ends before all key-values/ });
  const whole = other.snapshot();
  t.throws(() => sm.restore(whole.subarray(0, whole.length - 3)), { message: /short of a record|undecodable/ });
  t.throws(() => sm.restore([...pieces, pieces[1]!]), { message: /counts do not match/ });
  t.is(sm.digest(), before);
});

test('malformed entries yield badCommand and the machine keeps working', (t) => {
  const sm = new MetadataStateMachine();
  t.deepEqual(sm.apply(entry(null)), { ok: true, revision: 0 });
  const bad: unknown[] = [
    'just a string',
    [1, 2],
    { op: 'explode', key: 'k' },
    { op: 'put', key: 'k' }, // value missing
    { op: 'put', key: 7, value: 1 },
    { op: 'put', key: 'k', value: new Date(0) },
    { op: 'put', key: 'k', value: { nested: [2n ** 62n] } }, // unsafe int64 stays bigint,
    { op: 'put', key: 'k', value: Number.NaN },
    { op: 'put', key: 'k', value: 1, lease: -1 },
    { op: 'put', key: 'k', value: 1, merge: 'yes' },
    { op: 'delete', key: 'k', expectedRevision: 'x' },
    { op: 'deletePrefix' },
    { op: 'leaseRevoke', id: 0 },
    { op: 'batch', ops: 'nope' },
    { op: 'put', key: 'k', value: 1, session: { client: 'c', seq: -1 } },
    { op: 'put', key: 'k', value: 1, session: { seq: 1 } },
  ];
  for (const raw of bad) {
    const r = err(runRaw(sm, raw));
    t.is(r.code, 'badCommand', JSON.stringify(raw, (_k, v) => (typeof v === 'bigint' ? String(v) : v)));
    t.regex(r.message, /^malformed command: /);
  }
  const deep: unknown = Array.from({ length: 100 }).reduce((acc) => [acc], 1);
  t.regex(err(runRaw(sm, { op: 'put', key: 'k', value: deep })).message, /nested deeper/);
  for (const bytes of [new Uint8Array([0xc1]), new Uint8Array([0x92]), new Uint8Array(0)]) {
    t.is(err(sm.apply(entry(bytes))).code, 'badCommand');
  }
  t.is(sm.revision, 0);
  t.is(ok(run(sm, { op: 'put', key: 'k', value: 'fine' })).revision, 1);
});

test('decodeMetaCommand validates and normalizes', (t) => {
  const cmd: MetaCommand = { session: { client: 'c', seq: 9 }, op: 'put', key: 'k', value: { a: [1] }, lease: 3, expectedRevision: 0, merge: true };
  t.deepEqual(decodeMetaCommand(encodeMetaCommand(cmd)), cmd);
  t.deepEqual(decodeMetaCommand(rawPackr.pack({ op: 'delete', key: 'k', extra: 1, expectedRevision: undefined })), { op: 'delete', key: 'k' });
  t.throws(() => decodeMetaCommand(rawPackr.pack({ op: 'incr', key: 'k' })), { message: /^malformed command: by must be a safe integer/ });
  t.throws(() => decodeMetaCommand(new Uint8Array([0x82, 0xa1])), { message: /^malformed command: undecodable/ });
  t.throws(() => decodeMetaCommand(new Uint8Array([0xc1])), { message: /^malformed command: not an object/ });
  // Safe int64s from other encoders decode as plain numbers.
  t.deepEqual(decodeMetaCommand(rawPackr.pack({ op: 'incr', key: 'k', by: 2n ** 40n })), { op: 'incr', key: 'k', by: 2 ** 40 });
});

// ---- property: a replica restored from a snapshot at any point behaves exactly like one that applied everything.

const keyArb = fc.constantFrom('a', 'b', 'a/x', 'a/y', 'c');
const valueArb = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom('s', null, true),
  fc.dictionary(fc.constantFrom('p', 'q', 'r'), fc.integer({ min: 0, max: 3 }), { maxKeys: 2 }),
  fc.uint8Array({ maxLength: 3 }),
);
const revArb = fc.option(fc.integer({ min: 0, max: 8 }), { nil: undefined });
const leaseIdArb = fc.integer({ min: 1, max: 12 });
const opArb: fc.Arbitrary<MetaCommand> = fc.oneof(
  fc.record(
    { op: fc.constant('put' as const), key: keyArb, value: valueArb, lease: fc.option(fc.oneof(fc.constant(0), leaseIdArb), { nil: undefined }), expectedRevision: revArb, merge: fc.boolean() },
    { requiredKeys: ['op', 'key', 'value'] },
  ),
  fc.record({ op: fc.constant('delete' as const), key: keyArb, expectedRevision: revArb }, { requiredKeys: ['op', 'key'] }),
  fc.record({ op: fc.constant('deletePrefix' as const), prefix: fc.constantFrom('a', 'a/', 'zz') }),
  fc.record({ op: fc.constant('incr' as const), key: keyArb, by: fc.integer({ min: -3, max: 3 }) }),
  fc.record({ op: fc.constant('leaseGrant' as const), ttlMs: fc.integer({ min: 1, max: 5000 }) }),
  fc.record({ op: fc.constant('leaseRevoke' as const), id: leaseIdArb }),
);
const cmdArb: fc.Arbitrary<MetaCommand | 'garbage'> = fc
  .tuple(
    fc.oneof({ weight: 5, arbitrary: opArb }, { weight: 1, arbitrary: fc.array(opArb, { maxLength: 3 }).map((ops): MetaCommand => ({ op: 'batch', ops })) }),
    // Session ids the state machine hands out are s1, s2, ...; s9 is never opened in a short run.
    fc.option(fc.record({ client: fc.constantFrom('s1', 's2', 's3', 's9'), seq: fc.integer({ min: 0, max: 6 }) }), { nil: undefined }),
    fc.integer({ min: 0, max: 30 }),
  )
  .map(([cmd, session, dice]): MetaCommand | 'garbage' => (dice === 0 ? 'garbage' : dice < 4 ? { op: 'openSession' } : session ? { session, ...cmd } : cmd));

test('property: restoring a snapshot at any point then applying the rest converges', (t) => {
  fc.assert(
    fc.property(
      fc.array(cmdArb, { maxLength: 40 }),
      fc.nat(),
      fc.constantFrom<MetadataOptions>({}, { maxSessions: 2, historySize: 3 }, { maxValueBytes: 12 }),
      (cmds, cut, opts) => {
        const datas = cmds.map((c) => (c === 'garbage' ? new Uint8Array([0x81, 0xc1]) : encodeMetaCommand(c)));
        const k = cut % (datas.length + 1);
        const straight = new MetadataStateMachine(opts);
        const prefixResults = datas.slice(0, k).map((d, i) => straight.apply({ index: i + 1, term: 1, type: EntryType.Command, data: d }));
        const restored = new MetadataStateMachine(opts);
        restored.restore(straight.snapshot());
        strictEqual(restored.digest(), straight.digest());
        for (let i = k; i < datas.length; i++) {
          const e: Entry = { index: i + 1, term: 1, type: EntryType.Command, data: datas[i]! };
          const want = straight.apply(e);
          deepStrictEqual(restored.apply(e), want);
        }
        strictEqual(restored.digest(), straight.digest());
        strictEqual(restored.revision, straight.revision);
        deepStrictEqual(restored.list(''), straight.list(''));
        deepStrictEqual(restored.leases(), straight.leases());
        // Sanity on the invariants the suffix relies on.
        for (const r of prefixResults) strictEqual(r.revision <= straight.revision, true);
        for (const l of straight.leases()) for (const key of l.keys) strictEqual(straight.get(key)!.lease, l.id);
      },
    ),
    { numRuns: 300 },
  );
  t.pass();
});

test('property: replicas applying the same log agree on results and snapshot bytes', (t) => {
  fc.assert(
    fc.property(fc.array(cmdArb, { maxLength: 30 }), (cmds) => {
      const a = new MetadataStateMachine({ maxSessions: 2 });
      const b = new MetadataStateMachine({ maxSessions: 2 });
      for (const [i, c] of cmds.entries()) {
        const data = c === 'garbage' ? new Uint8Array([0xff]) : encodeMetaCommand(c);
        const e: Entry = { index: i + 1, term: 1, type: EntryType.Command, data };
        deepStrictEqual(a.apply(e), b.apply({ ...e, data: data.slice() }));
      }
      deepStrictEqual(Buffer.from(a.snapshot()), Buffer.from(b.snapshot()));
    }),
  );
  t.pass();
});

test('sessions with ack: writes in flight together may apply in any order, each exactly once', (t) => {
  const sm = new MetadataStateMachine();
  let index = 0;
  const apply = (cmd: MetaCommand) => sm.apply({ index: ++index, term: 1, type: 1, data: encodeMetaCommand(cmd) });
  const c = open(sm);
  const s = open(sm);
  const incr = (seq: number, ack: number) => apply({ op: 'incr', key: 'n', by: 1, session: { client: c, seq, ack } });
  // seqs 1..3 in flight (ack 0); they arrive 3, 1, 2, then retries of all three.
  const r3 = incr(3, 0);
  const r1 = incr(1, 0);
  const r2 = incr(2, 0);
  t.true(r1.ok && r2.ok && r3.ok);
  t.deepEqual(incr(1, 0), r1);
  t.deepEqual(incr(3, 0), r3);
  t.is(sm.get('n')?.value, 3, 'each applied once');
  // The client acknowledges through 3: a late duplicate of 2 is refused, not applied again.
  t.true(incr(4, 3).ok);
  const late = incr(2, 3);
  t.false(late.ok);
  t.is(sm.get('n')?.value, 4);
  // Without ack a client is sequential: a lower seq than the last is refused.
  const seqOnly = (seq: number) => apply({ op: 'incr', key: 'm', by: 1, session: { client: s, seq } });
  t.true(seqOnly(5).ok);
  t.false(seqOnly(4).ok);
  t.deepEqual(seqOnly(5), seqOnly(5));
  t.is(sm.get('m')?.value, 1);
  // Survives a snapshot.
  const copy = new MetadataStateMachine();
  copy.restore(sm.snapshot());
  t.is(copy.digest(), sm.digest());
});

test('a command decoded for its proposal applies exactly as the same bytes decoded at apply', (t) => {
  const leader = new MetadataStateMachine();
  const follower = new MetadataStateMachine();
  const cmds: MetaCommand[] = [
    { op: 'openSession' },
    { op: 'put', key: 'a', value: { n: 1 } },
    { op: 'put', key: 'a', value: { n: 2 }, expectedRevision: 1 },
    { op: 'put', key: 'b', value: [1, 'x'], session: { client: 's1', seq: 1 } },
    { op: 'put', key: 'b', value: [1, 'x'], session: { client: 's1', seq: 1 } },
    { op: 'delete', key: 'a' },
  ];
  for (const cmd of cmds) {
    const e = entry(encodeMetaCommand(cmd));
    leader.decodeForProposal(e.data!);
    t.deepEqual(leader.apply(e), follower.apply({ ...e, data: new Uint8Array(e.data!) }));
    // Used once: applying the same bytes object again decodes them afresh (same outcome as the follower).
    const again = { ...e, index: ++index };
    t.deepEqual(leader.apply(again), follower.apply({ ...again, data: new Uint8Array(e.data!) }));
  }
  t.deepEqual(leader.snapshot(), follower.snapshot());
  t.throws(() => leader.decodeForProposal(new Uint8Array([0xc1])), { message: /malformed command/ });
});

test('listPage: keys after `after`, at most `limit`, under `maxBytes` but never empty, and whether more remain', (t) => {
  const sm = new MetadataStateMachine();
  for (const k of ['p/a', 'p/b', 'p/c', 'p/d', 'q/x']) run(sm, { op: 'put', key: k, value: k === 'p/c' ? 'y'.repeat(5000) : 'v' });
  const keys = (r: { kvs: { key: string }[] }) => r.kvs.map((kv) => kv.key);
  const big = 1 << 20;
  t.deepEqual(sm.listPage('p/', { limit: 10, maxBytes: big }), { kvs: sm.list('p/'), more: false });
  let r = sm.listPage('p/', { limit: 2, maxBytes: big });
  t.deepEqual([keys(r), r.more], [['p/a', 'p/b'], true]);
  r = sm.listPage('p/', { after: 'p/b', limit: 2, maxBytes: big });
  t.deepEqual([keys(r), r.more], [['p/c', 'p/d'], false]);
  // The byte budget ends the page before the 5 kB value; a page with only that value still holds it.
  r = sm.listPage('p/', { limit: 10, maxBytes: 1000 });
  t.deepEqual([keys(r), r.more], [['p/a', 'p/b'], true]);
  r = sm.listPage('p/', { after: 'p/b', limit: 10, maxBytes: 1000 });
  t.deepEqual([keys(r), r.more], [['p/c'], true]);
  // `after` need not be a key; after the last key nothing remains.
  t.deepEqual(keys(sm.listPage('p/', { after: 'p/bb', limit: 1, maxBytes: big })), ['p/c']);
  t.deepEqual(sm.listPage('p/', { after: 'p/d', limit: 5, maxBytes: big }), { kvs: [], more: false });
});

test('snapshotPieces holds the state of the moment it was called while later entries apply', (t) => {
  const sm = new MetadataStateMachine();
  const c = open(sm);
  const lease = ok(run(sm, { op: 'leaseGrant', ttlMs: 1000 })).leaseId!;
  for (let i = 0; i < 1000; i++) run(sm, { op: 'put', key: `k/${String(i).padStart(4, '0')}`, value: 'v'.repeat(i % 50), lease: i % 7 === 0 ? lease : 0 });
  ok(run(sm, { session: { client: c, seq: 1 }, op: 'incr', key: 'n', by: 1 }));
  const atCapture = sm.digest();
  const listed = sm.list('');
  const pieces = sm.snapshotPieces()[Symbol.iterator]();
  const taken: Uint8Array[] = [pieces.next().value as Uint8Array];
  // Changes of every kind while the pieces are still being encoded.
  run(sm, { op: 'deletePrefix', prefix: 'k/00' });
  for (let i = 0; i < 1000; i += 3) run(sm, { op: 'put', key: `k/${String(i).padStart(4, '0')}`, value: 'changed' });
  run(sm, { op: 'put', key: 'new', value: 1 });
  run(sm, { op: 'leaseRevoke', id: lease });
  ok(run(sm, { session: { client: c, seq: 2 }, op: 'incr', key: 'n', by: 1 })); // acknowledges seq 1
  open(sm);
  for (let p = pieces.next(); !p.done; p = pieces.next()) taken.push(p.value);
  const copy = new MetadataStateMachine();
  copy.restore(taken);
  t.is(copy.digest(), atCapture);
  t.deepEqual(copy.list(''), listed);
  // The session as captured: seq 1's result is still there in the copy.
  t.is(copy.apply(entry(encodeMetaCommand({ session: { client: c, seq: 1 }, op: 'incr', key: 'n', by: 1 }))).revision, listed.find((kv) => kv.key === 'n')!.modRevision);
  t.not(sm.digest(), atCapture);
});

test('a large state is encoded and restored in bounded steps', (t) => {
  const sm = new MetadataStateMachine();
  const value = 'x'.repeat(256);
  for (let i = 0; i < 20_000; i++) run(sm, { op: 'put', key: `load/${i}`, value });
  const pieces = [...sm.snapshotPieces()];
  t.true(pieces.length >= 20_000 / 128, `${pieces.length} pieces`);
  t.true(Math.max(...pieces.map((p) => p.length)) < 64 * 1024, 'each piece is one small batch');
  const copy = new MetadataStateMachine();
  let steps = 0;
  for (const _ of copy.restoreSteps(pieces)) steps++;
  t.true(steps >= 20_000 / 128, `${steps} steps`);
  t.is(copy.digest(), sm.digest());
  t.is(copy.size, 20_000);
});
