/** The metadata center's `reduce` command: registered deterministic reducers decided in log order. */
import test from 'ava';
import fc from 'fast-check';
import { EntryType, type Entry } from '../src/raft/types.ts';
import {
  MetadataStateMachine,
  decodeMetaCommand,
  encodeMetaCommand,
  registerReducer,
  type MetaCommand,
  type MetaErrorCode,
  type MetaResult,
  type MetaValue,
  type Reducer,
  type WatchEvent,
} from '../src/sm/metadata.ts';

let index = 0;
const entry = (data: Uint8Array | null): Entry => ({ index: ++index, term: 1, type: EntryType.Command, data });
const run = (sm: MetadataStateMachine, cmd: MetaCommand) => sm.apply(entry(encodeMetaCommand(cmd)));

function ok(r: MetaResult) {
  if (!r.ok) throw new Error(`expected ok, got ${r.code}: ${r.message}`);
  return r;
}
function err(r: MetaResult) {
  if (r.ok) throw new Error(`expected an error, got ${JSON.stringify(r)}`);
  return r;
}

/** A counter with a ceiling: { by } adds, { reset: true } deletes, over 100 is refused. */
const counter: Reducer = (current, action) => {
  const a = action as { by?: number; reset?: boolean };
  if (a.reset) return { delete: true };
  const next = ((current as { n: number } | undefined)?.n ?? 0) + (a.by ?? 0);
  return next > 100 ? { error: `counter would reach ${next}, over 100` } : { value: { n: next } };
};
let calls = 0;
registerReducer('t.counter', (current, action, ctx) => {
  calls++;
  return counter(current, action, ctx);
});
registerReducer('t.throws', () => {
  throw new Error('boom');
});
registerReducer('t.mutates', (current) => {
  (current as { n: number }).n = 99; // the stored value is frozen: this throws
  return { value: current };
});
registerReducer('t.undefinedValue', () => ({ value: { a: undefined } }));
registerReducer('t.noOutcome', () => 42 as unknown as { delete: true });
registerReducer('t.huge', () => ({ value: 'x'.repeat(2000) }));
registerReducer('t.key', (_c, _a, ctx) => ({ value: ctx.key }));
registerReducer('t.nullProto', () => ({ value: Object.assign(Object.create(null), { b: 2, a: 1 }) as MetaValue }));

const reduce = (key: string, action: MetaValue, o: { expectedRevision?: number; reducer?: string } = {}): MetaCommand =>
  ({ op: 'reduce', reducer: o.reducer ?? 't.counter', key, action, ...(o.expectedRevision === undefined ? {} : { expectedRevision: o.expectedRevision }) });

test('reduce creates, updates and deletes with the same revisions, versions and watch events as put/delete', (t) => {
  const sm = new MetadataStateMachine();
  const events: WatchEvent[] = [];
  sm.onChange((ev) => events.push(ev));
  const r1 = ok(run(sm, reduce('c', { by: 5 })));
  t.is(r1.revision, 1);
  t.deepEqual(r1.kv, { key: 'c', value: { n: 5 }, createRevision: 1, modRevision: 1, version: 1, lease: 0 });
  t.is(r1.prev, null);
  const r2 = ok(run(sm, reduce('c', { by: 2 })));
  t.deepEqual(r2.kv, { key: 'c', value: { n: 7 }, createRevision: 1, modRevision: 2, version: 2, lease: 0 });
  t.deepEqual(r2.prev, r1.kv);
  const r3 = ok(run(sm, reduce('c', { reset: true })));
  t.is(r3.deleted, 1);
  t.is(sm.get('c'), undefined);
  t.deepEqual(events.map((e) => [e.type, e.revision, e.kv.key]), [['put', 1, 'c'], ['put', 2, 'c'], ['delete', 3, 'c']]);
  t.deepEqual(events[2]!.prev, r2.kv);
  // Deleting what is not there changes nothing, like delete.
  const r4 = ok(run(sm, reduce('c', { reset: true })));
  t.is(r4.deleted, 0);
  t.is(sm.revision, 3);
  t.is(events.length, 3);
});

