import { setup } from 'xstate';
import type { RaftMessage } from '../src/raft/messages.ts';
import type { RaftState } from '../src/raft/state.ts';
import type { SnapshotData } from '../src/raft/snapshot-data.ts';
import * as E from '../src/raft/election.ts';
import * as F from '../src/raft/follower.ts';
import * as L from '../src/raft/leader.ts';
import { compactTo } from '../src/raft/ready.ts';
import { canCampaign } from '../src/raft/state.ts';

/**
 * The Raft role chart. The machine decides; the node actor performs what it decided (see
 * src/raft/ready.ts). No timers, clock or randomness in here: the actor sends the timeouts and
 * stamps every event with its local monotonic time `now`.
 */
export type RaftEvent =
  | { type: 'ELECTION_TIMEOUT'; now: number }
  | { type: 'HEARTBEAT_TIMEOUT'; now: number }
  | { type: 'CHECK_QUORUM'; now: number }
  | { type: 'FLUSH_COMMIT'; now: number }
  | { type: 'MSG'; msg: RaftMessage; now: number }
  | { type: 'PROPOSE'; proposals: L.Proposal[]; now: number }
  | { type: 'READ_INDEX'; ids: number[]; now: number }
  | { type: 'TRANSFER_LEADER'; target: string; now: number }
  | { type: 'COMPACT'; index: number; data: SnapshotData; now: number };

export interface RaftContext {
  raft: RaftState;
}

const at = (context: RaftContext, event: RaftEvent): RaftState => {
  context.raft.now = event.now;
  return context.raft;
};
const msgOf = (event: RaftEvent): RaftMessage => (event as Extract<RaftEvent, { type: 'MSG' }>).msg;
const notLeader = (s: RaftState) => ({ code: 'notLeader' as const, leader: s.leader });

// Checked first in every role: lease, higher term, stale term (thesis §3.3, §9.6).
const termRules = [
  { guard: 'ignoredByLease' },
  { guard: 'higherTerm', target: 'follower', actions: ['adoptTerm', 'followerStep'] },
  { guard: 'staleTerm', actions: 'answerStale' },
] as const;
const fromLeader = { guard: 'fromLeader', target: 'follower', actions: ['acceptLeader', 'followerStep'] } as const;

