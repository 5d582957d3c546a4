/**
 * The chaos suite: the checker catches planted anomalies (so the suite cannot pass vacuously),
 * and a short run of real faults against a local cluster (separate member processes, 3 NATS
 * servers, every process stopped by PID, a populated data-key space, classic clients and a
 * client shared by many concurrent callers) finds no anomaly.
 */
import test from 'ava';
import { canonicalize, checkChaosHistory, checkRefusals, checkRevisions, countOps, countRefusals, formatAnomaly } from '../src/chaos/check.ts';
import { runChaos } from '../src/chaos/cli.ts';
import { FAULT_KINDS } from '../src/chaos/nemesis.ts';
import { dataKeys, dataTag, dataValue, type ChaosOp } from '../src/chaos/workload.ts';
import { checkKvKey, kvStep, type KvHistoryOp, type KvState } from '../src/check/kv-linearizability.ts';
import { createRng, type Rng } from '../src/sim/rng.ts';

// ---- synthetic histories ----------------------------------------------------------------------

const R = 'chaos/r0';
const C = 'chaos/c0';
const keys = { registers: [R], counters: [C] };
const regOnly = { registers: [R], counters: [] };
const ctrOnly = { registers: [], counters: [C] };
let nextId = 0;

function op(client: string, key: string, o: ChaosOp['op'], invokeAt: number, completeAt: number | null, extra: Partial<ChaosOp> = {}): ChaosOp {
  const status = extra.status ?? (completeAt === null ? 'info' : 'ok');
  return { id: nextId++, client, key, op: o, invokeAt, completeAt, status, outcome: extra.outcome ?? status, ...extra };
}
const put = (c: string, v: string, a: number, b: number | null, extra: Partial<ChaosOp> = {}) => op(c, R, { type: 'put', value: v }, a, b, extra);
const get = (c: string, key: string, result: string | number | null, a: number, b: number, extra: Partial<ChaosOp> = {}) => op(c, key, { type: 'get' }, a, b, { result, ...extra });
const incr = (c: string, result: number | undefined, a: number, b: number | null, extra: Partial<ChaosOp> = {}) => op(c, C, { type: 'incr', by: 1 }, a, b, { result, ...extra });
const final = (key: string, result: string | number | null, at: number) => get('final', key, result, at, at + 1);

test('checker: a valid history with unknown outcomes and a final read passes', (t) => {
  const h = [
    put('a', 'a.1', 0, 10),
    put('b', 'b.1', 5, null, { error: 'TimeoutError: x' }), // took effect later (seen below)
    get('c', R, 'a.1', 12, 13),
    get('c', R, 'b.1', 30, 31),
    op('a', R, { type: 'cas', expected: 'b.1', value: 'a.2' }, 32, 33, { result: true }),
    op('b', R, { type: 'cas', expected: 'b.1', value: 'b.2' }, 34, 35, { result: false, outcome: 'fail' }),
    incr('a', 1, 0, 2),
    incr('b', undefined, 3, null), // unknown: happened (final = 3)
    incr('c', undefined, 3, null), // unknown: did not happen
    incr('a', 3, 20, 21),
    final(R, 'a.2', 100),
    final(C, 3, 100),
  ];
  const r = checkChaosHistory(h, keys);
  t.deepEqual(r.anomalies, []);
  t.deepEqual(r.undecided, []);
  t.is(r.unknownButApplied.TimeoutError, 1);
});

test('checker: a lost acknowledged write is caught, with a minimal window', (t) => {
  // 200 ops of a healthy register, then an acknowledged put that the final read does not show.
  const h: ChaosOp[] = [];
  for (let i = 0; i < 100; i++) {
    h.push(put('a', `a.${i}`, i * 10, i * 10 + 4));
    h.push(get('b', R, `a.${i}`, i * 10 + 5, i * 10 + 8));
  }
  const lost = put('b', 'b.lost', 2000, 2004);
  h.push(lost, final(R, 'a.99', 3000));
  const r = checkChaosHistory(h, regOnly);
  const lin = r.anomalies.find((a) => a.kind === 'linearizability');
  t.truthy(lin, 'linearizability anomaly reported');
  t.true(lin!.window.includes(lost), 'the lost write is in the window');
  t.true(lin!.window.length <= 4, `window is minimal: ${lin!.window.length} ops`);
  t.log(formatAnomaly(lin!, 0));
});

