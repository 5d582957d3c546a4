import { concatBytes } from '../src/bytes.ts';
/**
 * Property: random persist batches, snapshots and crashes on SimFileSystem. After every
 * crash + load, everything whose promise had resolved is there, and what load returns is
 * exactly the model's state after some prefix of the issued operations (never a mix that
 * no prefix explains, never resurrected or invented entries).
 */
import test from 'ava';
import fc from 'fast-check';
import { deepStrictEqual, ok } from 'node:assert/strict';
import { EntryType } from '../src/raft/types.ts';
import type { Entry, NodeId, Snapshot } from '../src/raft/types.ts';
import type { LoadedState } from '../src/storage/types.ts';
import { DiskRaftStorage } from '../src/storage/raft-storage.ts';
import { SimFileSystem } from '../src/storage/sim-fs.ts';

const DIR = '/n';
const SEGMENT_BYTES = 400;

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface ModelState {
  snapIndex: number;
  snapTerm: number;
  snapData: Uint8Array | null;
  entries: Entry[];
  term: number;
  vote: NodeId | null;
  commit: number;
  /**
   * The commit index is fsynced only together with entries (or in a snapshot file): a commit-only
   * change may be lost in a crash (it is volatile in Raft). This is what must survive.
   */
  syncedCommit: number;
}

type Step =
  | { kind: 'persist'; back: number; count: number; bumpTerm: boolean; vote: boolean; commitAdvance: number; size: number; omitHardState: boolean }
  | { kind: 'snapshot'; pick: number; discard: boolean }
  | { kind: 'settle'; turns: number; pickSeed: number }
  | { kind: 'crash'; seed: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('persist' as const),
      back: fc.nat({ max: 4 }),
      count: fc.nat({ max: 4 }),
      bumpTerm: fc.nat({ max: 4 }).map((n) => n === 0),
      vote: fc.boolean(),
      commitAdvance: fc.nat({ max: 4 }),
      size: fc.integer({ min: 0, max: 120 }),
      omitHardState: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), pick: fc.nat({ max: 8 }), discard: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('settle' as const), turns: fc.integer({ min: 1, max: 6 }), pickSeed: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('crash' as const), seed: fc.nat() }) },
);

const lastIndex = (s: ModelState) => s.snapIndex + s.entries.length;
const termAt = (s: ModelState, i: number) => (i === s.snapIndex ? s.snapTerm : s.entries[i - s.snapIndex - 1]?.term);

function sameLog(loaded: LoadedState, s: ModelState): boolean {
  try {
    deepStrictEqual(loaded.snapshot?.meta.index ?? 0, s.snapIndex);
    deepStrictEqual(loaded.snapshot?.meta.term ?? 0, s.snapTerm);
    deepStrictEqual(loaded.snapshot ? concatBytes(loaded.snapshot.data) : null, s.snapData);
    deepStrictEqual(loaded.entries, s.entries);
    return true;
  } catch {
    return false;
  }
}

interface Issued {
  after: ModelState;
  status: 'pending' | 'resolved' | 'rejected';
}

