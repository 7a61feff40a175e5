/**
 * Pick cost per strategy at 10, 1,000 and 10,000 instances, in ns per pick. Each picker is
 * warmed up, then timed over a batch of picks; batches of every size are interleaved in a
 * rotated order per round and the median is reported. Least-loaded pickers run against a load
 * tracker with non-zero in-flight and latency samples, so their comparisons are real.
 *
 *   npx tsx bench/pick.ts [--quick]
 */
import { fileURLToPath } from 'node:url'
import { DefaultLoadTracker } from '../src/balancer/load-tracker.js'
import { leastLoaded } from '../src/balancer/least-loaded.js'
import { random } from '../src/balancer/random.js'
import { roundRobin } from '../src/balancer/round-robin.js'
import type { Picker, Strategy } from '../src/balancer/strategy.js'
import { systemClock } from '../src/core/clock.js'
import { createInstance, type Instance } from '../src/instance.js'
import {
  check,
  note,
  printTable,
  writeResults,
  x,
  type BenchOptions,
  type BenchOutcome,
  type Check,
} from './lib/report.js'
import { median, ratio } from './lib/stats.js'

const SIZES = [10, 1_000, 10_000] as const

interface Case {
  readonly strategy: string
  readonly size: number
  readonly picker: Picker
  readonly probe: unknown
}

function makeInstances(n: number, weighted: boolean): Instance[] {
  return Array.from({ length: n }, (_, i) =>
    createInstance({
      id: `i${i}`,
      key: `svc/i${i}`,
      service: 'svc',
      host: '10.0.0.1',
      port: 1024 + (i % 60_000),
      weight: weighted ? 1 + (i % 4) : 1,
    }),
  )
}

// Keeps results observable so the JIT cannot drop the picks. Compared by identity only: the
// pick is measured, not the cache miss of dereferencing a random instance object afterwards.
let sink = 0

function timeBatch(picker: Picker, picks: number, probe: unknown): number {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < picks; i++) if (picker.pick() === probe) sink++
  return Number(process.hrtime.bigint() - t0) / picks
}

export function run(opts: BenchOptions): Promise<BenchOutcome> {
  const rounds = opts.quick ? 9 : 15
  const picks = opts.quick ? 300_000 : 1_000_000
  const strategies: [string, Strategy, boolean][] = [
    ['round-robin', roundRobin(), false],
    ['round-robin, weighted (EDF)', roundRobin(), true],
    ['random', random(), false],
    ['random, weighted (alias)', random(), true],
    ['least-loaded, in-flight', leastLoaded({ latency: 'none' }), false],
    ['least-loaded, peak-EWMA (default)', leastLoaded(), false],
    ['least-loaded, peak-EWMA, weighted', leastLoaded(), true],
  ]
  const cases: Case[] = []
  for (const [name, strategy, weighted] of strategies)
    for (const size of SIZES) {
      const load = new DefaultLoadTracker()
      const instances = makeInstances(size, weighted)
      // Realistic state: some in flight, some latency samples.
      for (let i = 0; i < size; i++) {
        const key = (instances[i] as Instance).key
        for (let k = 0; k < i % 3; k++) load.start(key)
        load.observe(key, 5 + (i % 50))
      }
      const picker = strategy.createPicker(instances, {
        service: 'svc',
        load,
        random: Math.random,
        clock: systemClock,
        previous: undefined,
      })
      cases.push({ strategy: name, size, picker, probe: picker.pick() })
    }
  for (const c of cases) timeBatch(c.picker, picks, c.probe) // warm-up
  const samples = new Map<Case, number[]>(cases.map((c) => [c, []]))
  for (let r = 0; r < rounds; r++) {
    const order = cases.map((_, i) => cases[(i + r * 3) % cases.length] as Case)
    for (const c of order) samples.get(c)?.push(timeBatch(c.picker, picks, c.probe))
  }
  // Median per size for the table; the flatness check uses the minimum over rounds, the usual
  // estimate of a micro-benchmark's intrinsic cost when other processes share the cores (at
  // ~10 ns per pick a few ns of interference would otherwise decide the ratio).
  const table: {
    strategy: string
    ns: Record<number, number>
    minNs: Record<number, number>
    flat: number
  }[] = []
  for (const [name] of strategies) {
    const ns: Record<number, number> = {}
    const minNs: Record<number, number> = {}
    for (const c of cases)
      if (c.strategy === name) {
        ns[c.size] = median(samples.get(c) ?? [])
        minNs[c.size] = Math.min(...(samples.get(c) ?? []))
      }
    const mins = SIZES.map((s) => minNs[s] ?? Number.NaN)
    table.push({ strategy: name, ns, minNs, flat: ratio(Math.max(...mins), Math.min(...mins)) })
  }
  printTable(
    `Pick cost, ns per pick: median (min) of ${rounds} rounds × ${picks} picks`,
    ['strategy', ...SIZES.map((s) => `n=${s}`), 'max/min of mins'],
    table.map((t) => [
      t.strategy,
      ...SIZES.map(
        (s) => `${(t.ns[s] ?? Number.NaN).toFixed(1)} (${(t.minNs[s] ?? Number.NaN).toFixed(1)})`,
      ),
      x(t.flat),
    ]),
  )
  note(
    `  (sink ${sink % 10}); weighted round-robin is an EDF heap, O(log n) by design (Envoy), so it has no flatness target.`,
  )
  const checks: Check[] = table
    .filter((t) => !t.strategy.includes('weighted (EDF)'))
    .map((t) => check(`pick: ${t.strategy}, cost spread over 10..10k instances`, t.flat, '<=', 1.5))
  writeResults('pick', { rounds, picks, table, checks })
  return Promise.resolve({ name: 'pick', checks })
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
