/**
 * Typed cluster metadata of the original design, stored in the metadata center under
 * `meta/<type>/<key>`. Server entries are keyed by node name `host:port`, so two servers on one
 * host never collide; interpreter entries by interpreter group id. A put merges fields into the
 * existing entry (partial update, as the original); a get with an empty key lists the type.
 */
import type { ClusterClient } from './client.ts';
import type { Consistency } from './api/protocol.ts';

export const ClusterMetaType = { SERVER_META: 'server', INTP_PROCESS_META: 'intp' } as const;
export type ClusterMetaType = (typeof ClusterMetaType)[keyof typeof ClusterMetaType];

export type MemberStatusValue = 'ONLINE' | 'OFFLINE';

export interface ServerMeta {
  NODE_NAME: string;
  SERVER_HOST: string;
  SERVER_PORT: number;
  SERVER_START_TIME: number;
  CPU_USED: number;
  CPU_CAPACITY: number;
  MEMORY_USED: number;
  MEMORY_CAPACITY: number;
  /** Wall-clock time written by the sender: shown to people, never compared across hosts. */
  LATEST_HEARTBEAT: number;
  STATUS: MemberStatusValue;
}

export interface InterpreterMeta {
  NODE_NAME: string;
  INTP_PROCESS_NAME: string;
  INTP_TSERVER_HOST: string;
  INTP_TSERVER_PORT: number;
  INTP_START_TIME: number;
  LATEST_HEARTBEAT: number;
  STATUS: MemberStatusValue;
}

export type MetaFields<T extends ClusterMetaType> = T extends 'server' ? ServerMeta : InterpreterMeta;

export const META_PREFIX = 'meta/';

export function metaKey(type: ClusterMetaType, key: string): string {
  if (key.includes('/')) throw new Error(`metadata key must not contain '/': ${key}`);
  return `${META_PREFIX}${type}/${key}`;
}

/** The original ClusterManager's putClusterMeta/getClusterMeta/deleteClusterMeta over a client. */
export class ClusterMeta {
  constructor(private readonly client: ClusterClient) {}

  /** Merges `fields` into the entry (creating it if absent). */
  async put<T extends ClusterMetaType>(type: T, key: string, fields: Partial<MetaFields<T>>, o: { lease?: number } = {}) {
    return this.client.put(metaKey(type, key), fields, { merge: true, ...o });
  }

  /** One entry by key, or every entry of the type when `key` is empty: key → fields. */
  async get<T extends ClusterMetaType>(type: T, key = '', o: { consistency?: Consistency } = {}): Promise<Map<string, Partial<MetaFields<T>>>> {
    const out = new Map<string, Partial<MetaFields<T>>>();
    if (key) {
      const { kv } = await this.client.get(metaKey(type, key), o);
      if (kv) out.set(key, kv.value as Partial<MetaFields<T>>);
      return out;
    }
    const prefix = `${META_PREFIX}${type}/`;
    for (const kv of (await this.client.list(prefix, o)).kvs) out.set(kv.key.slice(prefix.length), kv.value as Partial<MetaFields<T>>);
    return out;
  }

  async delete(type: ClusterMetaType, key: string) {
    return this.client.delete(metaKey(type, key));
  }
}