async function runScenario(steps: Step[], timers: boolean): Promise<void> {
  const pending: (() => void)[] = [];
  const sim = new SimFileSystem({ schedule: timers ? (_ms, fn) => pending.push(fn) : undefined, tornWriteProbability: 0.7 });
  let epoch = 0;
  let unexpected: unknown = null;

  const flush = () => new Promise((r) => setImmediate(r));
  const runUntilSettled = async <T>(p: Promise<T>): Promise<T> => {
    let settled = false;
    void p.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (let guard = 0; !settled; guard++) {
      ok(guard < 10_000, 'operation never settled');
      await flush();
      if (!settled) pending.shift()?.();
    }
    return p;
  };
  const open = async () => {
    // Each incarnation gets its own session: the dead one's continuations must not touch the disk.
    const storage = new DiskRaftStorage({ fs: sim.session(), dir: DIR, segmentBytes: SEGMENT_BYTES });
    return { storage, loaded: await runUntilSettled(storage.load()) };
  };
  const toModel = (l: LoadedState): ModelState => ({
    snapIndex: l.snapshot?.meta.index ?? 0,
    snapTerm: l.snapshot?.meta.term ?? 0,
    snapData: l.snapshot ? concatBytes(l.snapshot.data) : null,
    entries: l.entries,
    term: l.hardState.term,
    vote: l.hardState.vote,
    commit: l.hardState.commit,
    syncedCommit: l.hardState.commit,
  });

  let { storage, loaded } = await open();
  let base = toModel(loaded);
  let issued: Issued[] = [];
  let resolvedCount = 0;
  const current = () => issued.at(-1)?.after ?? base;

  const track = (p: Promise<void>, after: ModelState) => {
    const item: Issued = { after, status: 'pending' };
    const position = issued.length;
    const list = issued;
    const opEpoch = epoch;
    issued.push(item);
    p.then(
      () => {
        item.status = 'resolved';
        // Writes are acknowledged in call order.
        if (list === issued && position !== resolvedCount) unexpected ??= new Error(`op ${position} resolved before op ${resolvedCount}`);
        if (list === issued) resolvedCount++;
      },
      (err) => {
        item.status = 'rejected';
        if (opEpoch === epoch) unexpected ??= err; // only a crash may fail a write
      },
    );
  };

  const checkAfterCrash = (l: LoadedState) => {
    const states = [base, ...issued.map((i) => i.after)];
    const durable = issued.filter((i) => i.status === 'resolved').length;
    const candidates = states.slice(durable);
    ok(
      candidates.some((s) => sameLog(l, s)),
      `loaded log (snap ${l.snapshot?.meta.index ?? 0}, last ${(l.snapshot?.meta.index ?? 0) + l.entries.length}) matches no state after ${durable}..${states.length - 1} ops`,
    );
    ok(
      candidates.some((s) => s.term === l.hardState.term && s.vote === l.hardState.vote),
      `term/vote ${l.hardState.term}/${l.hardState.vote} matches no prefix state`,
    );
    const last = (l.snapshot?.meta.index ?? 0) + l.entries.length;
    ok(l.hardState.commit >= candidates[0]!.syncedCommit, `commit ${l.hardState.commit} below acknowledged and synced ${candidates[0]!.syncedCommit}`);
    ok(l.hardState.commit <= Math.min(last, candidates.at(-1)!.commit), `commit ${l.hardState.commit} beyond log or issued`);
  };

  const crashAndReload = async (seed: number) => {
    sim.crash(mulberry32(seed));
    epoch++;
    await flush(); // let reactions of promises settled before the crash run
    ({ storage, loaded } = await open());
    checkAfterCrash(loaded);
    base = toModel(loaded);
    issued = [];
    resolvedCount = 0;
  };

  for (const step of steps) {
    if (unexpected) throw unexpected;
    const cur = current();
    if (step.kind === 'persist') {
      const term = cur.term + (step.bumpTerm ? 1 : 0);
      // A vote is cast at most once per term, when the term starts.
      const vote = step.bumpTerm ? (step.vote ? `n${term}` : null) : cur.vote;
      // Like Raft: never rewrite committed entries, never leave a gap.
      const start = Math.max(cur.commit + 1, lastIndex(cur) + 1 - step.back);
      const entries = Array.from({ length: step.count }, (_, k): Entry => ({
        index: start + k,
        term,
        type: EntryType.Command,
        data: new Uint8Array(step.size).fill((start + k + term) % 256),
      }));
      const newLast = entries.length > 0 ? start + entries.length - 1 : lastIndex(cur);
      const commit = Math.max(cur.commit, Math.min(cur.commit + step.commitAdvance, newLast));
      const changed = term !== cur.term || vote !== cur.vote || commit !== cur.commit;
      const hardState = changed || !step.omitHardState ? { term, vote, commit } : undefined;
      const kept = entries.length > 0 ? cur.entries.slice(0, start - cur.snapIndex - 1) : cur.entries;
      const syncedCommit = entries.length > 0 ? commit : cur.syncedCommit;
      const after: ModelState = { ...cur, term, vote, commit, syncedCommit, entries: [...kept, ...entries] };
      track(storage.persist({ hardState, entries }), after);
    } else if (step.kind === 'snapshot') {
      let snapshot: Snapshot;
      let after: ModelState;
      if (step.discard) {
        // A leader snapshot: at or past our commit, whatever our log holds there.
        const index = Math.max(cur.commit, cur.snapIndex + 1) + step.pick;
        snapshot = { meta: { index, term: cur.term, conf: { voters: ['n1'], learners: [] } }, data: [new Uint8Array([index % 256]), new Uint8Array([1])] };
        after = { ...cur, snapIndex: index, snapTerm: cur.term, snapData: concatBytes(snapshot.data), entries: [], commit: index, syncedCommit: index };
      } else {
        if (cur.commit <= cur.snapIndex) continue;
        const index = cur.snapIndex + 1 + (step.pick % (cur.commit - cur.snapIndex));
        const term = termAt(cur, index)!;
        snapshot = { meta: { index, term, conf: { voters: ['n1'], learners: [] } }, data: [new Uint8Array([index % 256, 2])] };
        after = { ...cur, snapIndex: index, snapTerm: term, snapData: concatBytes(snapshot.data), entries: cur.entries.slice(index - cur.snapIndex) };
      }
      const saved = storage.saveSnapshot(snapshot, { discardLog: step.discard });
      track(saved, after);
      // An own snapshot is written outside the writer queue and made the base later: the model
      // (one linear order of acknowledgements) waits for it. storage-raft-storage tests cover
      // appends and crashes while one is being written.
      if (!step.discard) await runUntilSettled(saved);
    } else if (step.kind === 'settle') {
      const rng = mulberry32(step.pickSeed);
      // Complete a few syncs (in random order) with a random number of microtask turns
      // between them, so crashes land anywhere inside a write.
      for (let k = 0; k < step.turns; k++) {
        if (pending.length > 0) pending.splice(Math.floor(rng() * pending.length), 1)[0]!();
        for (let tick = Math.floor(rng() * 12); tick >= 0; tick--) await Promise.resolve();
      }
    } else {
      await crashAndReload(step.seed);
    }
  }
  // Finish everything: all issued writes must be acknowledged and survive a crash.
  for (let guard = 0; issued.some((i) => i.status === 'pending'); guard++) {
    ok(guard < 10_000, 'writes never completed');
    await flush();
    pending.shift()?.();
  }
  if (unexpected) throw unexpected;
  ok(issued.every((i) => i.status === 'resolved'), 'a write failed without a crash');
  const final = current();
  await crashAndReload(1);
  ok(sameLog(loaded, final), 'fully acknowledged state not loaded');
  deepStrictEqual([loaded.hardState.term, loaded.hardState.vote], [final.term, final.vote]);
  ok(loaded.hardState.commit >= final.syncedCommit && loaded.hardState.commit <= final.commit, `commit ${loaded.hardState.commit} outside [${final.syncedCommit}, ${final.commit}]`);
}

