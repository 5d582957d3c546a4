import test from 'ava';
import fc from 'fast-check';
import { createActor } from 'xstate';
import { raftMachine } from '../machines/raft.ts';
import { appendEntries, appendFromLeader, hasMoreToApply, isUpToDate, lastIndex, newLog, nextToApply, termAt } from '../src/raft/log.ts';
import { quorumIndex } from '../src/raft/quorum.ts';
import { takeReady } from '../src/raft/ready.ts';
import { createRaftState, type Ready } from '../src/raft/state.ts';
import type { AppendRequest } from '../src/raft/messages.ts';
import { encodeConfEntry, latestConfIn } from '../src/raft/conf.ts';
import { handleAppend } from '../src/raft/follower.ts';
import { EntryType, type Entry } from '../src/raft/types.ts';

const entry = (index: number, term: number): Entry => ({ index, term, type: EntryType.Command, data: new Uint8Array([index]) });

test('quorumIndex is the highest index a majority has', (t) => {
  const m: Record<string, number> = { a: 5, b: 3, c: 9 };
  t.is(quorumIndex(['a', 'b', 'c'], (id) => m[id]!), 5);
  t.is(quorumIndex(['a', 'b', 'c', 'd', 'e'], (id) => ({ a: 1, b: 2, c: 3, d: 4, e: 5 })[id]!), 3);
});

test('appendFromLeader keeps matching entries and truncates at the first conflict', (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 12 }), fc.nat(12), (ours, theirs, cut) => {
      const mono = (xs: number[]) => xs.reduce<number[]>((acc, x) => [...acc, Math.max(x, acc.at(-1) ?? 1)], []);
      const a = mono(ours);
      const b = mono(theirs);
      const log = newLog(0, 0, a.map((term, i) => entry(i + 1, term)));
      const prev = Math.min(cut, a.length, b.length);
      // Only append when prev matches, as the follower does.
      if (prev > 0 && a[prev - 1] !== b[prev - 1]) return;
      const sent = b.slice(prev).map((term, i) => entry(prev + i + 1, term));
      appendFromLeader(log, prev, sent);
      for (const e of sent) t.is(termAt(log, e.index), e.term);
      t.true(lastIndex(log) >= prev + sent.length);
    }),
  );
});

test('committed entries are never truncated', (t) => {
  const log = newLog(0, 0, [entry(1, 1), entry(2, 1)]);
  log.committed = 2;
  t.throws(() => appendEntries(log, [entry(2, 2)]), { message: /truncating committed/ });
});

test('isUpToDate compares last term, then length (§5.4.1)', (t) => {
  const log = newLog(0, 0, [entry(1, 1), entry(2, 2)]);
  t.true(isUpToDate(log, 1, 3));
  t.true(isUpToDate(log, 2, 2));
  t.false(isUpToDate(log, 5, 1));
  t.false(isUpToDate(log, 1, 2));
});

test('a single voter elects itself through preCandidate and candidate and commits its no-op', (t) => {
  const raft = createRaftState({ id: 'n1', bootstrap: { voters: ['n1'], learners: [] }, hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] });
  const actor = createActor(raftMachine, { input: { raft } }).start();
  const seen: string[] = [];
  actor.subscribe((s) => seen.push(String(s.value)));
  actor.send({ type: 'ELECTION_TIMEOUT', now: 1000 });
  t.is(actor.getSnapshot().value, 'leader');
  t.is(raft.term, 1);
  const rd = takeReady(raft);
  t.deepEqual(rd.hardState, { term: 1, vote: 'n1', commit: 1 });
  t.is(rd.entries.length, 1);
  t.is(rd.committed[0]?.type, EntryType.Noop);
});

