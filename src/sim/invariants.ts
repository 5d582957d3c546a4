import { entryAt, lastIndex, termAt } from '../raft/log.ts';
import { majority } from '../raft/quorum.ts';
import type { RaftState } from '../raft/state.ts';
import type { ConfState, Entry } from '../raft/types.ts';

export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

const digest = (e: Entry): string => `${e.term}:${e.type}:${e.data ? Buffer.from(e.data).toString('base64') : ''}`;

/**
 * Safety properties of Raft (paper Figure 3), checked as the simulation runs:
 * election safety, log matching, leader completeness and state machine safety.
 */
export class SafetyChecker {
  private leaders = new Map<number, string>();
  /** index → digest of the entry applied there by anyone (committed entries). */
  private applied = new Map<number, string>();
  private lastApplied = new Map<string, number>();
  maxCommitted = 0;
  checks = 0;

  onLeader(id: string, term: number): void {
    const other = this.leaders.get(term);
    if (other !== undefined && other !== id) throw new InvariantViolation(`election safety: ${other} and ${id} both leader in term ${term}`);
    this.leaders.set(term, id);
  }

  /**
   * Election by a majority of the leader's configuration: a new leader of term T must hold votes
   * from a majority of the voters of the configuration in force in its log. A live voter still in
   * term T that voted for someone else (or for nobody), or still in an older term, did not vote
   * for it; voters that are down or moved to a later term might have.
   * `peer(id)` is a live node's state, or null when it is down.
   */
  checkElectionQuorum(id: string, s: Readonly<RaftState>, peer: (id: string) => Readonly<RaftState> | null): void {
    this.checks++;
    const voters = s.conf.voters;
    let denied = 0;
    for (const v of voters) {
      const p = v === id ? s : peer(v);
      if (p && (p.term < s.term || (p.term === s.term && p.vote !== id))) denied++;
    }
    if (voters.length - denied < majority(voters.length)) {
      throw new InvariantViolation(`election: ${id} leader in term ${s.term} without votes from a majority of [${voters}] (${denied} did not vote for it)`);
    }
  }

  /**
   * Commit by a majority of the configuration in force: when a leader's commit index reaches c,
   * a majority of the voters of its configuration hold its entry at c (same term), or a snapshot
   * covering it. A live voter whose log lacks it counts against; a voter that is down may hold it.
   * `confs` are the configurations the leader used since the last check (a change proposed in the
   * same batch replaces the one the commit was counted with): one of them must have such a majority.
   */
  checkCommitQuorum(id: string, s: Readonly<RaftState>, peer: (id: string) => Readonly<RaftState> | null, confs: readonly ConfState[] = [s.conf]): void {
    this.checks++;
    const c = s.log.committed;
    const term = termAt(s.log, c);
    if (term === undefined) return;
    const holds = (v: string): boolean => {
      const p = v === id ? s : peer(v);
      return !p || p.log.snapshotIndex >= c || termAt(p.log, c) === term;
    };
    const described: string[] = [];
    for (const conf of confs) {
      const have = conf.voters.filter(holds).length;
      if (have >= majority(conf.voters.length)) return;
      described.push(`${conf.voters.length - have} of [${conf.voters}]`);
    }
    throw new InvariantViolation(`commit: leader ${id} (term ${s.term}) committed ${c} but ${described.join(' and ')} lack it`);
  }

  /** Leader completeness: a new leader's log holds every entry anyone has applied. */
  checkLeaderLog(id: string, s: Readonly<RaftState>): void {
    this.checks++;
    for (let i = s.log.snapshotIndex + 1; i <= this.maxCommitted; i++) {
      const want = this.applied.get(i);
      if (want === undefined) continue;
      const e = entryAt(s.log, i);
      if (!e || digest(e) !== want) {
        throw new InvariantViolation(`leader completeness: leader ${id} (term ${s.term}) lacks committed entry ${i}`);
      }
    }
  }

  /** State machine safety: every node applies the same entry at each index, in order. */
  onApply(id: string, e: Entry): void {
    const prev = this.lastApplied.get(id) ?? 0;
    if (e.index !== prev + 1) throw new InvariantViolation(`${id} applied index ${e.index} after ${prev}`);
    this.lastApplied.set(id, e.index);
    const d = digest(e);
    const want = this.applied.get(e.index);
    if (want === undefined) this.applied.set(e.index, d);
    else if (want !== d) throw new InvariantViolation(`state machine safety: ${id} applied a different entry at ${e.index}`);
    if (e.index > this.maxCommitted) this.maxCommitted = e.index;
  }

  /** A node installed a snapshot: it continues applying after its index. */
  onRestore(id: string, index: number): void {
    this.lastApplied.set(id, index);
  }

  /** Log matching: equal (index, term) implies equal entries and equal preceding terms. */
  checkLogMatching(nodes: { id: string; state: Readonly<RaftState> }[]): void {
    this.checks++;
    const seen = new Map<string, string>();
    for (const { id, state } of nodes) {
      const log = state.log;
      for (let i = log.snapshotIndex + 1; i <= lastIndex(log); i++) {
        const e = entryAt(log, i)!;
        const key = `${i}:${e.term}`;
        const v = `${digest(e)}|${termAt(log, i - 1) ?? '?'}`;
        const other = seen.get(key);
        if (other === undefined) seen.set(key, v);
        else if (other.split('|')[0] !== v.split('|')[0] || (other.split('|')[1] !== '?' && v.split('|')[1] !== '?' && other.split('|')[1] !== v.split('|')[1])) {
          throw new InvariantViolation(`log matching: entry (${i}, term ${e.term}) differs on ${id}`);
        }
      }
      // Committed entries must be in the log of every node that has reached that index.
      for (let i = log.snapshotIndex + 1; i <= Math.min(log.committed, lastIndex(log)); i++) {
        const want = this.applied.get(i);
        if (want !== undefined && want !== digest(entryAt(log, i)!)) {
          throw new InvariantViolation(`committed entry ${i} differs on ${id}`);
        }
      }
    }
  }
}