test('checker: a stale read is caught (and by the revision check too)', (t) => {
  const h = [
    put('a', 'a.1', 0, 1, { revision: 5, modRevision: 5 }),
    put('a', 'a.2', 2, 3, { revision: 6, modRevision: 6 }),
    get('b', R, 'a.1', 4, 5, { revision: 5, modRevision: 5 }),
    final(R, 'a.2', 10),
  ];
  const r = checkChaosHistory(h, regOnly);
  const lin = r.anomalies.find((a) => a.kind === 'linearizability');
  t.truthy(lin);
  t.deepEqual(lin!.window.map((x) => x.id), [h[0]!.id, h[1]!.id, h[2]!.id], 'window: the write read, the overwriting put, the stale read');
  t.truthy(r.anomalies.find((a) => a.kind === 'revision' && /went backwards/.test(a.message)));
});

test('checker: a cas that answers casFailed while the key held the expected value is caught', (t) => {
  const h = [
    put('a', 'a.1', 0, 1),
    op('b', R, { type: 'cas', expected: 'a.1', value: 'b.1' }, 2, 3, { result: false, outcome: 'fail' }),
    get('c', R, 'a.1', 4, 5),
    final(R, 'a.1', 10),
  ];
  t.is(checkChaosHistory(h, regOnly).anomalies.filter((a) => a.kind === 'linearizability').length, 1);
});

test('checker: lost counter increments are caught; unknown ones may or may not count', (t) => {
  const base = [incr('a', 1, 0, 1), incr('b', 2, 2, 3), incr('a', undefined, 4, null), incr('b', 3, 5, 6)];
  // 3 acknowledged + 1 unknown: 3 or 4 are fine.
  t.deepEqual(checkChaosHistory([...base, final(C, 4, 10)], ctrOnly).anomalies, []);
  t.deepEqual(checkChaosHistory([...base, final(C, 3, 10)], ctrOnly).anomalies, []);
  const lost = checkChaosHistory([...base, final(C, 2, 10)], ctrOnly);
  t.deepEqual(lost.anomalies.map((a) => a.kind).sort(), ['final', 'linearizability']);
  t.regex(lost.anomalies.find((a) => a.kind === 'final')!.message, /1 acknowledged increments lost/);
  t.true(checkChaosHistory([...base, final(C, 5, 10)], ctrOnly).anomalies.length > 0, 'more than possible');
});

test('checker: an emptied register and a value nobody wrote are caught', (t) => {
  const h = [put('a', 'a.1', 0, 1)];
  t.truthy(checkChaosHistory([...h, final(R, null, 10)], regOnly).anomalies.find((a) => a.kind === 'final'));
  t.truthy(checkChaosHistory([...h, final(R, 'zzz', 10)], regOnly).anomalies.find((a) => a.kind === 'final'));
});

test('checker: a NoQuorumError write that took effect is not an anomaly but is reported', (t) => {
  const h = [
    put('a', 'a.1', 0, 1),
    put('b', 'b.1', 2, null, { error: 'NoQuorumError: no leader reachable' }),
    get('c', R, 'b.1', 50, 51),
    final(R, 'b.1', 100),
  ];
  const r = checkChaosHistory(h, regOnly);
  t.deepEqual(r.anomalies, []);
  t.is(r.unknownButApplied.NoQuorumError, 1);
  // Had it been recorded as `fail` (proof it did not happen), the read of b.1 would be an anomaly.
  const asFail = h.map((x) => (x.op.type === 'put' && x.op.value === 'b.1' ? { ...x, status: 'fail' as const, outcome: 'fail' as const } : x));
  t.true(checkChaosHistory(asFail, regOnly).anomalies.length > 0);
});

// ---- refused writes (MetaError other than casFailed): definite non-effects -----------------------

const refused = (extra: Partial<ChaosOp> = {}): Partial<ChaosOp> => ({
  status: 'fail', outcome: 'fail', code: 'badCommand', error: 'MetaError(badCommand): stale session sequence', ...extra,
});

