/**
 * Checks a chaos history (src/chaos/workload.ts):
 *
 * 1. linearizability per key (src/check/kv-linearizability.ts), including the final reads taken
 *    after the last full restart (client "final"), so a lost acknowledged write fails here;
 * 2. store revisions: a revision never goes backwards in real time (an op invoked after another
 *    completed sees at least its revision; a successful write gets a higher one), a value has one
 *    modRevision, a modRevision belongs to one value of one key, a read's kv is not newer than the
 *    revision it reports;
 * 3. the final state: each counter equals its acknowledged increments plus some of the
 *    outcome-unknown ones (never a refused one); a register written by an acknowledged write is
 *    not empty and holds a value some write that may have happened wrote;
 * 4. refusals: a write the metadata center refused (a MetaError other than casFailed, recorded as
 *    `fail`) never took effect: no read, no successful cas expectation and no final read may
 *    observe its unique value. (The linearizability check leaves refused writes out of the model,
 *    so it fails too; this check names the refusal and the read that contradicts it.)
 *
 * Data keys (`chaos/d<i>`, up to 100,000s of them, most with a handful of ops) are registers for
 * the model and are checked one key at a time like the others; the report aggregates them
 * (`dataKeys`) instead of listing each one.
 *
 * Any anomaly comes with the minimal failing window of that key: the history is cut at the
 * earliest time where it already fails, then reads and failed cas ops (constraints without
 * effect), and writes of values nobody observed, are removed while the rest still fails. Each
 * step only removes or weakens what cannot create a violation, so the window is a real witness.
 *
 * Preprocessing for the search: values nobody observed (never read, never a cas expectation) are
 * all replaced by one placeholder, which changes no step of the model (no read or cas can tell them
 * apart) and lets the outcome-unknown writes of such values share one symmetry class.
 */
import { checkKvKey, describeKvOp, type KvCheckOptions, type KvHistoryOp, type KvKeyOutcome } from '../check/kv-linearizability.ts';
import { isPopulation, isRefusal, type ChaosOp, type OpKind, type Outcome } from './workload.ts';

export type AnomalyKind = 'linearizability' | 'revision' | 'final' | 'refusal' | 'liveness';

export interface Anomaly {
  kind: AnomalyKind;
  key?: string;
  message: string;
  /** The minimal failing window (linearizability), or the ops involved. */
  window: ChaosOp[];
}

export interface ChaosCheckOptions extends KvCheckOptions {
  registers: readonly string[];
  counters: readonly string[];
  /** Populated data keys: registers for the model, aggregated in the report. */
  dataKeys?: readonly string[];
  /** Wall-clock budget for shrinking one anomaly's window (ms). Default 30,000. */
  shrinkBudgetMs?: number;
  /** Wall-clock budget for shrinking all anomalies (ms); later ones keep the search's own window. Default 120,000. */
  totalShrinkBudgetMs?: number;
}

/** The data keys' results, aggregated. */
export interface DataKeysReport {
  keys: number;
  /** Data keys with at least one op in the history. */
  checked: number;
  ops: number;
  maxOpsPerKey: number;
  steps: number;
  maxStepsPerKey: number;
  anomalies: number;
  undecided: number;
}

export interface ChaosCheckReport {
  anomalies: Anomaly[];
  /** Keys whose search ran out of budget (neither proven nor refuted). */
  undecided: string[];
  /** Registers and counters, one entry each (data keys are aggregated in `dataKeys`). */
  keys: Record<string, { ops: number; steps: number; result: 'ok' | 'anomaly' | 'undecided' }>;
  dataKeys: DataKeysReport;
  /** Unknown-outcome writes later seen to have taken effect, by error name (NoQuorumError among them would mean the client's NoQuorumError is not a "did not happen"). */
  unknownButApplied: Record<string, number>;
  unknownButAppliedExamples: ChaosOp[];
  checkMs: number;
}

const UNOBSERVED = '\u0000unobserved';

