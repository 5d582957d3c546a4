import type { AnyStateMachine } from 'xstate';
import { monitorMachine } from './monitor.ts';
import { noteSyncMachine } from './note-sync.ts';
import { outboxMachine } from './outbox.ts';
import { raftMachine } from './raft.ts';

/**
 * Every state chart of the project, for the dashboard and `submarine-cluster chart`. Charts are
 * drawn from these definitions (src/chart.ts), never by hand: add a machine here and it appears.
 * `name` is what the CLI and the dashboard call it (lower-case, no spaces).
 */
export interface MachineEntry {
  name: string;
  machine: AnyStateMachine;
  /** One line for the dashboard. */
  description?: string;
}

export const machines: MachineEntry[] = [
  { name: 'raft', machine: raftMachine, description: 'Raft role chart, one per cluster member (machines/raft.ts)' },
  { name: 'outbox', machine: outboxMachine, description: 'client outbox: durable queue drained with backoff (machines/outbox.ts)' },
  { name: 'monitor', machine: monitorMachine, description: 'heartbeat evictor in every member, acting only on the leader (machines/monitor.ts)' },
  { name: 'note-sync', machine: noteSyncMachine, description: 'a server\'s replicated notebook: loading, live, resyncing (machines/note-sync.ts)' },
];

export function findMachine(name: string): MachineEntry | undefined {
  return machines.find((m) => m.name === name);
}
