/**
 * The change → event latency loop shared by the etcd and Consul benchmarks. Closed loop: one
 * change in flight at a time; the next one goes out when every watcher has seen the current one
 * (or a deadline passed, which counts as a miss). Each watcher records, per change sequence
 * number, the wall-clock time at which it saw the change; latency = seen − stamp, where the
 * stamp was taken by the writer process just before it made the change.
 */
import type { Wayfind } from '../../src/index.js'
import { median, ratio, summarize, type Summary } from './stats.js'

/** One observer of the registry: calls `seen(seq)` when it observes change `seq`. */
export interface Observer {
  readonly label: string
  /** seq → wall-clock ms at which the observer saw it. */
  readonly seen: Map<number, number>
}

export function observer(label: string): Observer {
  return { label, seen: new Map() }
}

export interface LatencyRun {
  readonly labels: readonly string[]
  /** label → latencies (ms) of the measured changes, in order. */
  readonly samples: Record<string, number[]>
  /** label → per-round summaries. */
  readonly rounds: Record<string, Summary[]>
  /** Changes some observer missed within the deadline. */
  readonly missed: number
  /** Writer-side acknowledgement times (ms), when the writer reports them. */
  readonly ackMs: number[]
}

export interface LatencyLoopOptions {
  readonly observers: readonly Observer[]
  /** Makes change `seq`; resolves with its wall-clock stamp (and ack time when known). */
  readonly change: (seq: number) => Promise<{ ts: number; ackMs?: number }>
  readonly warmup: number
  readonly rounds: number
  readonly perRound: number
  /** Deadline for every observer to see one change. */
  readonly deadlineMs: number
  /** Optional pause between changes (e.g. to stay below a rate limit); default none. */
  readonly gapMs?: number
  /** Called after each change (progress). */
  readonly onProgress?: (done: number, total: number) => void
}

/** Resolves once every observer has seen `seq`, or after `deadlineMs` (false). */
function allSeen(
  observers: readonly Observer[],
  seq: number,
  deadlineMs: number,
  wake: { fn: (() => void) | undefined },
): Promise<boolean> {
  const done = (): boolean => observers.every((o) => o.seen.has(seq))
  if (done()) return Promise.resolve(true)
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => {
      wake.fn = undefined
      resolve(false)
    }, deadlineMs)
    wake.fn = () => {
      if (!done()) return
      clearTimeout(timer)
      wake.fn = undefined
      resolve(true)
    }
  })
}

/**
 * Returns the function observers call when they see `seq` (records the time and wakes the loop),
 * and the loop itself.
 */
export function latencyLoop(): {
  see: (o: Observer, seq: number) => void
  run: (options: LatencyLoopOptions) => Promise<LatencyRun>
} {
  const wake: { fn: (() => void) | undefined } = { fn: undefined }
  const see = (o: Observer, seq: number): void => {
    if (!o.seen.has(seq)) o.seen.set(seq, performance.timeOrigin + performance.now())
    wake.fn?.()
  }
  const run = async (opt: LatencyLoopOptions): Promise<LatencyRun> => {
    const labels = opt.observers.map((o) => o.label)
    const samples: Record<string, number[]> = Object.fromEntries(labels.map((l) => [l, []]))
    const rounds: Record<string, Summary[]> = Object.fromEntries(labels.map((l) => [l, []]))
    const ackMs: number[] = []
    let missed = 0
    const total = opt.warmup + opt.rounds * opt.perRound
    let seq = 0
    for (let r = -1; r < opt.rounds; r++) {
      const n = r < 0 ? opt.warmup : opt.perRound
      const roundSamples: Record<string, number[]> = Object.fromEntries(labels.map((l) => [l, []]))
      for (let i = 0; i < n; i++) {
        seq++
        const { ts, ackMs: ack } = await opt.change(seq)
        const ok = await allSeen(opt.observers, seq, opt.deadlineMs, wake)
        opt.onProgress?.(seq, total)
        if (r < 0) continue
        if (!ok) {
          missed++
          continue
        }
        if (ack !== undefined) ackMs.push(ack)
        for (const o of opt.observers) {
          const lat = (o.seen.get(seq) ?? Number.NaN) - ts
          samples[o.label]?.push(lat)
          roundSamples[o.label]?.push(lat)
        }
        if (opt.gapMs !== undefined && opt.gapMs > 0)
          await new Promise((res) => setTimeout(res, opt.gapMs))
      }
      if (r >= 0) for (const l of labels) rounds[l]?.push(summarize(roundSamples[l] ?? []))
    }
    return { labels, samples, rounds, missed, ackMs }
  }
  return { see, run }
}