test('checker: a refused put that took effect is caught (it would pass as an unknown outcome)', (t) => {
  const h = [
    put('a', 'a.1', 0, 1),
    put('b', 'b.1', 2, 40, refused()), // refused ... yet applied:
    get('c', R, 'b.1', 50, 51),
    put('a', 'a.2', 60, 61),
    final(R, 'a.2', 100),
  ];
  const r = checkChaosHistory(h, regOnly);
  const refusal = r.anomalies.find((a) => a.kind === 'refusal');
  t.truthy(refusal, 'refusal anomaly reported');
  t.regex(refusal!.message, /refused with MetaError\(badCommand\): stale session sequence took effect/);
  t.deepEqual(refusal!.window.map((x) => x.id), [h[1]!.id, h[2]!.id], 'window: the refused write and the read of its value');
  t.truthy(r.anomalies.find((a) => a.kind === 'linearizability'), 'the model, which leaves refused writes out, fails too');
  t.log(formatAnomaly(refusal!, 0));
  // Recorded as an unknown outcome (as before issue 18), the same history is fine: the check is stronger.
  const asInfo = h.map((x) => (x === h[1] ? { ...x, status: 'info' as const, outcome: 'info' as const, completeAt: null } : x));
  t.deepEqual(checkChaosHistory(asInfo, regOnly).anomalies, []);
  // A refused write that nobody observes is a history that honors the refusal.
  t.deepEqual(checkChaosHistory([h[0]!, h[1]!, h[3]!, h[4]!], regOnly).anomalies, []);
});

test('checker: a refused write seen only by the final read, or as a successful cas expectation, is caught', (t) => {
  const w = put('b', 'b.1', 2, 40, refused());
  const viaFinal = checkChaosHistory([put('a', 'a.1', 0, 1), w, final(R, 'b.1', 100)], regOnly);
  t.deepEqual([...new Set(viaFinal.anomalies.map((a) => a.kind))].sort(), ['final', 'linearizability', 'refusal']);
  t.regex(viaFinal.anomalies.find((a) => a.kind === 'final')!.message, /a write refused with MetaError\(badCommand\)/);
  const viaCas = checkRefusals([w, op('c', R, { type: 'cas', expected: 'b.1', value: 'c.1' }, 50, 51, { result: true })]);
  t.is(viaCas.length, 1);
});

test('checker: a refused increment that moved the counter is caught', (t) => {
  const base = [incr('a', 1, 0, 1), incr('b', undefined, 2, 30, refused()), incr('a', 2, 40, 41)];
  // The counter reads 3 after two acknowledged increments: the refused one counted.
  const moved = checkChaosHistory([...base, get('c', C, 3, 50, 51), final(C, 3, 100)], ctrOnly);
  const fin = moved.anomalies.find((a) => a.kind === 'final');
  t.truthy(fin);
  t.regex(fin!.message, /1 more than possible: 1 increments were refused and must not count/);
  t.truthy(moved.anomalies.find((a) => a.kind === 'linearizability'));
  // Also caught from the acknowledged results alone (the second incr answered 3, not 2).
  const acked = [incr('a', 1, 0, 1), incr('b', undefined, 2, 30, refused()), incr('a', 3, 40, 41), final(C, 3, 100)];
  t.truthy(checkChaosHistory(acked, ctrOnly).anomalies.find((a) => a.kind === 'linearizability'));
  // Not counted: fine.
  t.deepEqual(checkChaosHistory([...base, final(C, 2, 100)], ctrOnly).anomalies, []);
  // Summaries count refusals by code, under outcome fail.
  t.deepEqual(countRefusals([...base, put('x', 'x.1', 0, 1, refused({ code: 'tooLarge', error: 'MetaError(tooLarge): value too large' }))]), { badCommand: 1, tooLarge: 1 });
  t.is(countOps(base).incr.fail, 1);
});