test('a reducer refusal is a rejected result and leaves state and revision untouched', (t) => {
  const sm = new MetadataStateMachine();
  ok(run(sm, reduce('c', { by: 90 })));
  const before = sm.digest();
  const r = err(run(sm, reduce('c', { by: 20 })));
  t.is(r.code, 'rejected');
  t.is(r.message, 'counter would reach 110, over 100');
  t.is(r.revision, 1);
  t.is(sm.digest(), before);
});

test('unknown reducer, throwing reducer, mutating reducer and bad outcomes are badCommand; state unchanged; apply keeps working', (t) => {
  const sm = new MetadataStateMachine({ maxValueBytes: 1000 });
  ok(run(sm, reduce('c', { by: 1 })));
  const before = sm.digest();
  const cases: [string, RegExp, MetaErrorCode?][] = [
    ['t.nope', /unknown reducer "t.nope"/],
    ['t.throws', /reducer "t.throws" on key "c" threw: boom/],
    ['t.mutates', /reducer "t.mutates" on key "c" threw: .*read only|reducer "t.mutates" on key "c" threw: .*read-only/],
    ['t.undefinedValue', /returned a bad value: value contains unsupported undefined/],
    ['t.noOutcome', /returned no outcome object/],
    ['t.huge', /over the limit of 1000 bytes/, 'tooLarge'],
  ];
  for (const [reducer, message, code = 'badCommand'] of cases) {
    const r = err(run(sm, reduce('c', {}, { reducer })));
    t.is(r.code, code, reducer);
    t.regex(r.message, message);
    t.is(sm.digest(), before, `${reducer} changed state`);
  }
  t.deepEqual(ok(run(sm, reduce('c', { by: 1 }))).kv?.value, { n: 2 });
});

test('expectedRevision works as for put: 0 = absent, otherwise the current modRevision', (t) => {
  const sm = new MetadataStateMachine();
  ok(run(sm, reduce('c', { by: 1 }, { expectedRevision: 0 })));
  const stale = err(run(sm, reduce('c', { by: 1 }, { expectedRevision: 0 })));
  t.is(stale.code, 'casFailed');
  t.regex(stale.message, /expected revision 0, actual 1/);
  ok(run(sm, reduce('c', { by: 1 }, { expectedRevision: 1 })));
  t.deepEqual(sm.get('c')!.value, { n: 2 });
});

test('reduce inside a batch is atomic: a later refusal rolls back earlier reduces', (t) => {
  const sm = new MetadataStateMachine();
  ok(run(sm, reduce('b', { by: 99 })));
  const r = err(run(sm, { op: 'batch', ops: [reduce('a', { by: 1 }), { op: 'put', key: 'x', value: 1 }, reduce('b', { by: 5 })] }));
  t.is(r.code, 'rejected');
  t.is(r.message, 'op 2: counter would reach 104, over 100');
  t.is(sm.get('a'), undefined);
  t.is(sm.get('x'), undefined);
  t.is(sm.revision, 1);
  const good = ok(run(sm, { op: 'batch', ops: [reduce('a', { by: 1 }), reduce('a', { by: 1 }), reduce('b', { reset: true })] }));
  t.is(good.revision, 2);
  t.deepEqual(good.results!.map((x) => (x.ok ? x.kv?.value ?? x.deleted : x.code)), [{ n: 1 }, { n: 2 }, 1]);
  t.deepEqual(sm.get('a'), { key: 'a', value: { n: 2 }, createRevision: 2, modRevision: 2, version: 2, lease: 0 });
});

test('reduce keeps the key lease, sees its key, and stores the decoded form of the value', (t) => {
  const sm = new MetadataStateMachine();
  const lease = ok(run(sm, { op: 'leaseGrant', ttlMs: 1000 })).leaseId!;
  ok(run(sm, { op: 'put', key: 'c', value: { n: 1 }, lease }));
  t.is(ok(run(sm, reduce('c', { by: 1 }))).kv!.lease, lease);
  t.is(ok(run(sm, reduce('k/1', null, { reducer: 't.key' }))).kv!.value, 'k/1');
  const stored = ok(run(sm, reduce('np', null, { reducer: 't.nullProto' }))).kv!.value as object;
  t.is(Object.getPrototypeOf(stored), Object.prototype, 'a replica restoring a snapshot would hold a plain object too');
  t.true(Object.isFrozen(stored));
  ok(run(sm, { op: 'leaseRevoke', id: lease }));
  t.is(sm.get('c'), undefined);
});