/** Median over rounds of (a's percentile / b's percentile): a ratio from the same run. */
export function roundRatio(
  run: LatencyRun,
  a: string,
  b: string,
  key: 'p50' | 'p90' | 'p99',
): number {
  const ra = run.rounds[a] ?? []
  const rb = run.rounds[b] ?? []
  const ratios: number[] = []
  for (let i = 0; i < Math.min(ra.length, rb.length); i++)
    ratios.push(ratio(ra[i]?.[key] ?? Number.NaN, rb[i]?.[key] ?? Number.NaN))
  return Math.round(median(ratios) * 100) / 100
}

/**
 * A watcher that can be started and stopped, for solo rounds: `start` subscribes and resolves
 * once it is watching; it reports each change it sees with `see(seq)`.
 */
export interface Contender {
  readonly label: string
  start(see: (seq: number) => void): Promise<void>
  stop(): Promise<void>
}

export interface SoloOptions {
  readonly contenders: readonly Contender[]
  readonly change: (seq: number) => Promise<{ ts: number; ackMs?: number }>
  /** Unmeasured changes after each start (connections and caches warm up). */
  readonly warmup: number
  /** Cycles; each cycle runs every contender alone once, in a shuffled order. */
  readonly cycles: number
  readonly perRound: number
  readonly deadlineMs: number
  readonly gapMs?: number
}

/**
 * Interleaved solo rounds: only one watcher is active at a time, so none waits behind another
 * (a server answers parked queries one after the other, and a client process handles one socket
 * at a time). Round i of every contender belongs to the same cycle, close in time, so
 * {@link roundRatio} compares neighbours.
 */
export async function soloRounds(opt: SoloOptions): Promise<LatencyRun> {
  const labels = opt.contenders.map((c) => c.label)
  const samples: Record<string, number[]> = Object.fromEntries(labels.map((l) => [l, []]))
  const rounds: Record<string, Summary[]> = Object.fromEntries(labels.map((l) => [l, []]))
  let missed = 0
  let seq = 1_000_000
  for (let cycle = 0; cycle < opt.cycles; cycle++) {
    const order = [...opt.contenders].sort(() => Math.random() - 0.5)
    for (const c of order) {
      const { see, run } = latencyLoop()
      const o = observer(c.label)
      // The loop numbers its changes 1..n; the registry carries base + n, unique across rounds.
      const base = seq
      await c.start((s) => {
        if (s > base) see(o, s - base)
      })
      try {
        const r = await run({
          observers: [o],
          change: (s) => opt.change(base + s),
          warmup: opt.warmup,
          rounds: 1,
          perRound: opt.perRound,
          deadlineMs: opt.deadlineMs,
          ...(opt.gapMs === undefined ? {} : { gapMs: opt.gapMs }),
        })
        seq = base + opt.warmup + opt.perRound + 1
        missed += r.missed
        samples[c.label]?.push(...(r.samples[c.label] ?? []))
        rounds[c.label]?.push(...(r.rounds[c.label] ?? []))
      } finally {
        await c.stop()
      }
    }
  }
  return { labels, samples, rounds, missed, ackMs: [] }
}

/**
 * Calls `see(seq)` for every instance whose `meta.seq` a `change` event brings (added or updated):
 * how the latency benchmarks observe wayfind.
 */
export function onSeqChange(wf: Wayfind, see: (seq: number) => void): void {
  wf.events.on('change', (e) => {
    for (const i of e.updated.length > 0 ? e.updated : e.added) {
      const seq = Number(i.meta.seq)
      if (Number.isInteger(seq)) see(seq)
    }
  })
}
