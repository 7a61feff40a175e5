/**
 * Dispatcher overhead, measured as DISPATCH.md §3.3 asks: one process run, servers in a helper
 * process (pinned to another core when `taskset` exists), 1 KiB bodies, keep-alive, the same
 * connection budget and the same API shape for every variant (`dispatcher.request({ origin,
 * path, method })` + `body.dump()`), a fixed closed-loop window, variants interleaved in a
 * rotated order each round after a warm-up, medians over rounds, ratios to the baseline of the
 * same run. Client CPU per request comes from `process.cpuUsage()`.
 *
 *   npx tsx bench/dispatch.ts [--quick]
 */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { BalancedPool, Pool, type Dispatcher } from 'undici'
import { leastLoaded } from '../src/balancer/least-loaded.js'
import { WayfindDispatcher } from '../src/dispatcher/dispatcher.js'
import { createInstance } from '../src/instance.js'
import { HelperProcess } from './lib/child.js'
import { StaticDirectory } from './lib/dispatch-directory.js'
import { stubCases } from './lib/dispatch-stub.js'
import {
  check,
  note,
  printTable,
  writeResults,
  x,
  type BenchOptions,
  type BenchOutcome,
} from './lib/report.js'
import { median, ratio } from './lib/stats.js'

const WINDOW = 50
const CONNECTIONS = 48

interface Variant {
  readonly name: string
  readonly group: 'one' | 'four'
  readonly dispatcher: Dispatcher
  readonly origin: string
}

interface Sample {
  readonly reqPerS: number
  readonly cpuUsPerReq: number
}