export function checkChaosHistory(history: readonly ChaosOp[], o: ChaosCheckOptions): ChaosCheckReport {
  const started = performance.now();
  const anomalies: Anomaly[] = [];
  const undecided: string[] = [];
  const keys: ChaosCheckReport['keys'] = {};
  const dataSet = new Set(o.dataKeys ?? []);
  const registerSet = new Set([...o.registers, ...dataSet]);
  const data: DataKeysReport = { keys: dataSet.size, checked: 0, ops: 0, maxOpsPerKey: 0, steps: 0, maxStepsPerKey: 0, anomalies: 0, undecided: 0 };
  const byKey = groupByKey(history);
  const shrinkDeadline = performance.now() + (o.totalShrinkBudgetMs ?? 120_000);
  for (const key of [...byKey.keys()].sort()) {
    const ops = byKey.get(key)!;
    const canon = canonicalize(ops, registerSet.has(key));
    const out = checkKvKey(canon, o);
    const result = out.ok === true ? 'ok' : out.ok === false ? 'anomaly' : 'undecided';
    if (dataSet.has(key)) {
      data.checked++;
      data.ops += out.ops;
      data.maxOpsPerKey = Math.max(data.maxOpsPerKey, out.ops);
      data.steps += out.steps;
      data.maxStepsPerKey = Math.max(data.maxStepsPerKey, out.steps);
      if (result === 'anomaly') data.anomalies++;
      if (result === 'undecided') data.undecided++;
    } else keys[key] = { ops: out.ops, steps: out.steps, result };
    if (out.ok === 'unknown') undecided.push(key);
    if (out.ok === false) {
      // Shrinking costs up to shrinkBudgetMs per anomaly: once the total budget is spent, the
      // search's own window (the ops around the stuck one) is reported as it is.
      anomalies.push(performance.now() < shrinkDeadline ? linearizabilityAnomaly(key, ops, canon, out, o) : unshrunkAnomaly(key, ops, out));
    }
  }
  anomalies.push(...checkRevisions(history));
  anomalies.push(...checkFinal(history, o, byKey));
  anomalies.push(...checkRefusals(history));
  const { counts, examples } = unknownButApplied(history, registerSet);
  return { anomalies, undecided, keys, dataKeys: data, unknownButApplied: counts, unknownButAppliedExamples: examples, checkMs: Math.round(performance.now() - started) };
}

function groupByKey(history: readonly ChaosOp[]): Map<string, ChaosOp[]> {
  const byKey = new Map<string, ChaosOp[]>();
  for (const h of history) {
    let l = byKey.get(h.key);
    if (!l) byKey.set(h.key, (l = []));
    l.push(h);
  }
  return byKey;
}

/** Checker input for one key: unobserved values become one placeholder; info ops get symmetry classes. */
export function canonicalize(ops: readonly ChaosOp[], register: boolean): KvHistoryOp[] {
  const observed = new Set<unknown>();
  for (const h of ops) {
    if (h.op.type === 'get' && h.status === 'ok') observed.add(h.result);
    if (h.op.type === 'cas') observed.add(h.op.expected);
  }
  const canonValue = (v: string) => (!register || observed.has(v) ? v : UNOBSERVED);
  return ops.map((h) => {
    const c: KvHistoryOp = { id: h.id, client: h.client, key: h.key, op: h.op, invokeAt: h.invokeAt, completeAt: h.completeAt, result: h.result, status: h.status };
    if (h.op.type === 'put') c.op = { type: 'put', value: canonValue(h.op.value) };
    if (h.op.type === 'cas') c.op = { type: 'cas', expected: h.op.expected, value: canonValue(h.op.value) };
    if (h.status === 'info') c.symmetry = symmetryOf(c.op);
    return c;
  });
}

/** Outcome-unknown ops that are interchangeable: same op, no distinguishing value. */
function symmetryOf(op: KvHistoryOp['op']): string | undefined {
  if (op.type === 'incr') return `incr:${op.by}`;
  if (op.type === 'put' && op.value === UNOBSERVED) return 'put:unobserved';
  if (op.type === 'cas' && op.value === UNOBSERVED) return `cas:${JSON.stringify(op.expected)}:unobserved`;
  return undefined;
}

// ---- the minimal failing window ------------------------------------------------------------------

function linearizabilityAnomaly(key: string, ops: ChaosOp[], canon: KvHistoryOp[], out: Extract<KvKeyOutcome, { ok: false }>, o: ChaosCheckOptions): Anomaly {
  const byId = new Map(ops.map((h) => [h.id, h]));
  const { window, reason } = shrink(canon, o, out.reason);
  return {
    kind: 'linearizability',
    key,
    message: `key ${key}: ${reason.replaceAll(JSON.stringify(UNOBSERVED), '<a value no read observed>')}`,
    // Report the original ops (real values), as they were recorded.
    window: window.map((c) => byId.get(c.id)!),
  };
}

