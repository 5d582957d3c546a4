/**
 * Client ↔ member requests over NATS (`<cluster>.api.<member>` or the queue `<cluster>.api`).
 * Request/reply is only a client convenience here: Raft itself never depends on it. Every request
 * is validated; a bad one gets a clear error reply and the member keeps serving.
 */
import type { ConfChange, NodeId } from '../raft/types.ts';

export type Consistency = 'linearizable' | 'stale';

export type ApiRequest =
  | { op: 'write'; cmd: Uint8Array }
  | { op: 'get'; key: string; consistency: Consistency }
  /** One page: keys after `after` (exclusive), at most `limit`, and under the reply size limit; `more` says whether keys remain. */
  | { op: 'list'; prefix: string; consistency: Consistency; limit?: number; after?: string }
  | { op: 'status' }
  | { op: 'watch'; watchId: string; prefix: string; fromRevision: number; ttlMs: number }
  | { op: 'watchRenew'; watchId: string }
  | { op: 'watchCancel'; watchId: string }
  | { op: 'leaseKeepAlive'; id: number }
  | { op: 'member'; change: ConfChange }
  | { op: 'transfer'; target: NodeId }
  | { op: 'fault'; dropTo: NodeId[]; dropFrom: NodeId[] };

export interface ApiErrorBody {
  name: string;
  message: string;
  leader?: NodeId | null;
  code?: string;
  revision?: number;
}

export type ApiResponse = ({ ok: true } & Record<string, unknown>) | { ok: false; error: ApiErrorBody };

const CONSISTENCY = new Set(['linearizable', 'stale']);
const isStr = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length <= max;
const isIdList = (v: unknown): v is string[] => Array.isArray(v) && v.length <= 64 && v.every((x) => isStr(x, 256));
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
/** Most keys one list page may ask for. */
export const MAX_LIST_LIMIT = 10_000;

/** Returns null when `raw` is a valid request, else a message saying what is wrong. */
export function checkRequest(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'request must be an object';
  const r = raw as Record<string, unknown>;
  switch (r.op) {
    case 'write':
      return r.cmd instanceof Uint8Array ? null : 'write.cmd must be bytes';
    case 'get':
      if (!isStr(r.key) || r.key.length === 0) return 'get.key must be a non-empty string';
      return CONSISTENCY.has(r.consistency as string) ? null : 'consistency must be linearizable or stale';
    case 'list':
      if (!isStr(r.prefix)) return 'list.prefix must be a string';
      if (r.limit !== undefined && !(isCount(r.limit) && r.limit >= 1 && r.limit <= MAX_LIST_LIMIT)) return `list.limit must be an integer 1..${MAX_LIST_LIMIT}`;
      if (r.after !== undefined && !isStr(r.after)) return 'list.after must be a string';
      return CONSISTENCY.has(r.consistency as string) ? null : 'consistency must be linearizable or stale';
    case 'status':
      return null;
    case 'watch':
      if (!isStr(r.watchId, 128) || r.watchId.length === 0) return 'watch.watchId must be a non-empty string';
      if (!isStr(r.prefix)) return 'watch.prefix must be a string';
      if (!isCount(r.fromRevision)) return 'watch.fromRevision must be a non-negative integer';
      return isCount(r.ttlMs) && r.ttlMs >= 1000 && r.ttlMs <= 600_000 ? null : 'watch.ttlMs must be 1000..600000';
    case 'watchRenew':
    case 'watchCancel':
      return isStr(r.watchId, 128) ? null : `${r.op}.watchId must be a string`;
    case 'leaseKeepAlive':
      return isCount(r.id) ? null : 'leaseKeepAlive.id must be a non-negative integer';
    case 'member': {
      const c = r.change as Record<string, unknown> | null;
      if (typeof c !== 'object' || c === null) return 'member.change must be an object';
      if (!['addLearner', 'promote', 'remove'].includes(c.op as string)) return 'member.change.op must be addLearner, promote or remove';
      return isStr(c.node, 256) && c.node.length > 0 ? null : 'member.change.node must be a non-empty string';
    }
    case 'transfer':
      return isStr(r.target, 256) ? null : 'transfer.target must be a string';
    case 'fault':
      return isIdList(r.dropTo) && isIdList(r.dropFrom) ? null : 'fault.dropTo and fault.dropFrom must be lists of member ids';
    default:
      return `unknown op ${JSON.stringify(r.op)}`;
  }
}

export function errorBody(err: unknown): ApiErrorBody {
  const e = err as Error & { leader?: NodeId | null; code?: string; revision?: number };
  const body: ApiErrorBody = { name: e?.name ?? 'Error', message: e?.message ?? String(err) };
  if (e && 'leader' in e) body.leader = e.leader ?? null;
  if (e?.code !== undefined) body.code = String(e.code);
  if (e?.revision !== undefined) body.revision = e.revision;
  return body;
}