test('malformed reduce commands are refused at decode', (t) => {
  const bad: [unknown, RegExp][] = [
    [{ op: 'reduce', key: 'k', action: 1 }, /reducer must be a non-empty string/],
    [{ op: 'reduce', reducer: '', key: 'k', action: 1 }, /reducer must be a non-empty string/],
    [{ op: 'reduce', reducer: 'r', action: 1 }, /key must be a non-empty string/],
    [{ op: 'reduce', reducer: 'r', key: 'k' }, /action is required/],
    [{ op: 'reduce', reducer: 'r', key: 'k', action: { at: new Date(0) } }, /action value contains unsupported Date/],
    [{ op: 'reduce', reducer: 'r', key: 'k', action: 1, expectedRevision: -1 }, /expectedRevision must be a non-negative integer/],
  ];
  for (const [raw, message] of bad) {
    const e = t.throws(() => decodeMetaCommand(encodeMetaCommand(raw as MetaCommand)));
    t.regex(e!.message, message);
  }
  t.deepEqual(decodeMetaCommand(encodeMetaCommand({ op: 'reduce', reducer: 'r', key: 'k', action: null, junk: 1 } as MetaCommand)), {
    op: 'reduce', reducer: 'r', key: 'k', action: null,
  });
});

test('registerReducer refuses to replace a name with another function', (t) => {
  const fn: Reducer = () => ({ delete: true });
  registerReducer('t.once', fn);
  registerReducer('t.once', fn); // the same code loaded twice is fine
  t.throws(() => registerReducer('t.once', () => ({ delete: true })), { message: /already registered/ });
  t.throws(() => registerReducer('', fn), { message: /non-empty/ });
});

test('a session retry returns the stored result without running the reducer again', (t) => {
  const sm = new MetadataStateMachine();
  const opened = run(sm, { op: 'openSession' });
  const client = opened.ok ? opened.session! : 'none';
  const cmd: MetaCommand = { ...reduce('c', { by: 3 }), session: { client, seq: 1 } };
  const first = ok(run(sm, cmd));
  const before = calls;
  t.deepEqual(run(sm, cmd), first);
  t.is(calls, before);
  t.deepEqual(sm.get('c')!.value, { n: 3 });
});

test('property: replicas applying the same reduce log (with refusals and batches) agree, and a snapshot restore agrees', (t) => {
  const op = fc.oneof(
    fc.record({ key: fc.constantFrom('a', 'b', 'c'), by: fc.integer({ min: -5, max: 40 }) }).map(({ key, by }) => reduce(key, { by })),
    fc.constantFrom('a', 'b').map((key) => reduce(key, { reset: true })),
    fc.constantFrom('t.throws', 't.nope').map((reducer) => reduce('a', {}, { reducer })),
  );
  const cmd = fc.oneof(op, fc.array(op, { minLength: 1, maxLength: 4 }).map((ops): MetaCommand => ({ op: 'batch', ops })));
  fc.assert(
    fc.property(fc.array(cmd, { maxLength: 40 }), fc.nat(40), (cmds, cut) => {
      const [x, y] = [new MetadataStateMachine(), new MetadataStateMachine()];
      const bytes = cmds.map(encodeMetaCommand);
      const rx = bytes.map((b) => x.apply(entry(b)));
      const ry = bytes.map((b) => y.apply(entry(b)));
      if (JSON.stringify(rx) !== JSON.stringify(ry) || x.digest() !== y.digest()) return false;
      const z = new MetadataStateMachine();
      bytes.slice(0, cut).forEach((b) => z.apply(entry(b)));
      const w = new MetadataStateMachine();
      w.restore(z.snapshot());
      bytes.slice(cut).forEach((b) => w.apply(entry(b)));
      return w.digest() === x.digest();
    }),
    { numRuns: 200 },
  );
  t.pass();
});