test('a follower inside the leader lease ignores a vote request of a higher term', (t) => {
  const raft = createRaftState({ id: 'n2', cfg: { electionTimeoutMinMs: 150 }, bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] }, hardState: { term: 1, vote: null, commit: 0 }, snapshot: null, entries: [] });
  const actor = createActor(raftMachine, { input: { raft } }).start();
  actor.send({ type: 'MSG', now: 100, msg: { type: 'append', from: 'n1', to: 'n2', term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [], commit: 0, round: 1 } });
  takeReady(raft);
  actor.send({ type: 'MSG', now: 150, msg: { type: 'vote', from: 'n3', to: 'n2', term: 2, pre: false, lastLogIndex: 5, lastLogTerm: 1, transfer: false } });
  t.is(raft.term, 1, 'term not disturbed');
  t.is(takeReady(raft).messages.length, 0);
  // After the lease expires the same request is granted.
  actor.send({ type: 'MSG', now: 400, msg: { type: 'vote', from: 'n3', to: 'n2', term: 2, pre: false, lastLogIndex: 5, lastLogTerm: 1, transfer: false } });
  t.is(raft.term, 2);
  const rd = takeReady(raft);
  t.like(rd.messages[0], { type: 'voteResp', granted: true });
  t.is(rd.hardState?.vote, 'n3');
});

test('a follower scanning only appended entries for configuration changes ends with the configuration of a full scan', (t) => {
  const boot = { voters: ['n1', 'n2', 'n3'], learners: [] };
  const confEntry = (index: number, term: number, voters: string[]): Entry => ({
    index, term, type: EntryType.ConfChange,
    data: encodeConfEntry({ change: { op: 'remove', node: 'x' }, conf: { voters, learners: [] } }),
  });
  // Random leader histories: each append overwrites the follower's log from a random point with
  // entries of a newer term, some of them configuration changes (so truncations drop some).
  const step = fc.record({ from: fc.nat(12), len: fc.integer({ min: 0, max: 6 }), confAt: fc.array(fc.nat(5), { maxLength: 2 }), voters: fc.subarray(['n1', 'n2', 'n3', 'n4'], { minLength: 1 }) });
  fc.assert(fc.property(fc.array(step, { minLength: 1, maxLength: 12 }), (steps) => {
    const s = createRaftState({ id: 'n2', bootstrap: boot, hardState: { term: 1, vote: null, commit: 0 }, snapshot: null, entries: [] });
    let term = 1;
    for (const st of steps) {
      term++;
      const prev = Math.min(st.from, lastIndex(s.log));
      const entries: Entry[] = [];
      for (let k = 0; k < st.len; k++) {
        const index = prev + 1 + k;
        entries.push(st.confAt.includes(k) ? confEntry(index, term, st.voters) : { index, term, type: EntryType.Command, data: new Uint8Array([k]) });
      }
      s.term = term;
      handleAppend(s, { type: 'append', from: 'n1', to: 'n2', term, prevLogIndex: prev, prevLogTerm: termAt(s.log, prev)!, entries, commit: 0, round: 0 });
      const full = latestConfIn(s.log.entries);
      if (full) t.deepEqual(s.conf, full.conf);
      else t.deepEqual(s.conf, boot);
      t.is(s.confIndex, full?.index ?? 0);
    }
  }), { numRuns: 300 });
});

/** n1 elected leader of three voters (term 1), its no-op (index 1) acknowledged by n2 and committed. */
function threeVoterLeader(commitFlushDelayMs: number) {
  const raft = createRaftState({
    id: 'n1', cfg: { commitFlushDelayMs }, bootstrap: { voters: ['n1', 'n2', 'n3'], learners: [] },
    hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [],
  });
  const actor = createActor(raftMachine, { input: { raft } }).start();
  const msg = (m: Record<string, unknown>, now: number) => actor.send({ type: 'MSG', now, msg: { from: 'n2', to: 'n1', ...m } as never });
  actor.send({ type: 'ELECTION_TIMEOUT', now: 1000 });
  msg({ type: 'voteResp', term: 1, pre: true, granted: true }, 1001);
  msg({ type: 'voteResp', term: 1, pre: false, granted: true }, 1002);
  assertLeader(actor.getSnapshot().value);
  takeReady(raft);
  const ack = (matchIndex: number, now: number) =>
    msg({ type: 'appendResp', term: 1, success: true, matchIndex, conflictIndex: 0, conflictTerm: 0, round: 0 }, now);
  return { raft, actor, ack };
}
function assertLeader(role: unknown): void {
  if (role !== 'leader') throw new Error(`expected leader, got ${String(role)}`);
}
const appendsTo = (rd: Ready, to: string) => rd.messages.filter((m): m is AppendRequest => m.type === 'append' && m.to === to);

