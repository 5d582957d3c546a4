// A user-space TCP proxy that adds latency with jitter (a tool for multi-host tests: this kernel has
// no sch_netem, so delay on route and client links is added here instead of in the network).
//
// Every chunk read from one side is held for a delay drawn uniformly from [minMs, maxMs] (per
// direction, changeable at run time) and then written to the other side. Chunks of one direction
// of one connection sit on one queue and leave in order: a chunk is never released before the
// chunk ahead of it, so jitter never reorders bytes (a chunk drawn shorter than the one ahead waits
// for it, as on a FIFO link). End-of-stream (half close) travels the same queue. When the queue
// holds more than `highWaterBytes` (or the receiving socket buffers that much), reading from the
// sender pauses until it drains.
//
// As a library: createDelayProxy({ listen, target, delay }). As a process (e.g. spawned inside a
// namespace): `tsx src/hosts/delay-proxy.ts --listen HOST:PORT --target HOST:PORT --delay MIN-MAX`
// prints `listening HOST:PORT` and reads `delay MIN-MAX` / `delay UP_MIN-UP_MAX DOWN_MIN-DOWN_MAX`
// lines on stdin to change the delay.
import net from 'node:net';
import { pathToFileURL } from 'node:url';

export interface DelayRange {
  minMs: number;
  maxMs: number;
}

/** A range for both directions, or one per direction (up: client → target, down: target → client). */
export type DelaySpec = DelayRange | { up: DelayRange; down: DelayRange };

export interface Endpoint {
  host: string;
  port: number;
}

export interface DelayProxyOptions {
  /** Where to listen; port 0 picks a free one. Default 127.0.0.1:0. */
  listen?: Partial<Endpoint>;
  target: Endpoint;
  /** Default: no delay. */
  delay?: DelaySpec;
  /** Uniform [0, 1) source for the jitter (inject a seeded one for repeatable runs). */
  random?: () => number;
  /** Per direction and connection, bytes held before reading from the sender pauses. Default 1 MiB. */
  highWaterBytes?: number;
}

export interface DelayProxyStats {
  connections: number;
  open: number;
  bytesUp: number;
  bytesDown: number;
  chunks: number;
  /** Chunks held longer than drawn to keep order behind a slower chunk ahead. */
  heldForOrder: number;
}

export interface DelayProxy {
  readonly host: string;
  readonly port: number;
  setDelay(delay: DelaySpec): void;
  delay(): { up: DelayRange; down: DelayRange };
  stats(): DelayProxyStats;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

function normRange(r: DelayRange): DelayRange {
  const { minMs, maxMs } = r;
  if (!(Number.isFinite(minMs) && Number.isFinite(maxMs) && minMs >= 0 && maxMs >= minMs)) {
    throw new Error(`delay range must be 0 <= minMs <= maxMs, got ${minMs}-${maxMs}`);
  }
  return { minMs, maxMs };
}

function normSpec(spec: DelaySpec): { up: DelayRange; down: DelayRange } {
  if ('up' in spec) return { up: normRange(spec.up), down: normRange(spec.down) };
  const r = normRange(spec);
  return { up: r, down: { ...r } };
}

interface Item {
  due: number;
  chunk: Buffer | null; // null: end of stream
}

/** One direction of one connection: a FIFO of chunks, each released at its due time. */
class DelayedPipe {
  private readonly queue: Item[] = [];
  private head = 0;
  private queuedBytes = 0;
  private lastDue = 0;
  private timer: NodeJS.Timeout | null = null;
  private paused = false;
  private closed = false;

  constructor(
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    private readonly range: () => DelayRange,
    private readonly random: () => number,
    private readonly highWater: number,
    private readonly onBytes: (n: number) => void,
    private readonly onHeld: () => void,
  ) {
    src.on('data', (chunk: Buffer) => this.push(chunk));
    src.on('end', () => this.push(null));
    dst.on('drain', () => this.maybeResume());
  }

  private draw(): number {
    const { minMs, maxMs } = this.range();
    return minMs + (maxMs - minMs) * this.random();
  }

  private push(chunk: Buffer | null): void {
    if (this.closed) return;
    const now = performance.now();
    const want = now + this.draw();
    const due = Math.max(want, this.lastDue);
    if (due > want) this.onHeld();
    this.lastDue = due;
    if (chunk) {
      this.onBytes(chunk.length);
      this.queuedBytes += chunk.length;
    }
    this.queue.push({ due, chunk });
    if (this.queue.length - this.head === 1) this.flush();
    if (this.queuedBytes + this.dst.writableLength > this.highWater && !this.paused) {
      this.paused = true;
      this.src.pause();
    }
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.closed) return;
    const now = performance.now();
    while (this.head < this.queue.length) {
      const item = this.queue[this.head]!;
      if (item.due > now) {
        this.timer = setTimeout(() => this.flush(), Math.max(0, Math.ceil(item.due - now)));
        break;
      }
      this.head++;
      if (item.chunk) {
        this.queuedBytes -= item.chunk.length;
        this.dst.write(item.chunk);
      } else {
        this.dst.end();
      }
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.maybeResume();
  }

