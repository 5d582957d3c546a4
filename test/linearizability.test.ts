import test from 'ava';
import fc from 'fast-check';
import { checkLinearizability, type HistoryOp, type RegisterOp } from '../src/check/linearizability.ts';

// Compact history builder (ids are unique across the file; the checker only reports them).
let nextId = 0;
function op(
  client: string,
  o: RegisterOp,
  invokeAt: number,
  completeAt: number | null,
  result?: HistoryOp['result'],
  status: HistoryOp['status'] = 'ok',
  key = 'k',
): HistoryOp {
  return { id: nextId++, client, key, op: o, invokeAt, completeAt, result, status };
}
const put = (value: string): RegisterOp => ({ type: 'put', value });
const get: RegisterOp = { type: 'get' };
const del: RegisterOp = { type: 'delete' };
const cas = (expected: string | null, value: string): RegisterOp => ({ type: 'cas', expected, value });
const append = (value: string): RegisterOp => ({ type: 'append', value });

test('sequential history is linearizable', (t) => {
  const r = checkLinearizability([
    op('a', put('1'), 0, 1),
    op('b', get, 2, 3, '1'),
    op('a', cas('1', '2'), 4, 5, true),
    op('b', cas('1', '3'), 6, 7, false),
    op('a', append('x'), 8, 9, '2x'),
    op('b', del, 10, 11),
    op('a', get, 12, 13, null),
  ]);
  t.deepEqual(r, { ok: true, keysChecked: 1, opsChecked: 7 });
});

test('stale read after a completed write is rejected', (t) => {
  const h = [op('a', put('1'), 0, 1), op('a', put('2'), 2, 3), op('b', get, 4, 5, '1')];
  const r = checkLinearizability(h);
  t.is(r.ok, false);
  if (r.ok !== false) return;
  t.is(r.key, 'k');
  t.regex(r.reason, /get\(\) -> "1"/);
  t.true(r.window.includes(h[2]));
});

test('a read concurrent with the write may see either value', (t) => {
  const w = op('a', put('2'), 2, 10);
  t.true(checkLinearizability([op('a', put('1'), 0, 1), w, op('b', get, 4, 5, '1')]).ok === true);
  t.true(checkLinearizability([op('a', put('1'), 0, 1), w, op('b', get, 4, 5, '2')]).ok === true);
});

test('touching intervals count as concurrent', (t) => {
  t.is(checkLinearizability([op('a', put('1'), 0, 5), op('b', get, 5, 6, null)]).ok, true);
  t.is(checkLinearizability([op('a', put('1'), 0, 5), op('b', get, 6, 7, null)]).ok, false);
});

test('lost write is rejected', (t) => {
  // Both appends were acknowledged, but the final read shows only one of them.
  const r = checkLinearizability([
    op('a', append('x'), 0, 2, 'x'),
    op('b', append('y'), 1, 3, 'y'),
    op('c', get, 4, 5, 'y'),
  ]);
  t.is(r.ok, false);
  // And with plain puts: a put acknowledged before a read that sees the older value.
  const r2 = checkLinearizability([op('a', put('1'), 0, 1), op('b', put('2'), 0, 2), op('c', get, 3, 4, null)]);
  t.is(r2.ok, false);
});

test('two concurrent puts read in an impossible order are rejected', (t) => {
  const writes = [op('a', put('1'), 0, 10), op('b', put('2'), 0, 10)];
  // Either order is fine for one reader...
  t.is(checkLinearizability([...writes, op('c', get, 1, 2, '2'), op('c', get, 3, 4, '1')]).ok, true);
  // ...but after both writes finished, readers cannot see 1 then 2 then 1.
  const r = checkLinearizability([
    ...writes,
    op('c', get, 11, 12, '1'),
    op('d', get, 13, 14, '2'),
  ]);
  t.is(r.ok, false);
  const r2 = checkLinearizability([
    ...writes,
    op('c', get, 1, 2, '1'),
    op('c', get, 3, 4, '2'),
    op('d', get, 5, 6, '1'),
  ]);
  t.is(r2.ok, false);
});