test('checker: data keys are checked per key and aggregated; a lost or missing data key is caught', (t) => {
  const data = dataKeys(5000);
  const h: ChaosOp[] = [];
  for (const [i, key] of data.entries()) {
    h.push(op(`pop${i % 64}`, key, { type: 'put', value: `d${i}.init` }, i, i + 10));
    h.push(final(key, `d${i}.init`, 100_000));
  }
  h.push(op('s0.1', data[7]!, { type: 'put', value: 's0.1.0' }, 20_000, 20_010));
  h.push(op('s0.2', data[7]!, { type: 'get' }, 20_020, 20_030, { result: 's0.1.0' }));
  const fixFinal = h.findIndex((x) => x.client === 'final' && x.key === data[7]);
  h[fixFinal] = final(data[7]!, 's0.1.0', 100_000);
  const o = { registers: [], counters: [], dataKeys: data };
  const started = performance.now();
  const ok = checkChaosHistory(h, o);
  t.log(`5,000 data keys checked in ${Math.round(performance.now() - started)} ms`);
  t.deepEqual(ok.anomalies, []);
  t.is(ok.dataKeys.checked, 5000);
  t.is(ok.dataKeys.ops, 10_002);
  t.deepEqual(Object.keys(ok.keys), [], 'data keys are not listed one by one');
  // The acknowledged put of data[7] lost: the final read shows the population value.
  const lost = h.map((x, i) => (i === fixFinal ? final(data[7]!, 'd7.init', 100_000) : x));
  t.truthy(checkChaosHistory(lost, o).anomalies.find((a) => a.kind === 'linearizability' && a.key === data[7]));
  // A data key missing from the final reads.
  const missing = h.filter((x) => !(x.client === 'final' && x.key === data[42]));
  t.truthy(checkChaosHistory(missing, o).anomalies.find((a) => a.kind === 'final' && a.key === data[42]));
});

test('data values: the tag round-trips; a damaged value is reported as itself', (t) => {
  const v = dataValue('s0.3.17', 256);
  t.is(v.length, 256);
  t.is(dataTag(v, 256), 's0.3.17');
  const damaged = v.slice(0, 200) + (v[200] === 'A' ? 'B' : 'A') + v.slice(201);
  t.is(dataTag(damaged, 256), damaged);
  t.is(dataTag(v.slice(0, 255), 256), v.slice(0, 255));
  t.is(dataTag(null, 256), null);
});

test('checker: many unknown increments stay cheap (symmetry), also when the history fails', (t) => {
  const h: KvHistoryOp[] = [];
  let id = 0;
  for (let i = 0; i < 40; i++) h.push({ id: id++, client: `u${i}`, key: C, op: { type: 'incr', by: 1 }, invokeAt: i, completeAt: null, status: 'info', symmetry: 'incr:1' });
  for (let i = 0; i < 10; i++) h.push({ id: id++, client: 'a', key: C, op: { type: 'incr', by: 1 }, invokeAt: 100 + 2 * i, completeAt: 101 + 2 * i, status: 'ok', result: 21 + i });
  h.push({ id: id++, client: 'r', key: C, op: { type: 'get' }, invokeAt: 200, completeAt: 201, status: 'ok', result: 45 });
  const ok = checkKvKey(h, { maxStepsPerKey: 1_000_000 });
  t.is(ok.ok, true);
  // 51 cannot be reached (at most 40 + 10): refuted, not undecided, within the budget.
  const bad = checkKvKey([...h.slice(0, -1), { ...h.at(-1)!, result: 51 }], { maxStepsPerKey: 1_000_000 });
  t.is(bad.ok, false);
  t.log(`steps: ok ${ok.steps}, refuted ${bad.steps}`);
});

test('checker: a revision that goes backwards across keys is caught', (t) => {
  const h = [
    put('a', 'a.1', 0, 1, { revision: 10, modRevision: 10 }),
    get('b', C, 3, 2, 3, { revision: 9, modRevision: 8 }),
  ];
  t.is(checkRevisions(h).length, 1);
});

// ---- the search against brute force on small random histories -------------------------------

/** Every order of every subset of the unknown-outcome ops (all completed ops included) that respects real time. */
function bruteForce(ops: KvHistoryOp[]): boolean {
  const live = ops.filter((h) => !(h.status === 'fail' || (h.status === 'info' && h.op.type === 'get')));
  const info = live.filter((h) => h.status === 'info');
  const done = live.filter((h) => h.status === 'ok');
  const end = (h: KvHistoryOp) => (h.status === 'info' ? Infinity : h.completeAt!);
  for (let mask = 0; mask < 1 << info.length; mask++) {
    const pick = [...done, ...info.filter((_, i) => mask & (1 << i))];
    const used = new Array(pick.length).fill(false);
    const go = (state: KvState, placed: number): boolean => {
      if (placed === pick.length) return true;
      for (let i = 0; i < pick.length; i++) {
        if (used[i]) continue;
        // i may go next only if no other unplaced op ended before i began.
        if (pick.some((o, j) => !used[j] && j !== i && end(o) < pick[i]!.invokeAt)) continue;
        const t = kvStep(state, pick[i]!.op, pick[i]!.status === 'info' ? undefined : pick[i]!.result);
        if (!t) continue;
        used[i] = true;
        if (go(t.next, placed + 1)) return true;
        used[i] = false;
      }
      return false;
    };
    if (go(null, 0)) return true;
  }
  return false;
}