function unshrunkAnomaly(key: string, ops: ChaosOp[], out: Extract<KvKeyOutcome, { ok: false }>): Anomaly {
  const byId = new Map(ops.map((h) => [h.id, h]));
  return {
    kind: 'linearizability',
    key,
    message: `key ${key}: ${out.reason.replaceAll(JSON.stringify(UNOBSERVED), '<a value no read observed>')} (window not shrunk: shrink budget spent)`,
    window: out.window.map((c) => byId.get(c.id)!),
  };
}

const fails = (ops: KvHistoryOp[], o: KvCheckOptions): Extract<KvKeyOutcome, { ok: false }> | null => {
  const r = checkKvKey(ops, o);
  return r.ok === false ? r : null;
};

/**
 * Shrinks a failing key history to a small witness. Every step keeps "linearizable ⇒ still
 * linearizable" for the removed or weakened part, so a failing result stays a real violation:
 * - cut at time T: ops invoked later go, completions after T become unknown (writes) or go (reads);
 * - reads and cas ops that answered false have no effect: removing them only removes constraints;
 * - once no false cas is left, a write of a value no remaining op observes can be removed: in any
 *   linearization only ops that cannot tell its value from the previous one follow it.
 */
export function shrink(ops: KvHistoryOp[], o: ChaosCheckOptions, reason: string): { window: KvHistoryOp[]; reason: string } {
  const deadline = performance.now() + (o.shrinkBudgetMs ?? 30_000);
  const budget = { ...o, maxStepsPerKey: Math.min(o.maxStepsPerKey ?? 20_000_000, 2_000_000) };
  let cur = ops;
  let last = reason;
  // 1. The earliest cut that still fails (failure is monotone in T: prefixes of linearizable histories are linearizable).
  const times = [...new Set(ops.filter((h) => h.status === 'ok').map((h) => h.completeAt!))].sort((a, b) => a - b);
  let lo = 0;
  let hi = times.length - 1;
  while (lo < hi && performance.now() < deadline) {
    const mid = (lo + hi) >> 1;
    if (fails(cut(ops, times[mid]!), budget)) hi = mid;
    else lo = mid + 1;
  }
  const cutOps = cut(ops, times[hi] ?? Infinity);
  const cutFail = fails(cutOps, budget);
  if (cutFail) {
    cur = cutOps;
    last = cutFail.reason;
  }
  // 2. Remove constraint-only ops (reads, false cas), then unobserved writes, in shrinking chunks.
  const constraintOnly = (h: KvHistoryOp) => h.op.type === 'get' || (h.op.type === 'cas' && h.status === 'ok' && h.result === false);
  const removeWhile = (candidate: (h: KvHistoryOp, rest: KvHistoryOp[]) => boolean) => {
    let chunk = Math.max(1, cur.filter((h) => candidate(h, cur)).length >> 1);
    for (;;) {
      const cands = cur.filter((h) => candidate(h, cur));
      let removed = false;
      for (let i = 0; i < cands.length && performance.now() < deadline; i += chunk) {
        const drop = new Set(cands.slice(i, i + chunk).map((h) => h.id));
        const next = cur.filter((h) => !drop.has(h.id));
        if (candidate === writeCandidate && !writesRemovable(next, drop, cur)) continue;
        const f = fails(next, budget);
        if (f) {
          cur = next;
          last = f.reason;
          removed = true;
        }
      }
      if (performance.now() >= deadline) return;
      if (!removed) {
        if (chunk === 1) return;
        chunk = Math.max(1, chunk >> 1);
      }
    }
  };
  const writeCandidate = (h: KvHistoryOp, rest: KvHistoryOp[]) => (h.op.type === 'put' || (h.op.type === 'cas' && !constraintOnly(h))) && !observedIn(rest, h);
  removeWhile(constraintOnly);
  if (!cur.some((h) => h.op.type === 'cas' && h.status === 'ok' && h.result === false)) removeWhile(writeCandidate);
  return { window: [...cur].sort((a, b) => a.invokeAt - b.invokeAt), reason: last };
}

function observedIn(ops: KvHistoryOp[], w: KvHistoryOp): boolean {
  const v = w.op.type === 'put' || w.op.type === 'cas' ? w.op.value : undefined;
  return ops.some((h) => (h.op.type === 'get' && h.status === 'ok' && h.result === v) || (h.op.type === 'cas' && h.op.expected === v));
}

