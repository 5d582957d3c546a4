import { isUpToDate, lastIndex, lastTerm } from './log.ts';
import { tally, type VoteOutcome } from './quorum.ts';
import { EntryType } from './types.ts';
import type { RaftMessage, VoteRequest, VoteResponse } from './messages.ts';
import { otherVoters, send, syncProgress, type RaftState } from './state.ts';
import { appendLocal } from './leader.ts';

/** Leaving any role for follower: in `term` (>= current), following `leader` if known. */
export function becomeFollower(s: RaftState, term: number, leader: string | null): void {
  if (term > s.term) {
    s.term = term;
    s.vote = null;
  }
  const wasLeader = s.role === 'leader';
  s.role = 'follower';
  s.leader = leader;
  if (leader !== null) s.leaderContactAt = s.now;
  s.votes.clear();
  s.progress.clear();
  s.leadTransferee = null;
  s.campaignTransfer = false;
  s.termStartIndex = Number.MAX_SAFE_INTEGER;
  s.needBroadcast = false;
  s.commitBroadcast = false;
  if (wasLeader || s.reads.length || s.readsAwaitingCommit.length) rejectReads(s);
  s.out.resetElectionTimer = true;
}

export function rejectReads(s: RaftState): void {
  const error = { code: 'notLeader' as const, leader: s.leader };
  for (const r of s.reads) s.out.reads.push({ id: r.id, error });
  for (const id of s.readsAwaitingCommit) s.out.reads.push({ id, error });
  s.reads = [];
  s.readsAwaitingCommit = [];
  s.readRoundPending = false;
}

function requestVotes(s: RaftState, pre: boolean, term: number): void {
  for (const to of otherVoters(s)) {
    send(s, {
      type: 'vote', from: s.id, to, term, pre,
      lastLogIndex: lastIndex(s.log), lastLogTerm: lastTerm(s.log), transfer: s.campaignTransfer,
    });
  }
}

/** PreVote (thesis §9.6): ask whether we could win, without disturbing anyone's term. */
export function becomePreCandidate(s: RaftState): void {
  s.role = 'preCandidate';
  s.leader = null;
  s.votes = new Map([[s.id, true]]);
  s.out.resetElectionTimer = true;
  requestVotes(s, true, s.term + 1);
}

export function becomeCandidate(s: RaftState): void {
  s.role = 'candidate';
  s.term += 1;
  s.vote = s.id;
  s.leader = null;
  s.votes = new Map([[s.id, true]]);
  s.out.resetElectionTimer = true;
  requestVotes(s, false, s.term);
  s.campaignTransfer = false;
}

export function becomeLeader(s: RaftState): void {
  s.role = 'leader';
  s.leader = s.id;
  s.votes.clear();
  s.progress.clear();
  s.leadTransferee = null;
  s.round = 0;
  s.commitFlushPending = false;
  syncProgress(s);
  for (const pr of s.progress.values()) pr.recentActive = true;
  // A no-op of the new term lets the leader commit (and learn the commit index) at once (§8).
  s.termStartIndex = lastIndex(s.log) + 1;
  if (s.cfg.unsafe?.noNoopAtTermStart) return;
  appendLocal(s, [{ index: s.termStartIndex, term: s.term, type: EntryType.Noop, data: null }]);
}

export const voteOutcome = (s: RaftState): VoteOutcome => tally(s.conf.voters, s.votes);

/** A vote request the leader lease tells us to ignore (CheckQuorum + PreVote, thesis §9.6). */
export function ignoredByLease(s: RaftState, m: RaftMessage): boolean {
  if (m.type !== 'vote' || m.transfer || m.term <= s.term || s.cfg.unsafe?.skipLeaseCheck) return false;
  if (s.leader === null) return false;
  return s.role === 'leader' || s.now - s.leaderContactAt < s.cfg.electionTimeoutMinMs;
}

/** Does this message move us to a higher term (and so to follower)? */
export function isHigherTerm(s: RaftState, m: RaftMessage): boolean {
  if (m.term <= s.term) return false;
  if (m.type === 'vote' && m.pre) return false;
  if (m.type === 'voteResp' && m.pre && m.granted) return false;
  return true;
}

export function handleVoteRequest(s: RaftState, m: VoteRequest): void {
  const upToDate = isUpToDate(s.log, m.lastLogIndex, m.lastLogTerm) || s.cfg.unsafe?.skipUpToDateCheck === true;
  let granted: boolean;
  if (m.pre) {
    granted = m.term > s.term && upToDate;
  } else {
    const free = s.vote === m.from || (s.vote === null && s.leader === null);
    granted = m.term === s.term && upToDate && (free || (s.cfg.unsafe?.grantSecondVote === true && s.role === 'follower'));
    if (granted) {
      s.vote = m.from;
      s.out.resetElectionTimer = true;
    }
  }
  send(s, { type: 'voteResp', from: s.id, to: m.from, term: m.pre && granted ? m.term : s.term, pre: m.pre, granted });
}

export function recordVote(s: RaftState, m: VoteResponse): void {
  const expectedTerm = s.role === 'preCandidate' ? s.term + 1 : s.term;
  const relevant = m.pre === (s.role === 'preCandidate') && (m.granted ? m.term === expectedTerm : m.term <= expectedTerm);
  if (relevant && !s.votes.has(m.from)) s.votes.set(m.from, m.granted);
}

/** A message from an older term: tell a deposed leader or pre-candidate our term, ignore the rest. */
export function answerStale(s: RaftState, m: RaftMessage): void {
  if (m.type === 'append' || m.type === 'snapshot') {
    send(s, { type: 'appendResp', from: s.id, to: m.from, term: s.term, success: false, matchIndex: 0, conflictIndex: 0, conflictTerm: 0, round: 0 });
  } else if (m.type === 'vote' && m.pre) {
    send(s, { type: 'voteResp', from: s.id, to: m.from, term: s.term, pre: true, granted: false });
  }
}