  private maybeResume(): void {
    if (this.paused && !this.closed && this.queuedBytes + this.dst.writableLength <= this.highWater / 2) {
      this.paused = false;
      this.src.resume();
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
    this.head = 0;
  }
}

export async function createDelayProxy(opts: DelayProxyOptions): Promise<DelayProxy> {
  let current = normSpec(opts.delay ?? { minMs: 0, maxMs: 0 });
  const random = opts.random ?? Math.random;
  const highWater = opts.highWaterBytes ?? 1 << 20;
  const stats: DelayProxyStats = { connections: 0, open: 0, bytesUp: 0, bytesDown: 0, chunks: 0, heldForOrder: 0 };
  const sockets = new Set<net.Socket>();
  const onHeld = (): void => {
    stats.heldForOrder++;
  };

  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    stats.connections++;
    stats.open++;
    const upstream = net.connect({ host: opts.target.host, port: opts.target.port, noDelay: true, allowHalfOpen: true });
    client.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    const up = new DelayedPipe(client, upstream, () => current.up, random, highWater, (n) => {
      stats.bytesUp += n;
      stats.chunks++;
    }, onHeld);
    const down = new DelayedPipe(upstream, client, () => current.down, random, highWater, (n) => {
      stats.bytesDown += n;
      stats.chunks++;
    }, onHeld);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      stats.open--;
      up.close();
      down.close();
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    // An error on either side (refused, reset, timed out) ends both, like a broken path would.
    client.on('error', finish);
    upstream.on('error', finish);
    let closedSides = 0;
    const onClose = (): void => {
      if (++closedSides === 2) finish();
    };
    client.on('close', onClose);
    upstream.on('close', onClose);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: opts.listen?.host ?? '127.0.0.1', port: opts.listen?.port ?? 0 }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const addr = server.address() as net.AddressInfo;

  return {
    host: addr.address,
    port: addr.port,
    setDelay(delay) {
      current = normSpec(delay);
    },
    delay() {
      return { up: { ...current.up }, down: { ...current.down } };
    },
    stats() {
      return { ...stats };
    },
    close() {
      for (const s of sockets) s.destroy();
      sockets.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `10-80` or `20` (ms) → a range. */
export function parseRange(text: string): DelayRange {
  const m = /^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$/.exec(text.trim());
  if (!m) throw new Error(`delay must be MS or MIN-MAX (ms), got ${JSON.stringify(text)}`);
  const minMs = Number(m[1]);
  return normRange({ minMs, maxMs: m[2] === undefined ? minMs : Number(m[2]) });
}

function parseEndpoint(text: string | undefined, what: string): Endpoint {
  const m = text ? /^(.+):(\d+)$/.exec(text) : null;
  if (!m) throw new Error(`--${what} HOST:PORT is required`);
  return { host: m[1]!, port: Number(m[2]) };
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const listen = parseEndpoint(arg('listen') ?? '127.0.0.1:0', 'listen');
  const target = parseEndpoint(arg('target'), 'target');
  const proxy = await createDelayProxy({ listen, target, delay: parseRange(arg('delay') ?? '0') });
  process.stdout.write(`listening ${proxy.host}:${proxy.port}\n`);
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim().split(/\s+/);
      buf = buf.slice(i + 1);
      try {
        if (line[0] === 'delay' && line.length === 2) proxy.setDelay(parseRange(line[1]!));
        else if (line[0] === 'delay' && line.length === 3) proxy.setDelay({ up: parseRange(line[1]!), down: parseRange(line[2]!) });
        else if (line[0] === 'stats') process.stdout.write(`stats ${JSON.stringify(proxy.stats())}\n`);
        else if (line[0]) throw new Error(`unknown command ${line[0]}`);
        if (line[0] === 'delay') process.stdout.write(`delay ${JSON.stringify(proxy.delay())}\n`);
      } catch (err) {
        process.stdout.write(`error ${(err as Error).message}\n`);
      }
    }
  });
  // A parent that goes away (stdin closed) or a signal stops the proxy.
  process.stdin.on('end', () => void proxy.close().then(() => process.exit(0)));
  process.on('SIGTERM', () => void proxy.close().then(() => process.exit(0)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`delay-proxy: ${(err as Error).message}\n`);
    process.exit(2);
  });
}
