/**
 * Connects a ClusterClient to the local cluster that `npm start` runs (it writes
 * data/local/cluster.json; SUBMARINE_LOCAL_DIR points elsewhere).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterClient } from '../src/index.ts';

export function localCluster(): { cluster: string; nats: string[]; user: string; pass: string } {
  const dir = process.env.SUBMARINE_LOCAL_DIR ?? join(import.meta.dirname, '..', 'data', 'local');
  const info = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as { cluster: string; nats: string[]; credentialsFile: string };
  const creds = JSON.parse(readFileSync(info.credentialsFile, 'utf8')) as { client: { user: string; pass: string } };
  return { cluster: info.cluster, nats: info.nats, user: creds.client.user, pass: creds.client.pass };
}

export function connectLocal(o: { outboxDir?: string } = {}): Promise<ClusterClient> {
  return ClusterClient.connect({ ...localCluster(), ...o });
}
