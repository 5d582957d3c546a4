// Overhead of the delay proxy on loopback: ping-pong round trips (small messages) and bulk
// throughput, direct vs through the proxy at 0 ms, plus the RTT at fixed and jittered delays.
//   npx tsx src/hosts/bench-delay-proxy.ts [--rounds 2000] [--mb 64]
import net from 'node:net';
import { createDelayProxy, type DelaySpec } from './delay-proxy.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

async function echoServer(): Promise<net.Server> {
  const server = net.createServer({ noDelay: true }, (s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

async function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Round trips of a 64-byte message; returns per-round ms. */
export async function pingPong(port: number, rounds: number): Promise<number[]> {
  const s = await connect(port);
  const msg = Buffer.alloc(64, 7);
  const out: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      let got = 0;
      const on = (d: Buffer): void => {
        got += d.length;
        if (got >= msg.length) {
          s.off('data', on);
          resolve();
        }
      };
      s.on('data', on);
      s.write(msg);
    });
    out.push(performance.now() - t0);
  }
  s.destroy();
  return out;
}

async function throughput(port: number, bytes: number): Promise<number> {
  const s = await connect(port);
  const chunk = Buffer.alloc(64 * 1024, 1);
  const t0 = performance.now();
  let got = 0;
  const done = new Promise<void>((resolve) =>
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= bytes) resolve();
    }),
  );
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  }
  await done;
  const ms = performance.now() - t0;
  s.destroy();
  return bytes / 1048576 / (ms / 1000);
}

function q(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
}

function fmt(xs: number[]): string {
  return `p50 ${q(xs, 0.5).toFixed(3)} p99 ${q(xs, 0.99).toFixed(3)} max ${Math.max(...xs).toFixed(3)} ms`;
}

async function main(): Promise<void> {
  const rounds = arg('rounds', 2000);
  const mb = arg('mb', 64);
  const echo = await echoServer();
  const port = (echo.address() as net.AddressInfo).port;
  const proxy = await createDelayProxy({ target: { host: '127.0.0.1', port } });

  await pingPong(port, 200);
  await pingPong(proxy.port, 200);
  console.log(`ping-pong 64 B x ${rounds}`);
  console.log(`  direct        ${fmt(await pingPong(port, rounds))}`);
  console.log(`  proxy 0 ms    ${fmt(await pingPong(proxy.port, rounds))}`);
  console.log(`throughput ${mb} MiB echoed`);
  console.log(`  direct        ${(await throughput(port, mb << 20)).toFixed(0)} MiB/s`);
  console.log(`  proxy 0 ms    ${(await throughput(proxy.port, mb << 20)).toFixed(0)} MiB/s`);
  const specs: [string, DelaySpec][] = [
    ['1 ms', { minMs: 1, maxMs: 1 }],
    ['20 ms', { minMs: 20, maxMs: 20 }],
    ['1-80 ms', { minMs: 1, maxMs: 80 }],
  ];
  for (const [name, spec] of specs) {
    proxy.setDelay(spec);
    console.log(`  proxy ${name.padEnd(8)}per direction: RTT ${fmt(await pingPong(proxy.port, 50))}`);
  }
  proxy.setDelay({ minMs: 20, maxMs: 20 });
  console.log(`  proxy 20 ms   throughput ${(await throughput(proxy.port, 16 << 20)).toFixed(0)} MiB/s (16 MiB)`);
  await proxy.close();
  echo.close();
}

await main();
