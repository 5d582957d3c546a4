/**
 * Interpreter placement, as the original's cluster interpreter launcher: reuse the interpreter if
 * it is already ONLINE; otherwise ask the idlest ONLINE server (most free memory) to start it and
 * wait for its registration. If that server goes OFFLINE (or disappears) meanwhile, or the wait
 * times out, try the next idlest; fail with a PlacementError listing every attempt when none is left.
 *
 * How a server is asked is injected (`requestStart`): the events service will provide the unicast.
 * A start that was only slow may still register later; whoever registers first is found by the
 * next lookup, so callers should treat the result as "an ONLINE instance", not "the one we asked for".
 */
import type { Discovery, InterpreterInfo, ServerInfo } from './discovery.ts';
import { rankServers } from './discovery.ts';
import { silentLogger, type Logger } from './ports.ts';

export const DEFAULT_PLACEMENT_WAIT_MS = 60_000;

export interface PlacementOptions {
  discovery: Pick<Discovery, 'interpreter' | 'servers' | 'server' | 'waitFor' | 'watchService'>;
  /** Asks server `serverName` to start the process of interpreter group `groupId`. */
  requestStart(serverName: string, groupId: string): Promise<void>;
  /** How long to wait for the registration on one server. */
  waitTimeoutMs?: number;
  /** Also require the interpreter's port to accept TCP connections. */
  tcpProbe?: boolean;
  logger?: Logger;
}

export interface PlacementAttempt {
  server: string;
  /** Why this server did not work out. */
  reason: string;
}

export interface Placement {
  interpreter: InterpreterInfo;
  /** The server asked to start it, or null when an ONLINE instance was reused. */
  server: string | null;
  attempts: PlacementAttempt[];
}

export class PlacementError extends Error {
  override name = 'PlacementError';
  constructor(readonly groupId: string, readonly attempts: PlacementAttempt[]) {
    super(attempts.length === 0
      ? `cannot place interpreter ${groupId}: no ONLINE server`
      : `cannot place interpreter ${groupId}: no ONLINE server left after ${attempts.length} attempt(s): ${attempts.map((a) => `${a.server} (${a.reason})`).join('; ')}`);
  }
}

class ServerLostError extends Error {
  override name = 'ServerLostError';
}

export async function placeInterpreter(o: PlacementOptions, groupId: string): Promise<Placement> {
  const log = o.logger ?? silentLogger;
  const d = o.discovery;
  const existing = await d.interpreter(groupId);
  if (existing?.status === 'ONLINE' && existing.host && existing.port) return { interpreter: existing, server: null, attempts: [] };
  const attempts: PlacementAttempt[] = [];
  const tried = new Set<string>();
  for (;;) {
    const chosen: ServerInfo | undefined = rankServers(await d.servers({ status: 'ONLINE' })).find((s) => !tried.has(s.name));
    if (!chosen) throw new PlacementError(groupId, attempts);
    tried.add(chosen.name);
    const lost = new AbortController();
    const off = d.watchService((c) => {
      if (c.kind === 'server' && c.name === chosen.name && (c.type === 'disappear' || c.current?.status === 'OFFLINE')) {
        lost.abort(new ServerLostError(`server ${chosen.name} went ${c.type === 'disappear' ? 'away' : 'OFFLINE'}`));
      }
    });
    try {
      // It may have gone between the ranking and the subscription.
      const now = await d.server(chosen.name);
      if (now?.status !== 'ONLINE') throw new ServerLostError(`server ${chosen.name} is ${now ? now.status : 'gone'}`);
      log.info({ groupId, server: chosen.name, freeMemory: chosen.freeMemory }, 'asking the idlest server to start the interpreter');
      await abortable(o.requestStart(chosen.name, groupId), lost.signal);
      const interpreter = await d.waitFor(groupId, o.waitTimeoutMs ?? DEFAULT_PLACEMENT_WAIT_MS, { tcpProbe: o.tcpProbe, signal: lost.signal });
      return { interpreter, server: chosen.name, attempts };
    } catch (err) {
      const reason = `${(err as Error).name}: ${(err as Error).message}`;
      attempts.push({ server: chosen.name, reason });
      log.warn({ groupId, server: chosen.name, reason }, 'placement attempt failed; trying the next idlest server');
    } finally {
      off();
    }
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