export const raftMachine = setup({
  types: { context: {} as RaftContext, events: {} as RaftEvent, input: {} as { raft: RaftState } },
  guards: {
    ignoredByLease: ({ context, event }) => E.ignoredByLease(at(context, event), msgOf(event)),
    higherTerm: ({ context, event }) => E.isHigherTerm(at(context, event), msgOf(event)),
    staleTerm: ({ context, event }) => msgOf(event).term < at(context, event).term,
    fromLeader: ({ event }) => ['append', 'snapshot'].includes(msgOf(event).type),
    canCampaign: ({ context }) => canCampaign(context.raft),
    timeoutNow: ({ context, event }) => msgOf(event).type === 'timeoutNow' && canCampaign(context.raft),
    won: ({ context }) => E.voteOutcome(context.raft) === 'won',
    lost: ({ context }) => E.voteOutcome(context.raft) === 'lost',
    quorumLost: ({ context, event }) => !L.quorumActive(at(context, event)),
    removedFromConf: ({ context }) => L.removedAndCommitted(context.raft),
  },
  actions: {
    adoptTerm: ({ context, event }) => {
      const m = msgOf(event);
      E.becomeFollower(context.raft, m.term, m.type === 'append' || m.type === 'snapshot' ? m.from : null);
    },
    acceptLeader: ({ context, event }) => E.becomeFollower(context.raft, context.raft.term, msgOf(event).from),
    stepDown: ({ context }) => E.becomeFollower(context.raft, context.raft.term, null),
    answerStale: ({ context, event }) => E.answerStale(at(context, event), msgOf(event)),
    followerStep: ({ context, event }) => {
      const s = at(context, event);
      const m = msgOf(event);
      if (m.type === 'append') F.heardFromLeader(s, m.from), F.handleAppend(s, m);
      else if (m.type === 'snapshot') F.heardFromLeader(s, m.from), F.handleSnapshotChunk(s, m);
      else if (m.type === 'vote') E.handleVoteRequest(s, m);
    },
    candidateStep: ({ context, event }) => {
      const s = at(context, event);
      const m = msgOf(event);
      if (m.type === 'voteResp') E.recordVote(s, m);
      else if (m.type === 'vote') E.handleVoteRequest(s, m);
    },
    leaderStep: ({ context, event }) => {
      const s = at(context, event);
      const m = msgOf(event);
      if (m.type === 'appendResp') L.handleAppendResponse(s, m);
      else if (m.type === 'snapshotResp') L.handleSnapshotResponse(s, m);
      else if (m.type === 'vote') E.handleVoteRequest(s, m);
    },
    markTransfer: ({ context }) => void (context.raft.campaignTransfer = true),
    becomePreCandidate: ({ context }) => E.becomePreCandidate(context.raft),
    becomeCandidate: ({ context }) => E.becomeCandidate(context.raft),
    becomeLeader: ({ context }) => E.becomeLeader(context.raft),
    heartbeat: ({ context, event }) => L.broadcastHeartbeat(at(context, event)),
    flushCommit: ({ context, event }) => L.flushCommit(at(context, event)),
    resetRecentActive: ({ context }) => L.resetRecentActive(context.raft),
    propose: ({ context, event }) => L.propose(at(context, event), (event as Extract<RaftEvent, { type: 'PROPOSE' }>).proposals),
    read: ({ context, event }) => {
      for (const id of (event as Extract<RaftEvent, { type: 'READ_INDEX' }>).ids) L.registerRead(at(context, event), id);
    },
    transfer: ({ context, event }) => {
      const s = at(context, event);
      const err = L.startTransfer(s, (event as Extract<RaftEvent, { type: 'TRANSFER_LEADER' }>).target);
      if (err) s.out.proposals.push({ id: -1, error: err });
    },
    rejectNotLeader: ({ context, event }) => {
      const s = context.raft;
      if (event.type === 'PROPOSE') for (const p of event.proposals) s.out.proposals.push({ id: p.id, error: notLeader(s) });
      if (event.type === 'READ_INDEX') for (const id of event.ids) s.out.reads.push({ id, error: notLeader(s) });
    },
    compact: ({ context, event }) => {
      const e = event as Extract<RaftEvent, { type: 'COMPACT' }>;
      compactTo(at(context, event), e.index, e.data);
    },
  },
}).createMachine({
  id: 'raft',
  context: ({ input }) => ({ raft: input.raft }),
  initial: 'follower',
  on: {
    PROPOSE: { actions: 'rejectNotLeader' },
    READ_INDEX: { actions: 'rejectNotLeader' },
    COMPACT: { actions: 'compact' },
  },
  states: {
    follower: {
      on: {
        ELECTION_TIMEOUT: { guard: 'canCampaign', target: 'preCandidate' },
        MSG: [...termRules, { guard: 'timeoutNow', target: 'candidate', actions: 'markTransfer' }, { actions: 'followerStep' }],
      },
    },
    preCandidate: {
      entry: 'becomePreCandidate',
      always: [
        { guard: 'won', target: 'candidate' },
        { guard: 'lost', target: 'follower', actions: 'stepDown' },
      ],
      on: {
        ELECTION_TIMEOUT: { target: 'preCandidate', reenter: true },
        MSG: [...termRules, fromLeader, { actions: 'candidateStep' }],
      },
    },
    candidate: {
      entry: 'becomeCandidate',
      always: [
        { guard: 'won', target: 'leader' },
        { guard: 'lost', target: 'follower', actions: 'stepDown' },
      ],
      on: {
        ELECTION_TIMEOUT: { target: 'preCandidate' },
        MSG: [...termRules, fromLeader, { actions: 'candidateStep' }],
      },
    },
    leader: {
      entry: 'becomeLeader',
      always: { guard: 'removedFromConf', target: 'follower', actions: 'stepDown' },
      on: {
        HEARTBEAT_TIMEOUT: { actions: 'heartbeat' },
        FLUSH_COMMIT: { actions: 'flushCommit' },
        CHECK_QUORUM: [{ guard: 'quorumLost', target: 'follower', actions: 'stepDown' }, { actions: 'resetRecentActive' }],
        PROPOSE: { actions: 'propose' },
        READ_INDEX: { actions: 'read' },
        TRANSFER_LEADER: { actions: 'transfer' },
        MSG: [...termRules, { actions: 'leaderStep' }],
      },
    },
  },
});
