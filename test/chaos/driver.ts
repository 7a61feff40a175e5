/**
 * The chaos driver, shared by both registries: random register/deregister/update operations
 * from a seeded PRNG with faults interleaved, a wayfind client watching every service, then a
 * wait (on `change` events, with a deadline) until every watched cache equals the registry's
 * truth, read from the registry directly. See `ledger.ts` for what is counted and how.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { createWayfind } from '../../src/client.js'
import type { RegistryProvider } from '../../src/registry/provider.js'
import { ChangeLedger, canonical, type TruthInstance } from './ledger.js'
import { mulberry32, type Rng } from './prng.js'

/** One registry under test, with its fault hooks. */
export interface ChaosTarget {
  readonly registry: 'etcd' | 'consul'
  readonly services: readonly string[]
  readonly faultKinds: readonly string[]
  /** A fresh provider for the wayfind client under test. */
  provider(): RegistryProvider
  /** Applies one random operation; returns a one-line description for the trace. */
  op(rng: Rng): Promise<string>
  /** Starts a fault; resolves with a description and the function that ends it. */
  fault(kind: string, rng: Rng): Promise<{ what: string; end: () => Promise<void> }>
  /** The service's passing instances, read from the registry itself (not through wayfind). */
  truth(service: string): Promise<TruthInstance[]>
  /** The registry's side of the story, for a failure message (indexes, parked queries...). */
  describe(): string
  close(): Promise<void>
}

export interface ChaosOptions {
  readonly seed: number
  readonly ops: number
  /** On average one fault per this many operations (at least one of each kind). @defaultValue 10 */
  readonly opsPerFault?: number
  /** Mid-run convergence checks, one per this many operations (0 = none). @defaultValue 50 */
  readonly checkpointEvery?: number
  /** Deadline of each convergence wait. @defaultValue 30_000 */
  readonly convergeTimeoutMs?: number
}

export interface ChaosReport {
  readonly registry: string
  readonly seed: number
  readonly ops: number
  readonly faults: Readonly<Record<string, number>>
  readonly events: number
  readonly lost: number
  readonly duplicate: number
  readonly noop: number
  readonly inconsistent: number
  readonly unhandledRejections: number
  /** Error events the client reported, by code (informative: faults are meant to cause them). */
  readonly errors: Readonly<Record<string, number>>
  /** From the end of the last fault to the caches equal to the truth. */
  readonly convergeAfterLastFaultMs: number
  /** From the last write or fault to the caches equal to the truth. */
  readonly convergeAfterQuietMs: number
  /** Mid-run checkpoints: how many, and the slowest one to converge. */
  readonly checkpoints: number
  readonly slowestCheckpointMs: number
  readonly finalInstances: number
  readonly durationMs: number
  readonly ok: boolean
  /** What went wrong, and the last operations before it. */
  readonly problems: readonly string[]
  readonly trace: readonly string[]
}

const TRACE_LENGTH = 40