function randomHistory(rng: Rng, counter: boolean): ChaosOp[] {
  const n = rng.int(2, 7);
  const ops: ChaosOp[] = [];
  const values: (string | number | null)[] = [null];
  for (let i = 0; i < n; i++) {
    const a = rng.int(0, 12);
    const b = a + rng.int(0, 6);
    const info = rng.chance(0.3);
    const key = counter ? C : R;
    const r = rng();
    if (r < 0.35) {
      ops.push(op(`c${i}`, key, { type: 'get' }, a, b, { result: rng.pick(counter ? [null, 1, 2, 3] : values) }));
    } else if (counter) {
      ops.push(op(`c${i}`, key, { type: 'incr', by: 1 }, a, info ? null : b, info ? { symmetry: 'incr:1' } : { result: rng.int(1, 4) }));
    } else if (r < 0.7) {
      values.push(`v${i}`);
      ops.push(op(`c${i}`, key, { type: 'put', value: `v${i}` }, a, info ? null : b));
    } else {
      values.push(`v${i}`);
      const expected = rng.pick(values.slice(0, -1)) as string | null;
      ops.push(op(`c${i}`, key, { type: 'cas', expected, value: `v${i}` }, a, info ? null : b, info ? {} : { result: rng.chance(0.5) }));
    }
  }
  return ops;
}

test('checker: agrees with brute force on 3,000 small random histories (registers with unobserved values merged, counters with symmetry)', (t) => {
  const rng = createRng(42);
  let linearizable = 0;
  for (let i = 0; i < 3000; i++) {
    const counter = i % 2 === 1;
    const h = randomHistory(rng, counter);
    const expected = bruteForce(h);
    const got = checkKvKey(canonicalize(h, !counter)).ok;
    if (got !== expected) {
      t.fail(`history ${i}: checker says ${String(got)}, brute force ${expected}:\n${JSON.stringify(h)}`);
      return;
    }
    if (expected) linearizable++;
  }
  t.log(`${linearizable} of 3000 linearizable`);
  t.true(linearizable > 300 && linearizable < 2700, 'both outcomes are exercised');
});

/** A real atomic register or counter: each op takes effect at one random point inside its interval
 *  (unknown-outcome writes: at a random later point, or never). */
function simulated(rng: Rng, n: number, counter: boolean, clients = 5): ChaosOp[] {
  const free = new Array<number>(clients).fill(0);
  const effects: { at: number; h: ChaosOp }[] = [];
  const ops: ChaosOp[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % clients;
    const a = free[c]! + rng() * 2;
    const b = a + 1 + rng() * 20;
    const isGet = rng() < 0.4;
    const info = !isGet && rng() < 0.01;
    const key = counter ? C : R;
    const o: ChaosOp['op'] = isGet ? { type: 'get' } : counter ? { type: 'incr', by: 1 } : rng.chance(0.7) ? { type: 'put', value: `w${i}` } : { type: 'cas', expected: null, value: `w${i}` };
    const h = op(`c${c}`, key, o, a, info ? null : b);
    ops.push(h);
    if (!info || rng.chance(0.5)) effects.push({ at: info ? a + rng() * 200 : a + rng() * (b - a), h });
    free[c] = b + (info ? 30 : 0);
  }
  effects.sort((x, y) => x.at - y.at);
  let state: KvState = null;
  let lastSeenBy = new Map<string, string | null>();
  for (const { h } of effects) {
    if (h.op.type === 'cas') {
      // Expect what this client last read (or null), so some swap and some do not.
      (h.op as { expected: string | null }).expected = lastSeenBy.get(h.client) ?? null;
    }
    const t: { next: KvState } = kvStep(state, h.op, undefined)!;
    if (h.status === 'ok') {
      if (h.op.type === 'get') {
        h.result = state;
        if (typeof state === 'string' || state === null) lastSeenBy.set(h.client, state as string | null);
      }
      if (h.op.type === 'incr') h.result = t.next;
      if (h.op.type === 'cas') h.result = state === h.op.expected;
    }
    state = t.next;
  }
  lastSeenBy = new Map();
  // Ops that never took effect: a read with no effect point never happens (reads always take effect); info writes may be absent.
  return ops;
}

