import { Packr } from 'msgpackr';
import { EntryType, type ConfChange, type ConfState, type Entry, type NodeId } from './types.ts';

/**
 * Single-server membership changes (Raft thesis §4.1): a ConfChange entry carries the whole
 * resulting configuration, and a server uses the latest configuration in its log, committed
 * or not. Only one change may be uncommitted at a time, and only after the leader has
 * committed an entry of its own term (the fix for the single-server change bug).
 */
const packr = new Packr({ useRecords: false });

export interface ConfEntryData {
  change: ConfChange;
  conf: ConfState;
}

export const encodeConfEntry = (d: ConfEntryData): Uint8Array => packr.pack(d);
export const decodeConfEntry = (data: Uint8Array): ConfEntryData => packr.unpack(data) as ConfEntryData;

export const isVoter = (conf: ConfState, id: NodeId): boolean => conf.voters.includes(id);
export const isMember = (conf: ConfState, id: NodeId): boolean => conf.voters.includes(id) || conf.learners.includes(id);
export const members = (conf: ConfState): NodeId[] => [...conf.voters, ...conf.learners];

/** The configuration a change produces, or an error message saying why it is not allowed. */
export function applyChange(conf: ConfState, change: ConfChange): ConfState | string {
  const { node } = change;
  switch (change.op) {
    case 'addLearner':
      if (isMember(conf, node)) return `${node} is already a member`;
      return { voters: [...conf.voters], learners: [...conf.learners, node].sort() };
    case 'promote':
      if (!conf.learners.includes(node)) return `${node} is not a learner`;
      return { voters: [...conf.voters, node].sort(), learners: conf.learners.filter((n) => n !== node) };
    case 'remove':
      if (!isMember(conf, node)) return `${node} is not a member`;
      if (conf.voters.length === 1 && conf.voters[0] === node) return 'cannot remove the last voter';
      return { voters: conf.voters.filter((n) => n !== node), learners: conf.learners.filter((n) => n !== node) };
  }
}

/** Latest configuration among entries (searching backwards), or undefined if none. */
export function latestConfIn(entries: readonly Entry[]): { index: number; conf: ConfState } | undefined {
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    if (e.type === EntryType.ConfChange && e.data) return { index: e.index, conf: decodeConfEntry(e.data).conf };
  }
  return undefined;
}