/** Closed loop: `requests` GETs with at most WINDOW in flight. */
async function runLoop(v: Variant, requests: number): Promise<Sample> {
  let started = 0
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const worker = async (): Promise<void> => {
    while (started < requests) {
      started++
      const res = await v.dispatcher.request({ origin: v.origin, path: '/', method: 'GET' })
      await res.body.dump()
    }
  }
  await Promise.all(Array.from({ length: WINDOW }, worker))
  const wallMs = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  return { reqPerS: (requests / wallMs) * 1000, cpuUsPerReq: (cpu.user + cpu.system) / requests }
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

export async function run(opts: BenchOptions): Promise<BenchOutcome> {
  const rounds = opts.quick ? 3 : 15
  const requests = opts.quick ? 2_000 : 8_000
  const { helper, ready } = await HelperProcess.start(
    fileURLToPath(new URL('./lib/dispatch-server.ts', import.meta.url)),
    ['4'],
  )
  const pinned = pin(helper.pid, 1)
  const ports = ready.ports as number[]
  const origins = ports.map((p) => `http://127.0.0.1:${p}`)
  const instances = ports.map((port, i) =>
    createInstance({ id: `i${i}`, key: `bench/i${i}`, service: 'four', host: '127.0.0.1', port }),
  )
  const one = createInstance({
    id: 'i0',
    key: 'one/i0',
    service: 'one',
    host: '127.0.0.1',
    port: ports[0] as number,
  })
  const directory = new StaticDirectory(leastLoaded(), { one: [one], four: instances })
  const variants: Variant[] = [
    {
      name: 'undici Pool (baseline)',
      group: 'one',
      dispatcher: new Pool(origins[0] as string, { connections: CONNECTIONS, pipelining: 1 }),
      origin: origins[0] as string,
    },
    {
      name: 'wayfind, 1 instance',
      group: 'one',
      dispatcher: new WayfindDispatcher(directory, { connections: CONNECTIONS }),
      origin: 'http://one',
    },
    {
      name: 'undici BalancedPool, 4',
      group: 'four',
      dispatcher: new BalancedPool(origins, { connections: CONNECTIONS / 4, pipelining: 1 }),
      origin: origins[0] as string,
    },
    {
      name: 'wayfind, 4 instances',
      group: 'four',
      dispatcher: new WayfindDispatcher(directory, { connections: CONNECTIONS / 4 }),
      origin: 'http://four',
    },
  ]
  const samples = new Map<string, Sample[]>(variants.map((v) => [v.name, []]))
  try {
    // Warm-up: connections open, JIT settled.
    for (const v of variants) await runLoop(v, Math.min(1_000, requests))
    for (let r = 0; r < rounds; r++) {
      // Rotate the order each round so no variant always runs first or after the same one.
      const order = variants.map((_, i) => variants[(i + r) % variants.length] as Variant)
      for (const v of order) samples.get(v.name)?.push(await runLoop(v, requests))
    }
  } finally {
    await Promise.allSettled(variants.map((v) => v.dispatcher.close()))
    await helper.stop()
  }

  const stat = (name: string) => {
    const s = samples.get(name) ?? []
    const cpu = s.map((v) => v.cpuUsPerReq)
    const rps = s.map((v) => v.reqPerS)
    return {
      cpuMedian: median(cpu),
      cpuMin: Math.min(...cpu),
      cpuMax: Math.max(...cpu),
      rpsMedian: median(rps),
      rpsMin: Math.min(...rps),
      rpsMax: Math.max(...rps),
    }
  }
  const base1 = stat('undici Pool (baseline)')
  const base4 = stat('undici BalancedPool, 4')
  const rows = variants.map((v) => {
    const s = stat(v.name)
    const b = v.group === 'one' ? base1 : base4
    return {
      variant: v.name,
      ...s,
      cpuRatio: ratio(s.cpuMedian, b.cpuMedian),
      rpsRatio: ratio(s.rpsMedian, b.rpsMedian),
    }
  })
  printTable(
    `Dispatcher overhead: ${rounds} rounds × ${requests} requests, window ${WINDOW}, ${CONNECTIONS} connections, 1 KiB body${pinned ? ', server pinned to CPU 1' : ''}`,
    [
      'variant',
      'req/s (median)',
      'min..max',
      'CPU µs/req (median)',
      'min..max',
      'CPU vs base',
      'req/s vs base',
    ],
    rows.map((r) => [
      r.variant,
      r.rpsMedian.toFixed(0),
      `${r.rpsMin.toFixed(0)}..${r.rpsMax.toFixed(0)}`,
      r.cpuMedian.toFixed(1),
      `${r.cpuMin.toFixed(1)}..${r.cpuMax.toFixed(1)}`,
      x(r.cpuRatio),
      x(r.rpsRatio),
    ]),
  )
  note(
    '  baseline of the 1-instance rows: undici Pool; of the 4-instance rows: undici BalancedPool (same run).',
  )
  // Network-free: what the dispatcher layer itself adds per request (robust to a busy machine,
  // where the HTTP numbers above swing by ±20 % between runs).
  const stub = stubCases()
  const per = opts.quick ? 50_000 : 200_000
  for (const c of stub) c.run(per)
  const stubSamples = new Map<string, number[]>(stub.map((c) => [c.name, []]))
  for (let r = 0; r < rounds; r++)
    for (const c of stub.map((_, i) => stub[(i + r) % stub.length]!))
      stubSamples.get(c.name)?.push(c.run(per))
  const stubRows = stub.map((c) => {
    const s = stubSamples.get(c.name) ?? []
    return { case: c.name, medianNs: median(s), minNs: Math.min(...s) }
  })
  const legacyBase = stubRows[0]?.minNs ?? 0
  const modernBase = stubRows[4]?.minNs ?? 0
  printTable(
    `Dispatcher layer without network: ns per dispatch, median (min) of ${rounds} rounds × ${per}`,
    ['case', 'ns/dispatch', 'added vs stub (min)'],
    stubRows.map((r, i) => [
      r.case,
      `${r.medianNs.toFixed(0)} (${r.minNs.toFixed(0)})`,
      i === 0 || i === 4 ? '-' : `${(r.minNs - (i < 4 ? legacyBase : modernBase)).toFixed(0)} ns`,
    ]),
  )
  const w1 = rows.find((r) => r.variant === 'wayfind, 1 instance')
  const w4 = rows.find((r) => r.variant === 'wayfind, 4 instances')
  const checks = [
    check('dispatch: CPU/req, wayfind 1 instance vs Pool', w1?.cpuRatio ?? Number.NaN, '<=', 1.1),
    check('dispatch: req/s, wayfind 1 instance vs Pool', w1?.rpsRatio ?? Number.NaN, '>=', 0.93),
    check(
      'dispatch: req/s, wayfind 4 instances vs BalancedPool',
      w4?.rpsRatio ?? Number.NaN,
      '>=',
      1.0,
    ),
  ]
  writeResults('dispatch', {
    rounds,
    requests,
    window: WINDOW,
    connections: CONNECTIONS,
    pinned,
    rows,
    raw: Object.fromEntries(samples),
    stub: stubRows,
    checks,
  })
  return { name: 'dispatch', checks }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  run({ quick: process.argv.includes('--quick') }).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exit(1)
    },
  )
}
