/**
 * Pieces shared by the built-in pickers: pre-built results (so a pick allocates nothing), the
 * "everything excluded" failure, weight checks and load readers.
 */
import type { Clock } from '../core/clock.js'
import { NoInstancesError } from '../errors.js'
import type { Instance } from '../instance.js'
import { DefaultLoadTracker } from './load-tracker.js'
import type { LoadRecords, PickFail, PickOk } from './strategy.js'

/** One frozen `PickOk` per instance, in order. */
export function buildResults(instances: readonly Instance[]): PickOk[] {
  const out = new Array<PickOk>(instances.length)
  for (let i = 0; i < instances.length; i++)
    out[i] = Object.freeze({ kind: 'pick', instance: instances[i] as Instance })
  return out
}

/** True when at least two instances have different weights (then weighted variants apply). */
export function weightsDiffer(instances: readonly Instance[]): boolean {
  const first = instances[0]?.weight ?? 1
  for (const i of instances) if (i.weight !== first) return true
  return false
}

/** The result returned when every instance is in the pick's `exclude` set. Built lazily. */
export class ExcludedFailure {
  readonly #service: string
  #result: PickFail | undefined
  constructor(service: string) {
    this.#service = service
  }
  get result(): PickFail {
    this.#result ??= Object.freeze({
      kind: 'fail',
      error: new NoInstancesError(
        this.#service,
        'every instance was excluded (already tried or ejected)',
      ),
    })
    return this.#result
  }
}

/** Index of the first instance at or after `start` (cyclically) whose key is not excluded, or -1. */
export function firstAllowed(
  instances: readonly Instance[],
  start: number,
  exclude: ReadonlySet<string>,
  skip = -1,
): number {
  const n = instances.length
  for (let k = 0; k < n; k++) {
    const i = start + k < n ? start + k : start + k - n
    if (i !== skip && !exclude.has((instances[i] as Instance).key)) return i
  }
  return -1
}

/** Read access to load by slot; the default tracker directly, any other tracker through records. */
export interface LoadView {
  inflightOf(slot: number): number
  latencyOf(slot: number, now: number): number
  /** A time at or after every latency sample: enough to compare two decayed costs. */
  compareNow(): number
}

/** Slots and a reader for `instances` in `load`. Other record sources get an adapter (slot = index). */
export function loadView(
  instances: readonly Instance[],
  load: LoadRecords,
  clock: Clock,
): { view: LoadView; slots: Int32Array } {
  const slots = new Int32Array(instances.length)
  if (load instanceof DefaultLoadTracker) {
    for (let i = 0; i < instances.length; i++)
      slots[i] = load.record((instances[i] as Instance).key).slot
    return { view: load, slots }
  }
  const records = instances.map((i) => load.record(i.key))
  for (let i = 0; i < instances.length; i++) slots[i] = i
  return {
    slots,
    view: {
      inflightOf: (slot) => records[slot]?.inflight ?? 0,
      latencyOf: (slot, now) => records[slot]?.latencyMs(now) ?? 0,
      compareNow: () => clock.now(),
    },
  }
}