/** Writes may go only if no false cas remains and no remaining op observes their values. */
function writesRemovable(next: KvHistoryOp[], drop: Set<KvHistoryOp['id']>, cur: KvHistoryOp[]): boolean {
  if (next.some((h) => h.op.type === 'cas' && h.status === 'ok' && h.result === false)) return false;
  return cur.filter((h) => drop.has(h.id)).every((w) => !observedIn(next, w));
}

/** The history as known at time T. */
function cut(ops: KvHistoryOp[], T: number): KvHistoryOp[] {
  const out: KvHistoryOp[] = [];
  for (const h of ops) {
    if (h.invokeAt > T) continue;
    if (h.status === 'ok' && h.completeAt! > T) {
      if (h.op.type === 'get') continue;
      out.push({ ...h, status: 'info', completeAt: null, result: undefined, symmetry: symmetryOf(h.op) });
    } else out.push(h);
  }
  return out;
}

// ---- revisions -----------------------------------------------------------------------------------

const isWriteOk = (h: ChaosOp) => h.status === 'ok' && (h.op.type === 'put' || h.op.type === 'incr' || (h.op.type === 'cas' && h.result === true));

export function checkRevisions(history: readonly ChaosOp[]): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const known = history.filter((h) => h.status === 'ok' && h.revision !== undefined && h.completeAt !== null);
  // (a) Real-time order: B invoked after A completed sees at least A's revision (more, if B wrote).
  const byComplete = [...known].sort((a, b) => a.completeAt! - b.completeAt!);
  const byInvoke = [...known].sort((a, b) => a.invokeAt - b.invokeAt);
  let j = 0;
  let max: ChaosOp | null = null;
  let reported = 0;
  for (const b of byInvoke) {
    while (j < byComplete.length && byComplete[j]!.completeAt! < b.invokeAt) {
      const a = byComplete[j++]!;
      if (!max || a.revision! > max.revision!) max = a;
    }
    if (!max) continue;
    const bad = isWriteOk(b) ? b.revision! <= max.revision! : b.revision! < max.revision!;
    if (bad && reported++ < 5) {
      anomalies.push({
        kind: 'revision',
        key: b.key,
        message: `revision went backwards: ${describeKvOp(b)} on ${b.key} reports store revision ${b.revision} but ${describeKvOp(max)} on ${max.key} completed before it was invoked with revision ${max.revision}`,
        window: [max, b],
      });
    }
  }
  // (b) One modRevision per value; one value (of one key) per modRevision.
  const revOfValue = new Map<string, ChaosOp>();
  const valueOfRev = new Map<number, ChaosOp>();
  const valueOf = (h: ChaosOp): unknown => (h.op.type === 'get' || h.op.type === 'incr' ? h.result : h.op.type === 'put' || h.op.type === 'cas' ? h.op.value : undefined);
  for (const h of history) {
    if (h.status !== 'ok' || h.modRevision === undefined || h.modRevision === 0) continue;
    if (h.op.type === 'cas' && h.result !== true) continue;
    const v = valueOf(h);
    const vk = `${h.key}\u0000${JSON.stringify(v)}`;
    const a = revOfValue.get(vk);
    if (a && a.modRevision !== h.modRevision && reported++ < 10) {
      anomalies.push({ kind: 'revision', key: h.key, message: `value ${JSON.stringify(v)} of ${h.key} seen with modRevision ${a.modRevision} and ${h.modRevision}`, window: [a, h] });
    }
    if (!a) revOfValue.set(vk, h);
    const b = valueOfRev.get(h.modRevision);
    if (b && (b.key !== h.key || JSON.stringify(valueOf(b)) !== JSON.stringify(v)) && reported++ < 10) {
      anomalies.push({ kind: 'revision', key: h.key, message: `modRevision ${h.modRevision} belongs to ${b.key}=${JSON.stringify(valueOf(b))} and to ${h.key}=${JSON.stringify(v)}`, window: [b, h] });
    }
    if (!b) valueOfRev.set(h.modRevision, h);
    if (h.op.type === 'get' && h.modRevision > h.revision! && reported++ < 10) {
      anomalies.push({ kind: 'revision', key: h.key, message: `read of ${h.key} returned modRevision ${h.modRevision} above the store revision ${h.revision} it reported`, window: [h] });
    }
  }
  return anomalies;
}