test('info ops may or may not take effect, at any time after invoke', (t) => {
  const info = op('a', put('1'), 0, null, undefined, 'info');
  t.is(checkLinearizability([info, op('b', get, 5, 6, null)]).ok, true); // never applied (yet)
  t.is(checkLinearizability([info, op('b', get, 5, 6, null), op('b', get, 100, 101, '1')]).ok, true); // late
  // But once seen, it cannot be un-seen.
  t.is(checkLinearizability([info, op('b', get, 5, 6, '1'), op('b', get, 7, 8, null)]).ok, false);
  // And it cannot take effect before it was invoked.
  t.is(checkLinearizability([op('b', get, 0, 1, '1'), op('a', put('1'), 2, null, undefined, 'info')]).ok, false);
  // An info append applies at most once.
  const infoAppend = op('a', append('x'), 0, null, undefined, 'info');
  t.is(checkLinearizability([infoAppend, op('b', append('y'), 1, 2, 'xy')]).ok, true);
  t.is(checkLinearizability([infoAppend, op('b', append('y'), 1, 2, 'xxy')]).ok, false);
});

test('cas and append results are checked against the model', (t) => {
  const w = op('a', put('1'), 0, 1);
  t.is(checkLinearizability([w, op('b', cas('1', '2'), 2, 3, true)]).ok, true);
  t.is(checkLinearizability([w, op('b', cas('1', '2'), 2, 3, false)]).ok, false); // should have swapped
  t.is(checkLinearizability([w, op('b', cas('0', '2'), 2, 3, true)]).ok, false); // could not have swapped
  t.is(checkLinearizability([w, op('b', cas('0', '2'), 2, 3, false), op('b', get, 4, 5, '1')]).ok, true);
  t.is(checkLinearizability([w, op('b', append('x'), 2, 3, '1x')]).ok, true);
  t.is(checkLinearizability([w, op('b', append('x'), 2, 3, 'x')]).ok, false);
});

test('memoization keeps many commuting concurrent ops tractable', (t) => {
  // 12 concurrent identical puts then an impossible read: 12! orders but only 2^12 distinct
  // (set, state) configurations, so the search proves failure well inside the budget.
  const h: HistoryOp[] = [];
  for (let i = 0; i < 12; i++) h.push(op(`c${i}`, put('x'), 0, 10));
  h.push(op('r', get, 11, 12, 'y'));
  t.is(checkLinearizability(h, { maxSteps: 1_000_000 }).ok, false);
});

test('fail ops are ignored', (t) => {
  const failed = op('a', put('1'), 0, 1, undefined, 'fail');
  t.is(checkLinearizability([failed, op('b', get, 2, 3, null)]).ok, true);
  t.is(checkLinearizability([{ ...failed, status: 'ok' }, op('b', get, 2, 3, null)]).ok, false);
});

test('keys are independent; the failing key is reported', (t) => {
  const r = checkLinearizability([
    op('a', put('1'), 0, 1, undefined, 'ok', 'x'),
    op('a', put('1'), 0, 1, undefined, 'ok', 'y'),
    op('b', get, 2, 3, null, 'ok', 'x'), // stale: x was written before
    op('b', get, 2, 3, '1', 'ok', 'y'), // fine
  ]);
  t.is(r.ok, false);
  if (r.ok === false) t.is(r.key, 'x');
  const ok = checkLinearizability([op('a', put('1'), 0, 1, undefined, 'ok', 'x'), op('b', get, 2, 3, null, 'ok', 'y')]);
  t.deepEqual(ok, { ok: true, keysChecked: 2, opsChecked: 2 });
});

test('a pathological history returns unknown within the step budget', (t) => {
  // Many concurrent info puts with distinct values blow up the (set, state) space.
  const h: HistoryOp[] = [];
  for (let i = 0; i < 40; i++) h.push(op(`c${i}`, put(`v${i}`), 0, null, undefined, 'info'));
  for (let i = 0; i < 40; i++) h.push(op('r', get, 10 + i, 10 + i, `v${(i * 7) % 40}`));
  h.push(op('r', get, 100, 101, 'never'));
  const r = checkLinearizability(h, { maxSteps: 20_000 });
  t.is(r.ok, 'unknown');
});

// ---- Simulated atomic register: every generated history is linearizable by construction.

interface GenOp {
  client: number;
  key: number;
  kind: 'put' | 'get' | 'delete' | 'cas' | 'append';
  gap: number;
  dur: number;
  lin: number; // where in [invoke, complete] it takes effect, per mille
  outcome: 'ok' | 'info' | 'fail';
  casHit: boolean;
}

