import type { RaftMessage } from '../src/raft/messages.ts';

/** Local monotonic clock and timers of one node (real, or virtual in the simulator). */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Lets pending IO and timers run before continuing (long background work yields with it). */
  yield?(): Promise<void>;
}

/** Peer transport: fire-and-forget delivery of decoded, validated messages. */
export interface Transport {
  send(msg: RaftMessage): void;
  /** Register the handler for messages addressed to this node. */
  listen(handler: (msg: RaftMessage) => void): void;
  close(): void;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };

export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  yield: () => new Promise((resolve) => setImmediate(resolve)),
};