// ---- the final state -----------------------------------------------------------------------------

export function checkFinal(
  history: readonly ChaosOp[],
  o: { registers: readonly string[]; counters: readonly string[]; dataKeys?: readonly string[] },
  byKey: Map<string, ChaosOp[]> = groupByKey(history),
): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const counters = new Set(o.counters);
  let missing = 0;
  for (const key of [...o.registers, ...o.counters, ...(o.dataKeys ?? [])]) {
    const all = byKey.get(key) ?? [];
    let f: ChaosOp | undefined;
    for (const h of all) if (h.client === 'final' && h.op.type === 'get' && h.status === 'ok') f = h;
    const ops = all.filter((h) => h.client !== 'final');
    if (!f) {
      // 100,000 data keys without final reads would be 100,000 anomalies: report the first few.
      if (missing++ < 10) anomalies.push({ kind: 'final', key, message: `no final read of ${key}`, window: [] });
      continue;
    }
    if (counters.has(key)) {
      const acked = ops.filter((h) => h.op.type === 'incr' && h.status === 'ok');
      const unknown = ops.filter((h) => h.op.type === 'incr' && h.status === 'info');
      const refused = ops.filter((h) => h.op.type === 'incr' && h.status === 'fail');
      const value = f.result === null ? 0 : (f.result as number);
      if (typeof value !== 'number' || value < acked.length || value > acked.length + unknown.length) {
        const over = typeof value === 'number' ? value - acked.length - unknown.length : 0;
        anomalies.push({
          kind: 'final',
          key,
          message: `counter ${key} is ${JSON.stringify(f.result)} after the final restart; expected ${acked.length} acknowledged increments + 0..${unknown.length} unknown ones` +
            (typeof value === 'number' && value < acked.length ? ` (${acked.length - value} acknowledged increments lost)` : '') +
            (over > 0 && refused.length ? ` (${over} more than possible: ${refused.length} increments were refused and must not count)` : ''),
          window: over > 0 && refused.length ? [...refused.slice(0, 5), f] : [f],
        });
      }
      continue;
    }
    const writes = ops.filter((h) => (h.op.type === 'put' || h.op.type === 'cas') && h.outcome !== 'fail');
    const ackedWrites = writes.filter((h) => h.status === 'ok');
    if (f.result === null) {
      if (ackedWrites.length) {
        anomalies.push({ kind: 'final', key, message: `register ${key} is empty after the final restart, but ${ackedWrites.length} writes were acknowledged`, window: [ackedWrites.at(-1)!, f] });
      }
      continue;
    }
    const writer = writes.find((h) => (h.op.type === 'put' || h.op.type === 'cas') && h.op.value === f.result);
    if (!writer) {
      const refused = ops.find((h) => isRefusal(h) && (h.op.type === 'put' || h.op.type === 'cas') && h.op.value === f.result);
      anomalies.push({
        kind: 'final',
        key,
        message: `register ${key} holds ${JSON.stringify(f.result)}, which no write that may have happened wrote` + (refused ? ` (a write refused with ${refused.error} wrote it)` : ''),
        window: refused ? [refused, f] : [f],
      });
    }
  }
  if (missing > 10) anomalies.push({ kind: 'final', message: `no final read of ${missing} keys in all`, window: [] });
  return anomalies;
}

// ---- refused writes ------------------------------------------------------------------------------

/**
 * A write refused with a MetaError (status `fail`) must never take effect. Register values are
 * unique per write, so any read (or successful cas, or final read) of the key that observes the
 * refused write's value proves it was applied. (Counters: checkFinal and the linearizability
 * check, which leave refused increments out.)
 */
export function checkRefusals(history: readonly ChaosOp[]): Anomaly[] {
  const refused = new Map<string, ChaosOp>();
  for (const h of history) {
    if (isRefusal(h) && (h.op.type === 'put' || h.op.type === 'cas')) refused.set(`${h.key}\u0000${h.op.value}`, h);
  }
  if (refused.size === 0) return [];
  const anomalies: Anomaly[] = [];
  const reported = new Set<ChaosOp>();
  for (const h of history) {
    let v: unknown;
    if (h.op.type === 'get' && h.status === 'ok') v = h.result;
    else if (h.op.type === 'cas' && h.status === 'ok' && h.result === true) v = h.op.expected;
    else continue;
    if (typeof v !== 'string') continue;
    const w = refused.get(`${h.key}\u0000${v}`);
    if (!w || reported.has(w)) continue;
    reported.add(w);
    anomalies.push({
      kind: 'refusal',
      key: h.key,
      message: `a write refused with ${w.error ?? 'a MetaError'} took effect: ${describeKvOp(h)} on ${h.key} observed its value ${JSON.stringify(v)}`,
      window: [w, h],
    });
  }
  return anomalies;
}

