/**
 * Consul change → `change` event latency on the Consul test server (run in a helper process),
 * side by side, on the same changes and in the same run, with:
 * - a bare blocking-query loop on undici (the floor: request, index bookkeeping, JSON.parse);
 * - node-consul's `Watch` (the `consul` package), what most Node services use today.
 *
 * The helper process re-registers the instance with a new `meta.seq` and the wall-clock stamp
 * (one catalog write per change). wayfind runs with its default options, churn guard included:
 * the guard paces only early answers that changed nothing, so it never delays these changes.
 * Both comparison loops have no guard at all.
 *
 * Besides the percentiles, each observer's tail share (changes slower than 2 ms) is printed:
 * the target is wayfind's share within 2 percentage points of the bare loop's.
 */
import http from 'node:http'
import Consul from 'consul'
import { Client } from 'undici'
import { consul, createWayfind, type Wayfind } from '../src/index.js'
import { HelperProcess } from './lib/child.js'
import { roundRatio, soloRounds, type Contender, onSeqChange } from './lib/latency.js'
import {
  check,
  ms,
  note,
  printTable,
  writeResults,
  x,
  type BenchOptions,
  type BenchOutcome,
} from './lib/report.js'
import { summarize } from './lib/stats.js'
import { cdfSvg } from './lib/svg.js'

const SERVICE = 'bench-latency'
/** A change slower than this is in the tail. */
const TAIL_MS = 2

interface HealthEntry {
  Service?: { Meta?: Record<string, string> }
}

function seqsOf(entries: unknown): number[] {
  if (!Array.isArray(entries)) return []
  const out: number[] = []
  for (const e of entries as HealthEntry[]) {
    const seq = Number(e.Service?.Meta?.seq)
    if (Number.isInteger(seq)) out.push(seq)
  }
  return out
}

/**
 * The floor: a blocking-query loop with nothing but the documented index rules
 * (https://developer.hashicorp.com/consul/api-docs/features/blocking: reset when the index
 * goes backwards, never 0) and a JSON.parse of each answer.
 */
async function bareLoop(
  url: string,
  onEntries: (entries: unknown) => void,
  signal: AbortSignal,
): Promise<void> {
  const client = new Client(url, { bodyTimeout: 0, headersTimeout: 0 })
  let index = 1n
  try {
    while (!signal.aborted) {
      try {
        const res = await client.request({
          method: 'GET',
          path: `/v1/health/service/${SERVICE}?passing=1&index=${index.toString()}&wait=60s`,
          signal,
        })
        const text = await res.body.text()
        const next = BigInt(String(res.headers['x-consul-index'] ?? '1'))
        if (res.statusCode !== 200) continue
        index = next < index ? 1n : next > 0n ? next : 1n
        onEntries(JSON.parse(text))
      } catch {
        // Aborted (the loop condition ends it) or a transient error on loopback: ask again.
      }
    }
  } finally {
    await client.close().catch(() => undefined)
  }
}

/** wayfind, started fresh for each round (its own client, connections and watch). */
function wayfindContender(url: string): Contender {
  let wf: Wayfind | undefined
  return {
    label: 'wayfind change event',
    async start(see) {
      wf = createWayfind({ registry: consul({ url }) })
      onSeqChange(wf, see)
      await wf.resolve(SERVICE, { timeoutMs: 10_000 })
    },
    async stop() {
      await wf?.close()
    },
  }
}

function bareContender(url: string): Contender {
  let stop: AbortController | undefined
  let loop: Promise<void> | undefined
  return {
    label: 'bare blocking loop (undici)',
    async start(see) {
      const ac = new AbortController()
      stop = ac
      await new Promise<void>((resolve) => {
        loop = bareLoop(
          url,
          (entries) => {
            resolve()
            for (const s of seqsOf(entries)) see(s)
          },
          ac.signal,
        )
      })
    },
    async stop() {
      stop?.abort()
      await loop
    },
  }
}

function watchContender(url: string): Contender {
  let watch: ReturnType<Consul['watch']> | undefined
  let agent: http.Agent | undefined
  return {
    label: 'consul package Watch',
    async start(see) {
      const { hostname, port } = new URL(url)
      // Its own agent, destroyed on stop, so that no parked query outlives the round.
      agent = new http.Agent({ keepAlive: true })
      const nc = new Consul({ host: hostname, port: Number(port), agent })
      const w = nc.watch({
        method: nc.health.service.bind(nc.health),
        options: { service: SERVICE, passing: 'true' },
      })
      watch = w
      w.on('error', () => undefined)
      await new Promise<void>((resolve) => {
        w.on('change', (data: unknown) => {
          resolve()
          for (const s of seqsOf(data)) see(s)
        })
      })
    },
    stop() {
      watch?.end()
      agent?.destroy()
      return Promise.resolve()
    },
  }
}

