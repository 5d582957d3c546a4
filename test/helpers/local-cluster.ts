import type { ExecutionContext } from 'ava';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterClient, type MemberStatus } from '../../src/client.ts';
import { startLocalCluster, type LocalCluster, type LocalClusterOptions } from '../../src/local-cluster.ts';

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `sc-${prefix}-`));
}

/** A fresh local cluster with fast elections, in a temp dir; logs land there too. */
export async function freshCluster(prefix: string, o: Partial<LocalClusterOptions> = {}): Promise<LocalCluster> {
  return startLocalCluster({ dir: await tempDir(prefix), logLevel: 'warn', ...o });
}

/** Polls a condition (a real observation, not a fixed sleep) until it holds or the deadline passes. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Waits until the running members agree on one leader; returns its status. */
export async function waitForLeader(client: ClusterClient, expectMembers: number, timeoutMs = 60_000): Promise<MemberStatus> {
  return eventually('a leader', async () => {
    const all = await client.status();
    const leaders = all.filter((s) => s.role === 'leader');
    if (all.length < expectMembers || leaders.length !== 1) return null;
    const term = leaders[0]!.term;
    return all.every((s) => s.leader === leaders[0]!.id && s.term === term) ? leaders[0]! : null;
  }, timeoutMs);
}

export async function connectClient(c: LocalCluster, o: { quorumWaitMs?: number; clientId?: string } = {}): Promise<ClusterClient> {
  return ClusterClient.connect({ ...c.clientOptions(), ...o });
}

/** A fresh cluster, a client of it and an elected leader; both stopped at the test's end. */
export async function clusterWithLeader(t: ExecutionContext, prefix: string, o: Partial<LocalClusterOptions> = {}) {
  const c = await freshCluster(prefix, o);
  t.teardown(() => c.stop());
  const client = await connectClient(c);
  t.teardown(() => client.close());
  const leader = await waitForLeader(client, 3);
  return { c, client, leader };
}
