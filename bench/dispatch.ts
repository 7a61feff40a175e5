/**
 * Dispatcher overhead, measured as docs/design/dispatch.md#measuring-dispatcher-overhead says:
 * servers in a helper process, 1 KiB bodies, keep-alive, the same connection budget and the same
 * API shape for every variant (`dispatcher.request({ origin, path, method })` + `body.dump()`), a
 * fixed closed-loop window,
 * ratios to the baseline of the same run. Client CPU per request comes from `process.cpuUsage()`.
 *
 * Made steadier than one long run per variant, because this machine's speed drifts by ±20 %
 * within seconds: the client runs in its own process pinned to CPU 0 (servers on CPU 1, when
 * `taskset` exists), every round runs all variants back to back for ~1,000 requests each in a
 * fresh random order, and each ratio is taken against the baseline *of the same round* (paired).
 * Six fresh processes are pooled, each building its variants in a random order, since build
 * order, JIT and heap layout shift a process's ratios by a few per cent. Reported: median
 * paired ratio with a 95 % bootstrap interval.
 *
 * `--ladder` adds two reference rows against BalancedPool: round-robin over the same four Pools
 * with no bookkeeping, and with only an in-flight counting handler wrapper. They show how much
 * room a balancer built on Pools has against BalancedPool here, before its own features.
 *
 *   npx tsx bench/dispatch.ts [--quick] [--ladder]
 */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { HelperProcess } from './lib/child.js'
import { CONNECTIONS, WINDOW, type Sample } from './lib/dispatch-shape.js'
import { stubCases } from './lib/dispatch-stub.js'
import {
  check,
  note,
  printTable,
  writeResults,
  type BenchOptions,
  type BenchOutcome,
} from './lib/report.js'
import { median, percentileSorted } from './lib/stats.js'

/** Each measured variant and the baseline its paired ratios are taken against. */
const BASELINE: Readonly<Record<string, string>> = {
  'undici Pool (baseline)': 'undici Pool (baseline)',
  'wayfind, 1 instance': 'undici Pool (baseline)',
  'undici BalancedPool, 4': 'undici BalancedPool, 4',
  'wayfind, 4, least-loaded': 'undici BalancedPool, 4',
  'wayfind, 4, round-robin': 'undici BalancedPool, 4',
  'ref: bare round-robin, 4 Pools': 'undici BalancedPool, 4',
  'ref: + in-flight counting wrapper': 'undici BalancedPool, 4',
}

