/**
 * NATS subject names. The cluster name is the first token so one broker can carry several
 * clusters and permissions can be written per cluster; member ids such as `127.0.0.1:6000`
 * contain characters that are not allowed (or meaningful) inside a subject token, so they are
 * escaped injectively.
 */
import type { NodeId } from '../raft/types.ts';

const SAFE = /^[A-Za-z0-9_-]$/;

/** `127.0.0.1:6000` → `127~2e0~2e0~2e1~3a6000`: reversible, and never contains `.`, `*` or `>`. */
export function subjectToken(id: string): string {
  let out = '';
  for (const ch of id) {
    if (SAFE.test(ch)) out += ch;
    else {
      for (const b of new TextEncoder().encode(ch)) out += '~' + b.toString(16).padStart(2, '0');
    }
  }
  if (out.length === 0) throw new Error('subjectToken: empty id');
  return out;
}

export function fromSubjectToken(token: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < token.length; ) {
    if (token[i] === '~') {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 3;
    } else bytes.push(token.charCodeAt(i++));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

export const subjects = {
  /** Raft peer traffic to one member (members only may publish here). */
  raft: (cluster: string, id: NodeId) => `${cluster}.raft.${subjectToken(id)}`,
  /** Client requests addressed to one member. */
  api: (cluster: string, id: NodeId) => `${cluster}.api.${subjectToken(id)}`,
  /** Client requests any member may answer (queue group `api`). */
  apiAny: (cluster: string) => `${cluster}.api`,
  /** Watch pushes to one watcher. */
  watch: (cluster: string, watchId: string) => `${cluster}.watch.${subjectToken(watchId)}`,
  /** Fast (at-most-once) cluster events. */
  events: (cluster: string, topic: string) => `${cluster}.events.${subjectToken(topic)}`,
  eventsTo: (cluster: string, topic: string, member: NodeId) => `${cluster}.events.${subjectToken(topic)}.${subjectToken(member)}`,
};

export const API_QUEUE = 'api';
