/**
 * A demo interpreter process, started by a demo server (src/demo/server.ts), one per interpreter
 * group. It serves a TCP port (the original's thrift server; a connection gets one JSON line
 * `{ groupId, pid }` and is closed, so discovery's tcpProbe works and a client can tell
 * incarnations apart), registers as `meta/intp/<groupId>` with NODE_NAME = its server's name and
 * heartbeats. Prints `READY <port> <pid>` once registered.
 *
 * SIGTERM / SIGINT stop it cleanly (deregister, close); so does its stdin closing (the parent
 * died, even by SIGKILL): it never outlives its server. SIGKILL is a crash (the monitor evicts it).
 *
 *   node --import=tsx src/demo/interpreter.ts --group python-1 --node-name 127.0.0.1:8081 \
 *     --nats URL[,URL] --nats-credentials FILE [--cluster NAME] [--process-name python] [--heartbeat-interval-ms N]
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { pino } from 'pino';
import { HeartbeatSender } from '../../actors/heartbeat.ts';
import { ClusterClient } from '../client.ts';
import { parseFlags, natsTlsFromFlags } from '../config.ts';

const flags = parseFlags(process.argv.slice(2));
const need = (name: string): string => {
  const v = flags[name];
  if (typeof v !== 'string' || v === '') {
    console.error(`demo interpreter: --${name} is required`);
    process.exit(2);
  }
  return v;
};
const groupId = need('group');
const nodeName = need('node-name');
const nats = need('nats').split(',');
const credentialsFile = need('nats-credentials');
const cluster = typeof flags.cluster === 'string' ? flags.cluster : undefined;
const processName = typeof flags['process-name'] === 'string' ? flags['process-name'] : groupId.replace(/-[^-]*$/, '') || groupId;
const interval = flags['heartbeat-interval-ms'] !== undefined ? Number(flags['heartbeat-interval-ms']) : undefined;
const creds = (JSON.parse(readFileSync(credentialsFile, 'utf8')) as Record<string, { user: string; pass: string }>).client;
if (!creds?.user || !creds.pass) {
  console.error(`demo interpreter: ${credentialsFile} has no client credentials`);
  process.exit(2);
}

// A parent that died leaves broken pipes: a failed log line must not crash the clean stop.
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});
const logger = pino({ level: process.env.SUBMARINE_LOG_LEVEL ?? 'info', base: { group: groupId } }, process.stderr);
const log = (level: 'info' | 'warn' | 'error', msg: string, o: object = {}) => logger[level](o, msg);

// Installed first: a stop request during startup is carried out once startup finished.
let started: { sender: HeartbeatSender; client: ClusterClient } | null = null;
let stopRequested: string | null = null;
let stopping = false;
const cleanStop = (why: string) => {
  stopRequested ??= why;
  if (!started || stopping) return;
  stopping = true;
  log('info', 'stopping', { why });
  // Bounded: without a cluster the deregistration would keep retrying.
  setTimeout(() => process.exit(1), 8000).unref();
  void (async () => {
    await started!.sender.stop().catch((err) => log('warn', 'deregister failed', { err: (err as Error).message }));
    await started!.client.close().catch(() => {});
    tcp.close();
    process.exit(0);
  })();
};
process.on('SIGTERM', () => cleanStop('SIGTERM'));
process.on('SIGINT', () => cleanStop('SIGINT'));
process.stdin.once('close', () => cleanStop('parent exited'));
process.stdin.resume();

const tcp = createServer((sock) => {
  sock.on('error', () => {});
  sock.end(`${JSON.stringify({ groupId, pid: process.pid })}\n`);
});
await new Promise<void>((resolve, reject) => {
  tcp.once('error', reject);
  tcp.listen(0, '127.0.0.1', () => resolve());
});
const port = (tcp.address() as { port: number }).port;

try {
  const tls = natsTlsFromFlags(flags, process.env);
  const client = await ClusterClient.connect({ nats, cluster, user: creds.user, pass: creds.pass, requestTimeoutMs: 1000, quorumWaitMs: 3000, insecure: flags.insecure === true, ...(tls ? { tls } : {}) });
  const sender = await HeartbeatSender.start({
    writer: client,
    identity: { kind: 'interpreter', groupId, host: '127.0.0.1', port, nodeName, processName },
    heartbeatIntervalMs: interval,
    logger,
  });
  started = { sender, client };
} catch (err) {
  log('error', 'could not register', { err: (err as Error).message });
  process.exit(1);
}
console.log(`READY ${port} ${process.pid}`);
if (stopRequested) cleanStop(stopRequested);
