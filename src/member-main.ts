/**
 * `submarine-cluster node`: one cluster member in this process until SIGTERM/SIGINT (or, with
 * SUBMARINE_EXIT_WITH_PARENT=1, until its launcher's stdin pipe closes). The CLI runs it; so does
 * src/member-entry.ts, the entry of the bundle local clusters start members from.
 */
import { pino } from 'pino';
import { ClusterServer } from '../actors/cluster-server.ts';
import { loadConfig, natsCredentials, natsTlsOf } from './config.ts';
import { checkNatsTransport } from './nats/transport-policy.ts';

export async function runNode(args: string[]): Promise<number> {
  const { takeOfflineRetention } = await import('./monitor/evict.ts');
  const { argv, offlineRetentionMs } = takeOfflineRetention(args, process.env);
  const join = argv.includes('--join');
  const allowFaultInjection = argv.includes('--allow-fault-injection');
  const insecure = argv.includes('--insecure');
  const cfg = loadConfig({ argv: argv.filter((a) => a !== '--join' && a !== '--allow-fault-injection' && a !== '--insecure'), joining: join });
  const natsTls = natsTlsOf(cfg);
  // Before anything is started or connected: a member must not talk in clear across hosts.
  checkNatsTransport(cfg.nats, { tls: natsTls, insecure });
  const logger = pino({ level: cfg.logLevel, base: { member: cfg.id } });
  if (insecure && !natsTls) logger.warn({ nats: cfg.nats }, '--insecure: NATS connections that leave this host are not encrypted');
  for (const w of cfg.warnings) logger.warn({ warning: w }, 'config');
  const creds = natsCredentials(cfg.natsCredentialsFile, 'member');
  const server = await ClusterServer.start({
    id: cfg.id, peers: cfg.peers, join, cluster: cfg.cluster, nats: cfg.nats,
    natsUser: cfg.natsUser ?? creds?.user, natsPass: cfg.natsPass ?? creds?.pass, ...(natsTls ? { natsTls } : {}), insecure,
    dataDir: cfg.dataDir, logger, allowFaultInjection, electionTimeoutMs: cfg.electionTimeoutMs, heartbeatIntervalMs: cfg.heartbeatTickMs,
    snapshotEveryEntries: cfg.snapshotEveryEntries, commitFlushDelayMs: cfg.commitFlushDelayMs, metricsPort: cfg.metricsPort,
    monitor: { heartbeatIntervalMs: cfg.heartbeatIntervalMs, heartbeatTimeoutMs: cfg.heartbeatTimeoutMs, offlineRetentionMs },
  });
  let exitCode = 0;
  await new Promise<void>((resolve) => {
    // Fail-stop: a failed storage write (ENOSPC, EIO) halts the Raft node; a member that stayed up
    // without it would look alive while it can neither vote nor acknowledge. Exit non-zero with the
    // reason so a supervisor restarts it once the disk works again (recovery replays the WAL).
    server.node.onFatal((err) => {
      logger.fatal({ err: err.message, code: (err as NodeJS.ErrnoException).code }, 'storage failed: this member exits (fail-stop) for its supervisor to restart it');
      exitCode = 1;
      stop('fatal');
    });
    const stop = (signal: string) => {
      logger.info({ signal }, 'stopping');
      server.stop().then(resolve, (err) => {
        logger.error({ err }, 'stop failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    if (process.env.SUBMARINE_EXIT_WITH_PARENT === '1') {
      process.stdin.once('close', () => stop('parent exited'));
      process.stdin.resume();
    }
  });
  return exitCode;
}