export async function run({ quick }: BenchOptions): Promise<BenchOutcome> {
  const { helper, ready } = await HelperProcess.start(
    new URL('./lib/consul-server-process.ts', import.meta.url).pathname,
  )
  const url = ready.url as string
  try {
    const contenders = [wayfindContender(url), bareContender(url), watchContender(url)]
    await helper.request({
      type: 'register',
      service: SERVICE,
      instanceId: 'a',
      port: 9000,
      seq: 0,
    })
    const cycles = quick ? 2 : 7
    const perRound = quick ? 10 : 50
    const gapMs = 25
    const result = await soloRounds({
      contenders,
      change: async (seq) => {
        const r = await helper.request({
          type: 'register',
          service: SERVICE,
          instanceId: 'a',
          port: 9000,
          seq,
        })
        return { ts: r.ts as number }
      },
      warmup: quick ? 3 : 10,
      cycles,
      perRound,
      gapMs,
      deadlineMs: 5_000,
    })
    const [obsWayfind, obsBare, obsWatch] = contenders.map((c) => c.label) as [
      string,
      string,
      string,
    ]
    const labels = [obsWayfind, obsBare, obsWatch]
    const sums = labels.map((l) => summarize(result.samples[l] ?? []))
    /** Share of an observer's changes slower than {@link TAIL_MS}, in percent. */
    const tail = labels.map((l) => {
      const all = result.samples[l] ?? []
      return all.length === 0 ? NaN : (100 * all.filter((v) => v > TAIL_MS).length) / all.length
    })
    const pct = (v: number | undefined): string => `${(v ?? NaN).toFixed(1)} %`
    const tailGap = Math.round(((tail[0] ?? NaN) - (tail[1] ?? NaN)) * 10) / 10
    const vsBare = (k: 'p50' | 'p90' | 'p99'): number => roundRatio(result, obsWayfind, obsBare, k)
    const vsWatch = (k: 'p50' | 'p90' | 'p99'): number =>
      roundRatio(result, obsWayfind, obsWatch, k)
    printTable(
      `Consul change → event latency (${sums[0]?.count ?? 0} changes each, ${cycles} interleaved solo rounds, test server in another process)`,
      ['observer', 'p50', 'p90', 'p99', 'max', `> ${String(TAIL_MS)} ms`],
      [
        ...labels.map((l, i) => [
          l,
          ms(sums[i]?.p50 ?? NaN),
          ms(sums[i]?.p90 ?? NaN),
          ms(sums[i]?.p99 ?? NaN),
          ms(sums[i]?.max ?? NaN),
          pct(tail[i]),
        ]),
        [
          'ratio wayfind / bare loop (median of rounds)',
          x(vsBare('p50')),
          x(vsBare('p90')),
          x(vsBare('p99')),
          '-',
          `${tailGap >= 0 ? '+' : ''}${tailGap.toFixed(1)} pp`,
        ],
        [
          'ratio wayfind / Watch (median of rounds)',
          x(vsWatch('p50')),
          x(vsWatch('p90')),
          x(vsWatch('p99')),
          '-',
          '-',
        ],
      ],
    )
    if (result.missed > 0) note(`  ${result.missed} changes were not seen within 5 s`)
    writeResults(
      'latency-consul',
      {
        method: 'interleaved solo rounds (one watcher active at a time, order shuffled per cycle)',
        summaries: Object.fromEntries(labels.map((l, i) => [l, sums[i]])),
        tailSharePercent: Object.fromEntries(labels.map((l, i) => [l, tail[i]])),
        ratios: {
          vsBare: { p50: vsBare('p50'), p90: vsBare('p90'), p99: vsBare('p99') },
          vsWatch: { p50: vsWatch('p50'), p90: vsWatch('p90'), p99: vsWatch('p99') },
        },
        settings: { gapMs, tailMs: TAIL_MS, wayfindOptions: 'defaults' },
        rounds: result.rounds,
        missed: result.missed,
        samples: result.samples,
      },
      {
        'latency-consul.svg': cdfSvg(
          'Consul: change → event latency (CDF)',
          'ms after the change was applied',
          labels.map((l) => ({ label: l, samples: result.samples[l] ?? [] })),
        ),
      },
    )
    return {
      name: 'latency-consul',
      checks: [
        check('Consul change→event p50 vs bare loop', vsBare('p50'), '<=', 1.1),
        check('Consul change→event p50 vs consul Watch', vsWatch('p50'), '<=', 1.05),
        check('Consul change→event p90 vs bare loop', vsBare('p90'), '<=', 1.25),
        check(
          `Consul changes > ${String(TAIL_MS)} ms, wayfind minus bare loop`,
          tailGap,
          '<=',
          2,
          ' pp',
        ),
        check('Consul changes missed', result.missed, '<=', 0, ''),
      ],
    }
  } finally {
    await helper.stop()
  }
}