const genOp = (clients: number, keys: number): fc.Arbitrary<GenOp> =>
  fc.record({
    client: fc.nat(clients - 1),
    key: fc.nat(keys - 1),
    kind: fc.constantFrom('put', 'get', 'delete', 'cas', 'append', 'get'),
    gap: fc.nat(5),
    dur: fc.nat(20),
    lin: fc.nat(1000),
    outcome: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'info', 'fail'),
    casHit: fc.boolean(),
  });

/** Runs the generated ops against a real register; clients are sequential, so ops overlap across clients. */
function simulate(gen: GenOp[]): HistoryOp[] {
  const clock = new Map<number, number>();
  const planned: { h: HistoryOp; at: number; applies: boolean; casHit: boolean }[] = [];
  gen.forEach((g, id) => {
    const invokeAt = (clock.get(g.client) ?? 0) + g.gap;
    const end = invokeAt + g.dur;
    clock.set(g.client, end);
    const o: RegisterOp =
      g.kind === 'put' ? put(`v${id}`)
      : g.kind === 'append' ? append(`.${id}`)
      : g.kind === 'cas' ? cas(null, `v${id}`) // expected filled in at its linearization point
      : g.kind === 'delete' ? del
      : get;
    // An info op (timed out) may take effect long after the client gave up, or never.
    const at = g.outcome === 'info' ? invokeAt + (g.lin / 1000) * g.dur * 3 : invokeAt + (g.lin / 1000) * g.dur;
    const applies = g.outcome === 'ok' || (g.outcome === 'info' && g.casHit);
    const h: HistoryOp = {
      id,
      client: `c${g.client}`,
      key: `k${g.key}`,
      op: o,
      invokeAt,
      completeAt: g.outcome === 'info' ? null : end,
      status: g.outcome,
    };
    planned.push({ h, at, applies, casHit: g.casHit });
  });
  const reg = new Map<string, string | null>();
  for (const p of [...planned].sort((a, b) => a.at - b.at)) {
    if (!p.applies) continue;
    const { h } = p;
    const cur = reg.get(h.key) ?? null;
    switch (h.op.type) {
      case 'put':
        reg.set(h.key, h.op.value);
        break;
      case 'delete':
        reg.set(h.key, null);
        break;
      case 'get':
        if (h.status === 'ok') h.result = cur;
        break;
      case 'append':
        reg.set(h.key, (cur ?? '') + h.op.value);
        if (h.status === 'ok') h.result = (cur ?? '') + h.op.value;
        break;
      case 'cas': {
        // Aim at the current value half the time so swaps actually happen.
        const expected = p.casHit ? cur : cur === null ? 'nope' : null;
        const value = h.op.value;
        h.op = cas(expected, value);
        if (expected === cur) reg.set(h.key, value);
        if (h.status === 'ok') h.result = expected === cur;
        break;
      }
    }
  }
  return planned.map((p) => p.h);
}

test('property: histories of a real atomic register are accepted', (t) => {
  fc.assert(
    fc.property(fc.array(genOp(5, 3), { minLength: 1, maxLength: 80 }), (gen) => {
      const r = checkLinearizability(simulate(gen));
      return r.ok === true;
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('property: corrupting one read to a never-written value is rejected', (t) => {
  fc.assert(
    fc.property(fc.array(genOp(5, 3), { minLength: 1, maxLength: 80 }), fc.nat(), (gen, pick) => {
      const h = simulate(gen);
      const reads = h.filter((x) => x.status === 'ok' && x.op.type === 'get');
      fc.pre(reads.length > 0);
      reads[pick % reads.length].result = 'never-written';
      const r = checkLinearizability(h);
      return r.ok === false && r.window.includes(reads[pick % reads.length]);
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('2,000 ops over 20 keys and 5 clients check in well under a second', (t) => {
  const gen = fc.sample(genOp(5, 20), { numRuns: 2000, seed: 42 });
  const h = simulate(gen);
  const start = performance.now();
  const r = checkLinearizability(h);
  const ms = performance.now() - start;
  t.is(r.ok, true);
  t.log(`checked ${h.length} ops in ${ms.toFixed(1)} ms`);
  t.true(ms < 1000, `took ${ms} ms`);
});