function pin(pid: number | undefined, cpu: number): boolean {
  if (pid === undefined) return false
  try {
    execFileSync('taskset', ['-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** `value(sample) / value(baseline sample of the same round)`, per round, per process. */
function paired(
  runs: readonly Record<string, Sample[]>[],
  name: string,
  value: (s: Sample) => number,
): number[][] {
  const base = BASELINE[name] ?? name
  return runs.map((run) => {
    const a = run[name] ?? []
    const b = run[base] ?? []
    return a.map((s, i) => value(s) / value(b[i] as Sample))
  })
}

/** Median of the pooled ratios and a 95 % bootstrap interval (rounds resampled per process). */
function estimate(perRun: readonly number[][]): { median: number; lo: number; hi: number } {
  const pooled = perRun.flat()
  const boots: number[] = []
  for (let k = 0; k < 1_000; k++) {
    const resample: number[] = []
    for (const run of perRun)
      for (let i = 0; i < run.length; i++)
        resample.push(run[Math.floor(Math.random() * run.length)] as number)
    boots.push(median(resample))
  }
  boots.sort((p, q) => p - q)
  return {
    median: median(pooled),
    lo: percentileSorted(boots, 2.5),
    hi: percentileSorted(boots, 97.5),
  }
}

const r3 = (v: number): number => Math.round(v * 1000) / 1000

export async function run(opts: BenchOptions & { ladder?: boolean }): Promise<BenchOutcome> {
  // Many short processes rather than a few long ones: a process's build order and heap layout
  // shift its ratios by a few per cent, and only more processes average that out.
  const ladder = opts.ladder === true
  // The reference rows of --ladder are read at a 1 % resolution: twice the processes.
  const processes = opts.quick ? 1 : ladder ? 12 : 6
  const rounds = opts.quick ? 12 : 50
  const requests = opts.quick ? 500 : 1_000
  const server = await HelperProcess.start(
    fileURLToPath(new URL('./lib/dispatch-server.ts', import.meta.url)),
    ['4'],
  )
  // Client and servers on different cores: the measuring process is CPU-bound on its own.
  const pinned = pin(server.helper.pid, 1)
  const ports = server.ready.ports as number[]
  const runs: Record<string, Sample[]>[] = []
  let names: string[] = []
  try {
    for (let p = 0; p < processes; p++) {
      const worker = await HelperProcess.start(
        fileURLToPath(new URL('./lib/dispatch-worker.ts', import.meta.url)),
        ladder ? [JSON.stringify(ports), 'ladder'] : [JSON.stringify(ports)],
      )
      try {
        if (pinned) pin(worker.helper.pid, 0)
        // Workers build in a random order; the table keeps the order of BASELINE.
        const built = new Set(worker.ready.variants as string[])
        names = Object.keys(BASELINE).filter((n) => built.has(n))
        const reply = await worker.helper.request({ type: 'run', rounds, requests }, 600_000)
        runs.push(reply.samples as Record<string, Sample[]>)
      } finally {
        await worker.helper.stop()
      }
    }
  } finally {
    await server.helper.stop()
  }

  const rows = names.map((name) => {
    const all = runs.flatMap((r) => r[name] ?? [])
    const cpu = estimate(paired(runs, name, (s) => s.cpuUsPerReq))
    const rpsPairs = paired(runs, name, (s) => s.reqPerS)
    const rps = estimate(rpsPairs)
    const perProcess = rpsPairs.map((r) => r3(median(r)))
    return {
      variant: name,
      baseline: BASELINE[name] ?? name,
      rpsMedian: median(all.map((s) => s.reqPerS)),
      cpuMedian: median(all.map((s) => s.cpuUsPerReq)),
      cpuRatio: r3(cpu.median),
      cpuCi: [r3(cpu.lo), r3(cpu.hi)],
      rpsRatio: r3(rps.median),
      rpsCi: [r3(rps.lo), r3(rps.hi)],
      rpsRatioPerProcess: perProcess,
    }
  })
  const ci = (v: number, c: number[]): string =>
    `${v.toFixed(3)} (${(c[0] ?? 0).toFixed(3)}–${(c[1] ?? 0).toFixed(3)})`
  printTable(
    `Dispatcher overhead: ${processes} process(es) × ${rounds} rounds × ${requests} requests per variant, window ${WINDOW}, ${CONNECTIONS} connections, 1 KiB body${pinned ? ', client on CPU 0, servers on CPU 1' : ''}`,
    [
      'variant',
      'req/s (median)',
      'CPU µs/req (median)',
      'CPU vs base, paired (95 % CI)',
      'req/s vs base, paired (95 % CI)',
      'req/s ratio per process',
    ],
    rows.map((r) => [
      r.variant,
      r.rpsMedian.toFixed(0),
      r.cpuMedian.toFixed(1),
      r.baseline === r.variant ? '-' : ci(r.cpuRatio, r.cpuCi),
      r.baseline === r.variant ? '-' : ci(r.rpsRatio, r.rpsCi),
      r.baseline === r.variant ? '-' : r.rpsRatioPerProcess.map((v) => v.toFixed(3)).join(' '),
    ]),
  )
  note(
    '  paired: each round runs every variant back to back; a ratio is taken against the baseline of the same round\n' +
      '  (1-instance rows: undici Pool; 4-instance rows: undici BalancedPool), pooled over fresh processes.',
  )
  // Network-free: what the dispatcher layer itself adds per request (robust to a busy machine,
  // where the HTTP numbers above swing by ±20 % between runs).
  const stub = stubCases()
  const per = opts.quick ? 50_000 : 200_000
  const stubRounds = opts.quick ? 3 : 15
  for (const c of stub) c.run(per)
  const stubSamples = new Map<string, number[]>(stub.map((c) => [c.name, []]))
  for (let r = 0; r < stubRounds; r++)
    for (const c of stub.map((_, i) => stub[(i + r) % stub.length]!))
      stubSamples.get(c.name)?.push(c.run(per))
  const stubRows = stub.map((c) => {
    const s = stubSamples.get(c.name) ?? []
    return { case: c.name, medianNs: median(s), minNs: Math.min(...s) }
  })
  const legacyBase = stubRows[0]?.minNs ?? 0
  const modernBase = stubRows[4]?.minNs ?? 0
  printTable(
    `Dispatcher layer without network: ns per dispatch, median (min) of ${stubRounds} rounds × ${per}`,
    ['case', 'ns/dispatch', 'added vs stub (min)'],
    stubRows.map((r, i) => [
      r.case,
      `${r.medianNs.toFixed(0)} (${r.minNs.toFixed(0)})`,
      i === 0 || i === 4 ? '-' : `${(r.minNs - (i < 4 ? legacyBase : modernBase)).toFixed(0)} ns`,
    ]),
  )
  const row = (name: string) => rows.find((r) => r.variant === name)
  const w1 = row('wayfind, 1 instance')
  const w4 = row('wayfind, 4, least-loaded')
  const w4rr = row('wayfind, 4, round-robin')
  const checks = [
    check('dispatch: CPU/req, wayfind 1 instance vs Pool', w1?.cpuRatio ?? Number.NaN, '<=', 1.1),
    check('dispatch: req/s, wayfind 1 instance vs Pool', w1?.rpsRatio ?? Number.NaN, '>=', 0.93),
    check(
      'dispatch: req/s, wayfind 4 least-loaded vs BalancedPool',
      w4?.rpsRatio ?? Number.NaN,
      '>=',
      1.0,
    ),
    check(
      'dispatch: req/s, wayfind 4 round-robin vs BalancedPool',
      w4rr?.rpsRatio ?? Number.NaN,
      '>=',
      1.0,
    ),
  ]
  writeResults('dispatch', {
    processes,
    ladder,
    rounds,
    requests,
    window: WINDOW,
    connections: CONNECTIONS,
    pinned,
    rows,
    raw: runs,
    stub: stubRows,
    checks,
  })
  return { name: 'dispatch', checks }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  run({ quick: process.argv.includes('--quick'), ladder: process.argv.includes('--ladder') }).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exit(1)
    },
  )
}
