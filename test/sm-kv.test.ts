import test from 'ava';
import { Packr } from 'msgpackr';
import { EntryType, type Entry } from '../src/raft/types.ts';
import { KvStateMachine, decodeKvCommand, encodeKvCommand, type KvCommand } from '../src/sm/kv.ts';

let index = 0;
const entry = (data: Uint8Array | null): Entry => ({ index: ++index, term: 1, type: EntryType.Command, data });
const run = (sm: KvStateMachine, cmd: KvCommand) => sm.apply(entry(encodeKvCommand(cmd)));

test('put / get / delete return previous values and bump the revision on mutations only', (t) => {
  const sm = new KvStateMachine();
  t.deepEqual(run(sm, { op: 'get', key: 'a' }), { ok: true, value: null, revision: 0 });
  t.deepEqual(run(sm, { op: 'put', key: 'a', value: '1' }), { ok: true, prev: null, revision: 1 });
  t.deepEqual(run(sm, { op: 'put', key: 'a', value: '2' }), { ok: true, prev: '1', revision: 2 });
  t.deepEqual(run(sm, { op: 'get', key: 'a' }), { ok: true, value: '2', revision: 2 });
  t.is(sm.get('a'), '2');
  t.deepEqual(run(sm, { op: 'delete', key: 'a' }), { ok: true, prev: '2', revision: 3 });
  t.is(sm.get('a'), null);
  t.is(sm.revision, 3);
});

test('cas swaps only on a matching expected value (null = absent)', (t) => {
  const sm = new KvStateMachine();
  t.deepEqual(run(sm, { op: 'cas', key: 'k', expected: 'x', value: 'y' }), { ok: false, error: 'cas mismatch' });
  t.is(sm.revision, 0);
  t.deepEqual(run(sm, { op: 'cas', key: 'k', expected: null, value: 'y' }), { ok: true, prev: null, revision: 1 });
  t.deepEqual(run(sm, { op: 'cas', key: 'k', expected: null, value: 'z' }), { ok: false, error: 'cas mismatch' });
  t.deepEqual(run(sm, { op: 'cas', key: 'k', expected: 'y', value: 'z' }), { ok: true, prev: 'y', revision: 2 });
  t.is(sm.get('k'), 'z');
});

test('append concatenates in log order', (t) => {
  const sm = new KvStateMachine();
  t.deepEqual(run(sm, { op: 'append', key: 'l', value: 'a' }), { ok: true, value: 'a', prev: null, revision: 1 });
  t.deepEqual(run(sm, { op: 'append', key: 'l', value: 'b' }), { ok: true, value: 'ab', prev: 'a', revision: 2 });
  t.deepEqual(sm.entries(), [['l', 'ab']]);
});

test('a retried session seq is applied once and returns the cached result', (t) => {
  const sm = new KvStateMachine();
  const cmd: KvCommand = { session: { client: 'c1', seq: 1 }, op: 'append', key: 'n', value: 'x' };
  const first = run(sm, cmd);
  t.deepEqual(run(sm, cmd), first);
  t.deepEqual(run(sm, cmd), first);
  t.is(sm.get('n'), 'x');
  t.is(sm.revision, 1);
  run(sm, { session: { client: 'c1', seq: 2 }, op: 'append', key: 'n', value: 'y' });
  t.is(sm.get('n'), 'xy');
  // Another client's seq space is independent.
  run(sm, { session: { client: 'c2', seq: 1 }, op: 'append', key: 'n', value: 'z' });
  t.is(sm.get('n'), 'xyz');
});

test('an older seq than the last applied one is rejected as stale', (t) => {
  const sm = new KvStateMachine();
  run(sm, { session: { client: 'c', seq: 5 }, op: 'put', key: 'k', value: 'new' });
  t.deepEqual(run(sm, { session: { client: 'c', seq: 4 }, op: 'put', key: 'k', value: 'old' }), {
    ok: false,
    error: 'stale sequence',
  });
  t.is(sm.get('k'), 'new');
});

test('the session table evicts the least recently used client beyond its bound', (t) => {
  const sm = new KvStateMachine({ maxSessions: 2 });
  run(sm, { session: { client: 'a', seq: 1 }, op: 'append', key: 'k', value: 'a' });
  run(sm, { session: { client: 'b', seq: 1 }, op: 'append', key: 'k', value: 'b' });
  run(sm, { session: { client: 'a', seq: 1 }, op: 'append', key: 'k', value: 'a' }); // retry touches a
  run(sm, { session: { client: 'c', seq: 1 }, op: 'append', key: 'k', value: 'c' }); // evicts b
  t.is(sm.sessionCount, 2);
  run(sm, { session: { client: 'a', seq: 1 }, op: 'append', key: 'k', value: 'a' }); // still deduped
  run(sm, { session: { client: 'b', seq: 1 }, op: 'append', key: 'k', value: 'b' }); // forgotten: applies again
  t.is(sm.get('k'), 'abcb');
});

test('snapshot / restore round trip preserves data, revision, sessions and digest', (t) => {
  const a = new KvStateMachine();
  run(a, { op: 'put', key: 'z', value: '1' });
  run(a, { op: 'put', key: 'a', value: '2' });
  run(a, { session: { client: 'c', seq: 3 }, op: 'append', key: 'm', value: 'q' });
  const b = new KvStateMachine();
  b.restore(a.snapshot());
  t.is(b.appliedDigest(), a.appliedDigest());
  t.deepEqual(b.entries(), [['a', '2'], ['m', 'q'], ['z', '1']]);
  t.is(b.revision, 3);
  // The session survived: the retry is deduplicated on the restored replica too.
  run(b, { session: { client: 'c', seq: 3 }, op: 'append', key: 'm', value: 'q' });
  t.is(b.get('m'), 'q');
  run(b, { op: 'put', key: 'a', value: '3' });
  t.not(b.appliedDigest(), a.appliedDigest());
});

test('digest depends on state, not on insertion order', (t) => {
  const a = new KvStateMachine();
  const b = new KvStateMachine();
  run(a, { op: 'put', key: 'x', value: '1' });
  run(a, { op: 'put', key: 'y', value: '2' });
  run(b, { op: 'put', key: 'y', value: '2' });
  run(b, { op: 'put', key: 'x', value: '1' });
  t.is(a.appliedDigest(), b.appliedDigest());
});

test('malformed commands yield error results instead of throwing', (t) => {
  const sm = new KvStateMachine();
  const packr = new Packr({ useRecords: false });
  const bad: Uint8Array[] = [
    new Uint8Array([0xc1]), // reserved msgpack byte
    packr.pack('just a string'),
    packr.pack({ op: 'put', key: 'k' }),
    packr.pack({ op: 'explode', key: 'k' }),
    packr.pack({ op: 'cas', key: 'k', expected: 3, value: 'v' }),
    packr.pack({ op: 'get', key: 'k', session: { client: 'c', seq: -1 } }),
  ];
  for (const bytes of bad) {
    const r = sm.apply(entry(bytes));
    t.is(r.ok, false);
    if (!r.ok) t.regex(r.error, /^malformed command/);
  }
  t.deepEqual(sm.apply(entry(null)), { ok: false, error: 'malformed command: empty entry' });
  t.is(sm.revision, 0);
  t.throws(() => decodeKvCommand(packr.pack({ op: 'get' })), { message: /key must be a string/ });
});

test('encode / decode round trip', (t) => {
  const cmd: KvCommand = { session: { client: 'c', seq: 9 }, op: 'cas', key: 'k', expected: null, value: 'v' };
  t.deepEqual(decodeKvCommand(encodeKvCommand(cmd)), cmd);
});