// ---- unknown outcomes that did happen ------------------------------------------------------------

function unknownButApplied(history: readonly ChaosOp[], registers: ReadonlySet<string>): { counts: Record<string, number>; examples: ChaosOp[] } {
  const observed = new Set<string>();
  for (const h of history) {
    if (h.op.type === 'get' && h.status === 'ok' && typeof h.result === 'string') observed.add(`${h.key}\u0000${h.result}`);
  }
  const counts: Record<string, number> = {};
  const examples: ChaosOp[] = [];
  for (const h of history) {
    if (h.status !== 'info' || !registers.has(h.key) || (h.op.type !== 'put' && h.op.type !== 'cas')) continue;
    if (!observed.has(`${h.key}\u0000${h.op.value}`)) continue;
    const name = (h.error ?? 'unknown').split(/[:(]/)[0]!;
    counts[name] = (counts[name] ?? 0) + 1;
    if (name === 'NoQuorumError' && examples.length < 5) examples.push(h);
  }
  return { counts, examples };
}

// ---- summaries and printing ----------------------------------------------------------------------

/** The workload's ops by kind and outcome (not the final reads, not the data-key population). */
export function countOps(history: readonly ChaosOp[]): Record<OpKind, Record<Outcome, number>> & { total: number } {
  const out = { total: 0 } as Record<OpKind, Record<Outcome, number>> & { total: number };
  for (const k of ['put', 'get', 'cas', 'incr'] as const) out[k] = { ok: 0, fail: 0, info: 0 };
  for (const h of history) {
    if (h.client === 'final' || isPopulation(h)) continue;
    out[h.op.type][h.outcome]++;
    out.total++;
  }
  return out;
}

/** Writes the metadata center refused (MetaError other than casFailed), by error code. */
export function countRefusals(history: readonly ChaosOp[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const h of history) if (h.client !== 'final' && isRefusal(h)) out[h.code ?? 'unknown'] = (out[h.code ?? 'unknown'] ?? 0) + 1;
  return out;
}

/** One line per op, times in ms since `t0`. */
export function formatWindow(window: readonly ChaosOp[], t0: number): string[] {
  return window.map((h) => {
    const at = (x: number | null | undefined) => (x === null || x === undefined ? '   ?   ' : (x - t0).toFixed(1).padStart(9));
    const rev = h.revision !== undefined ? ` rev=${h.revision}${h.modRevision ? ` mod=${h.modRevision}` : ''}` : '';
    const err = h.error ? `  (${h.error.slice(0, 120)})` : '';
    return `  [${at(h.invokeAt)} .. ${at(h.completeAt ?? h.endedAt)}] #${String(h.id)} ${h.key} ${describeKvOp(h)}${h.outcome === 'fail' && h.status === 'ok' ? ' (casFailed)' : isRefusal(h) ? ' (refused)' : ''}${rev}${err}`;
  });
}

/**
 * formatWindow, at most `max` lines: a counter's window can hold hundreds of increments (none of
 * them can be dropped from the witness). Keeps the refused writes and the latest ops.
 */
export function formatWindowClipped(window: readonly ChaosOp[], t0: number, max = 40): string[] {
  if (window.length <= max) return formatWindow(window, t0);
  const keep = new Set(window.slice(-max));
  for (const h of window) if (isRefusal(h) && keep.size < max + 10) keep.add(h);
  const shown = window.filter((h) => keep.has(h));
  return [`  … ${window.length - shown.length} earlier ops of the window not shown (history.json has the whole history)`, ...formatWindow(shown, t0)];
}

export function formatAnomaly(a: Anomaly, t0: number): string {
  return [`ANOMALY (${a.kind}${a.key ? `, ${a.key}` : ''}): ${a.message}`, `  minimal failing window (${a.window.length} ops, ms since start):`, ...formatWindowClipped(a.window, t0)].join('\n');
}