/** Runs one seeded chaos scenario against `target` (which it closes). */
export async function runChaos(target: ChaosTarget, options: ChaosOptions): Promise<ChaosReport> {
  const rng = mulberry32(options.seed)
  const opsPerFault = options.opsPerFault ?? 10
  const checkpointEvery = options.checkpointEvery ?? 50
  const convergeTimeoutMs = options.convergeTimeoutMs ?? 30_000
  const started = performance.now()
  let unhandled = 0
  const problems: string[] = []
  const onUnhandled = (reason: unknown): void => {
    unhandled++
    problems.push(`unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}`)
  }
  process.on('unhandledRejection', onUnhandled)

  const trace: string[] = []
  const log = (line: string): void => {
    trace.push(`${((performance.now() - started) / 1000).toFixed(2)}s ${line}`)
    if (trace.length > TRACE_LENGTH) trace.shift()
  }

  // Where the faults go: at least one of each kind, in a seeded order, at seeded positions.
  const faultCount = Math.max(target.faultKinds.length, Math.round(options.ops / opsPerFault))
  const positions = new Set<number>()
  while (positions.size < Math.min(faultCount, options.ops)) positions.add(rng.int(options.ops))
  // Ascending; a position passed during another fault's operations runs right after it.
  const faultAt = [...positions].sort((a, b) => a - b)
  let kinds: string[] = []
  const faults: Record<string, number> = {}

  const wf = createWayfind({ registry: target.provider(), idleTtlMs: 3_600_000 })
  const ledger = new ChangeLedger(wf.events)
  const errors: Record<string, number> = {}
  wf.events.on('error', (e) => {
    errors[e.error.code] = (errors[e.error.code] ?? 0) + 1
  })
  for (const s of target.services) wf.instances(s) // starts every watch

  /** Waits until every service's announced state equals the truth; returns ms, or the differences. */
  const converge = async (): Promise<{ ms: number; diffs: string[] }> => {
    const t0 = performance.now()
    const truth = new Map<string, TruthInstance[]>()
    for (const s of target.services) truth.set(s, await target.truth(s))
    const diffs = (): string[] =>
      target.services.flatMap((s) => ledger.differences(s, truth.get(s) ?? []))
    if (diffs().length === 0) return { ms: performance.now() - t0, diffs: [] }
    let off = (): void => {}
    let timer: NodeJS.Timeout | undefined
    const done = await new Promise<boolean>((resolve) => {
      off = ledger.onRecord(() => {
        if (diffs().length === 0) resolve(true)
      })
      timer = setTimeout(() => {
        resolve(false)
      }, convergeTimeoutMs)
    })
    off()
    clearTimeout(timer)
    return { ms: performance.now() - t0, diffs: done ? [] : diffs() }
  }

  let lastFaultEnd = performance.now()
  let quietAt = performance.now()
  let checkpoints = 0
  // A fault's operations can step over a multiple of checkpointEvery: compare, not modulo.
  let nextCheckpoint = checkpointEvery
  let slowestCheckpointMs = 0
  let lost = 0
  let convergeAfterLastFaultMs = Number.NaN
  let convergeAfterQuietMs = Number.NaN
  let finalInstances = 0
  try {
    for (let i = 0; i < options.ops;) {
      if (faultAt.length > 0 && (faultAt[0] as number) <= i) {
        faultAt.shift()
        if (kinds.length === 0) kinds = rng.shuffle(target.faultKinds)
        const kind = kinds.shift() as string
        faults[kind] = (faults[kind] ?? 0) + 1
        const fault = await target.fault(kind, rng)
        log(`fault ${kind}: ${fault.what}`)
        // A few operations happen while the fault lasts.
        const inside = rng.between(1, 4)
        for (let k = 0; k < inside && i < options.ops; k++, i++) log(await target.op(rng))
        // The fault lasts a while, so that retries and backoff run their course.
        await delay(rng.int(400))
        await fault.end()
        log(`fault ${kind} ended`)
        lastFaultEnd = performance.now()
      } else {
        log(await target.op(rng))
        i++
      }
      // Think time now and then, so that the watchers see some states one by one and others
      // coalesced; this shapes the load, it synchronises nothing.
      if (rng.chance(0.3)) await delay(rng.int(40))
      if (checkpointEvery > 0 && i >= nextCheckpoint && i < options.ops) {
        nextCheckpoint += checkpointEvery
        const c = await converge()
        checkpoints++
        slowestCheckpointMs = Math.max(slowestCheckpointMs, c.ms)
        log(`checkpoint after ${i} ops: converged in ${c.ms.toFixed(0)} ms`)
        if (c.diffs.length > 0) {
          lost += c.diffs.length
          problems.push(`checkpoint after ${i} ops, not converged within ${convergeTimeoutMs} ms:`)
          problems.push(...c.diffs.slice(0, 10), `registry: ${target.describe()}`)
          break
        }
      }
    }
    quietAt = performance.now()
    if (problems.length === 0) {
      const c = await converge()
      const convergedAt = performance.now()
      lost += c.diffs.length
      if (c.diffs.length > 0) {
        problems.push(`final state not converged within ${convergeTimeoutMs} ms:`)
        problems.push(...c.diffs.slice(0, 10), `registry: ${target.describe()}`)
      } else {
        convergeAfterLastFaultMs = convergedAt - lastFaultEnd
        convergeAfterQuietMs = convergedAt - quietAt
      }
    }
    // The cache's own state must be what it announced.
    for (const s of target.services) {
      const cached = wf.instances(s)
      finalInstances += cached.length
      const announced = ledger.announced(s)
      const same =
        cached.length === announced.size &&
        cached.every((inst) => announced.get(inst.key) === canonical(inst))
      if (!same) problems.push(`${s}: wf.instances() differs from what the events announced`)
    }
  } catch (err) {
    problems.push(
      `the driver failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    )
  } finally {
    ledger.close()
    await wf.close()
    await target.close()
    // A rejection left unhandled by the closing itself surfaces on the next turns.
    await delay(0)
    process.off('unhandledRejection', onUnhandled)
  }
  const counts = ledger.counts()
  problems.push(...counts.problems)
  const report: ChaosReport = {
    registry: target.registry,
    seed: options.seed,
    ops: options.ops,
    faults,
    events: counts.events,
    lost,
    duplicate: counts.duplicate,
    noop: counts.noop,
    inconsistent: counts.inconsistent,
    unhandledRejections: unhandled,
    errors,
    convergeAfterLastFaultMs,
    convergeAfterQuietMs,
    checkpoints,
    slowestCheckpointMs,
    finalInstances,
    durationMs: performance.now() - started,
    ok: false,
    problems,
    trace,
  }
  return { ...report, ok: problems.length === 0 }
}

/** The command that replays a run. */
export function replayCommand(r: Pick<ChaosReport, 'registry' | 'seed' | 'ops'>): string {
  return `npm run chaos -- --registry ${r.registry} --seed ${r.seed} --ops ${r.ops}`
}

/** A human-readable summary; on failure it ends with the problems, the trace and the replay. */
export function formatReport(r: ChaosReport): string {
  const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)} ms` : '-')
  const lines = [
    `chaos ${r.registry} seed=${r.seed} ops=${r.ops}: ${r.ok ? 'OK' : 'FAILED'} in ${(r.durationMs / 1000).toFixed(1)} s`,
    `  faults: ${Object.entries(r.faults)
      .map(([k, v]) => `${k}×${v}`)
      .join(' ')}`,
    `  change events ${r.events}; lost ${r.lost}, duplicate ${r.duplicate}, no-op ${r.noop}, inconsistent ${r.inconsistent}; unhandled rejections ${r.unhandledRejections}`,
    `  converged ${ms(r.convergeAfterLastFaultMs)} after the last fault (${ms(r.convergeAfterQuietMs)} after the last write); ${r.checkpoints} checkpoints, slowest ${ms(r.slowestCheckpointMs)}; ${r.finalInstances} instances at the end`,
    `  error events: ${
      Object.entries(r.errors)
        .map(([k, v]) => `${k}×${v}`)
        .join(' ') || 'none'
    }`,
  ]
  if (!r.ok) {
    lines.push('  problems:', ...r.problems.map((p) => `    ${p}`))
    lines.push('  last operations:', ...r.trace.map((t) => `    ${t}`))
    lines.push(`  replay: ${replayCommand(r)}`)
  }
  return `${lines.join('\n')}\n`
}