test('a commit advance with nothing new to send waits for FLUSH_COMMIT; an append in between carries it instead', (t) => {
  const { raft, actor, ack } = threeVoterLeader(2);
  ack(1, 1010);
  let rd = takeReady(raft);
  t.is(raft.log.committed, 1);
  t.deepEqual(appendsTo(rd, 'n2'), [], 'no commit-only append at once');
  t.is(rd.flushCommitAfterMs, 2);
  actor.send({ type: 'FLUSH_COMMIT', now: 1012 });
  rd = takeReady(raft);
  t.like(appendsTo(rd, 'n2')[0], { entries: [], commit: 1 });
  t.is(rd.flushCommitAfterMs, null);
  t.false(rd.cancelCommitFlush);
  // A second write: acknowledged, committed; the next proposal's append carries the commit first.
  actor.send({ type: 'PROPOSE', now: 1020, proposals: [{ id: 1, data: new Uint8Array([7]) }] });
  takeReady(raft);
  ack(2, 1021);
  rd = takeReady(raft);
  t.is(raft.log.committed, 2);
  t.is(rd.flushCommitAfterMs, 2);
  actor.send({ type: 'PROPOSE', now: 1022, proposals: [{ id: 2, data: new Uint8Array([8]) }] });
  rd = takeReady(raft);
  t.like(appendsTo(rd, 'n2')[0], { commit: 2 });
  t.is(appendsTo(rd, 'n2')[0]!.entries.length, 1);
  t.true(rd.cancelCommitFlush, 'every follower was told by an append: the flush is called off');
  actor.send({ type: 'FLUSH_COMMIT', now: 1023 });
  rd = takeReady(raft);
  t.deepEqual(appendsTo(rd, 'n2'), [], 'the append already told n2');
});

test('commitFlushDelayMs 0 sends the commit-only append in the same step', (t) => {
  const { raft, ack } = threeVoterLeader(0);
  ack(1, 1010);
  const rd = takeReady(raft);
  t.like(appendsTo(rd, 'n2')[0], { entries: [], commit: 1 });
  t.is(rd.flushCommitAfterMs, null);
});

test('apply batches are bounded by bytes as well as count, always at least one entry', (t) => {
  const big = (index: number, bytes: number): Entry => ({ index, term: 1, type: EntryType.Command, data: new Uint8Array(bytes) });
  const log = newLog(0, 0, [big(1, 1 << 20), big(2, 1 << 20), big(3, 1 << 20), big(4, 5 << 20), big(5, 10)]);
  log.committed = 5;
  const first = nextToApply(log, 1024, 2 << 20);
  t.deepEqual(first.map((e) => e.index), [1, 2], 'stops once 2 MiB are reached');
  log.applied = 2;
  t.true(hasMoreToApply(log));
  t.deepEqual(nextToApply(log, 1024, 2 << 20).map((e) => e.index), [3, 4], 'the entry that crosses the limit is included');
  log.applied = 4;
  t.deepEqual(nextToApply(log, 1024, 1).map((e) => e.index), [5], 'at least one entry');
  t.deepEqual(nextToApply(log, 1).map((e) => e.index), [5]);
  log.applied = 5;
  t.false(hasMoreToApply(log));
  t.deepEqual(nextToApply(log, 1024, 2 << 20), []);
});
