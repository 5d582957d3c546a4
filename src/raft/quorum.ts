import type { NodeId } from './types.ts';

export const majority = (voters: number): number => Math.floor(voters / 2) + 1;

/** The highest index replicated on a majority of voters. */
export function quorumIndex(voters: readonly NodeId[], indexOf: (id: NodeId) => number): number {
  if (voters.length === 0) return 0;
  const xs = voters.map(indexOf).sort((a, b) => b - a);
  return xs[majority(voters.length) - 1]!;
}

export type VoteOutcome = 'won' | 'lost' | 'pending';

export function tally(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteOutcome {
  let granted = 0;
  let rejected = 0;
  for (const v of voters) {
    const g = votes.get(v);
    if (g === true) granted++;
    else if (g === false) rejected++;
  }
  const q = majority(voters.length);
  if (granted >= q) return 'won';
  if (rejected >= q) return 'lost';
  return 'pending';
}