test('checker: long simulated histories of a real store pass; one corrupted read fails', (t) => {
  const rng = createRng(7);
  for (const counter of [false, true]) {
    const h = simulated(rng, counter ? 2000 : 6000, counter);
    const started = performance.now();
    const ok = checkKvKey(canonicalize(h, !counter));
    t.is(ok.ok, true, `${counter ? 'counter' : 'register'} history passes`);
    t.log(`${counter ? 'counter' : 'register'}: ${ok.ops} ops, ${ok.steps} steps, ${Math.round(performance.now() - started)} ms`);
    // Corrupt one read in the middle to the value it saw two writes earlier (stale) or an unseen count.
    const reads = h.filter((x) => x.op.type === 'get' && x.status === 'ok' && x.result !== null);
    const victim = reads[reads.length >> 1]!;
    const bad = h.map((x) => (x === victim ? { ...x, result: counter ? (victim.result as number) + 50 : 'never-written' } : x));
    t.is(checkKvKey(canonicalize(bad, !counter)).ok, false, `${counter ? 'counter' : 'register'} corruption caught`);
  }
});

// ---- the short chaos run ------------------------------------------------------------------------

test.serial('chaos: faults of every kind, classic and shared clients over a populated key space, linearizable, nothing acknowledged lost', async (t) => {
  const run = await runChaos({
    durationMs: 50_000,
    // On a busy machine restarts are slow: keep going (up to 100 s) until every kind was injected.
    untilEveryKindMs: 100_000,
    seed: 20240601,
    clients: 4,
    // Issue 18: one ClusterClient shared by many concurrent callers (defaults: 64 callers, 8 s request timeout).
    sharedClients: 1,
    // A state of 10,000 × 256-byte values (~3 MB) before the faults: snapshots and InstallSnapshot carry it.
    dataKeys: 10_000,
    holdMs: [800, 2500],
    quietMs: [300, 1500],
    progressEveryMs: 15_000,
    log: (l) => t.log(l),
  });
  const s = run.summary;
  t.log(JSON.stringify({
    operations: s.operations, refusals: s.refusals, faults: s.faults, anomalies: s.anomalies.length, durationSec: s.durationSec, checkMs: s.check.ms,
    sharedClients: s.sharedClients, dataKeys: s.dataKeys,
  }));
  t.deepEqual(s.anomalies, [], 'no anomaly');
  t.deepEqual(s.undecidedKeys, [], 'every key decided');
  for (const kind of FAULT_KINDS) t.true(s.faults[kind] >= 1, `fault ${kind} injected`);
  const o = s.operations;
  t.true(o.put.ok + o.cas.ok >= 100, `enough acknowledged register writes (${o.put.ok + o.cas.ok})`);
  t.true(o.get.ok >= 100, `enough linearizable reads (${o.get.ok})`);
  t.true(o.incr.ok >= 30, `enough acknowledged increments (${o.incr.ok})`);
  t.true(o.cas.ok > 10 && o.cas.fail > 0, `cas both succeeded (${o.cas.ok}) and failed (${o.cas.fail})`);
  // The population and the shared client are in the summary and in the checked history.
  t.is(s.dataKeys.keys, 10_000);
  t.is(s.dataKeys.population?.keys, 10_000);
  t.is(s.dataKeys.check.checked, 10_000, 'every data key checked');
  t.true(s.dataKeys.check.ops > 20_000, `data keys: population, run and final reads (${s.dataKeys.check.ops} ops)`);
  t.is(s.sharedClients.clients, 1);
  t.is(s.sharedClients.perClient[0]!.callers, s.sharedClients.callersPerClient);
  t.true(s.sharedClients.perClient[0]!.applied >= 1000, `the shared client's writes applied (${s.sharedClients.perClient[0]!.applied})`);
  t.true(run.history.some((h) => h.client.startsWith('s0.') && h.key.startsWith('chaos/d') && h.status === 'ok'), 'shared callers used the data keys');
  // The final reads (after the final full restart) are part of the checked history: 8 keys + every data key.
  t.is(run.history.filter((h) => h.client === 'final').length, 8 + 10_000);
  // Everything was healed at the end, and every process this run started is gone.
  t.true(run.events.some((e) => e.kind === 'final'));
  t.is(run.finalPids.length, 6, 'three members and three NATS servers were running at the end');
  for (const pid of run.finalPids) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `pid ${pid} stopped`);
});
