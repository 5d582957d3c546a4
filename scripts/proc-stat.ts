/** Reading a process's memory and CPU time from /proc (Linux), for the benchmark scripts. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** VmRSS and utime+stime (ms) of a process, from /proc; null once it is gone. */
export function procStat(pid: number): { rss: number; cpuMs: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(rest[11]) + Number(rest[12]); // utime, stime (fields 14, 15)
    return { rss: rssKb * 1024, cpuMs: (ticks * 1000) / CLK_TCK };
  } catch {
    return null;
  }
}

/** Total CPU ms of the processes still alive among `pids`. */
export const cpuMsOf = (pids: number[]): number => pids.reduce((n, p) => n + (procStat(p)?.cpuMs ?? 0), 0);