test('after any crash, load returns a prefix state that includes every acknowledged write', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 60 }), fc.nat({ max: 3 }).map((n) => n > 0), (steps, timers) => runScenario(steps, timers)),
    { numRuns: 1000 },
  );
  t.pass();
});

test('regression: a commit-only record left unsynced in a segment that then rotates is synced before the rotation', async (t) => {
  // Found by the property above: 3 entries nearly fill the 400-byte segment; a commit-only change
  // is written there without a datasync; the next entries rotate to a new segment and the datasync
  // there did not cover the old one's commit record, so a crash loaded a commit below the acknowledged one.
  const p = { back: 0, vote: false, size: 0, omitHardState: false };
  await runScenario([
    { kind: 'persist', ...p, count: 3, bumpTerm: false, commitAdvance: 0, size: 114 },
    { kind: 'settle', turns: 1, pickSeed: 0 },
    { kind: 'persist', ...p, count: 0, bumpTerm: true, commitAdvance: 1 },
    { kind: 'settle', turns: 1, pickSeed: 2069095 },
    { kind: 'persist', ...p, count: 1, bumpTerm: true, commitAdvance: 0 },
  ], false);
  t.pass();
});

test('regression: an own snapshot after a leader snapshot whose persist is still in flight', async (t) => {
  // Found by the property above once own snapshots were written outside the writer queue.
  await runScenario([
    { kind: 'persist', back: 0, count: 2, bumpTerm: true, vote: false, commitAdvance: 0, size: 0, omitHardState: false },
    { kind: 'snapshot', pick: 0, discard: true },
    { kind: 'settle', turns: 3, pickSeed: 1439017827 },
    { kind: 'persist', back: 0, count: 1, bumpTerm: false, vote: false, commitAdvance: 1, size: 0, omitHardState: false },
    { kind: 'snapshot', pick: 0, discard: false },
    { kind: 'settle', turns: 1, pickSeed: 0 },
  ], false);
  t.pass();
});
