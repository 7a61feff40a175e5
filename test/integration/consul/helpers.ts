/**
 * Drives a Consul provider through the WatchListener contract and waits on what it reports,
 * with deadlines (never sleeps).
 */
import { createEvents } from '../../../src/events.js'
import type { WayfindError } from '../../../src/errors.js'
import type { ServiceSnapshot, WatchListener } from '../../../src/registry/provider.js'
import { withDeadline } from '../../support/wait.js'

type RecorderEvents = { snapshot: ServiceSnapshot; error: WayfindError }

export interface Recorder {
  readonly listener: WatchListener
  readonly snapshots: ServiceSnapshot[]
  readonly errors: WayfindError[]
  /** Resolves with the first snapshot at position ≥ `from` that satisfies `predicate`. */
  snapshot(
    predicate?: (s: ServiceSnapshot) => boolean,
    options?: { from?: number; timeoutMs?: number },
  ): Promise<ServiceSnapshot>
  /** Resolves with the first error at position ≥ `from` that satisfies `predicate`. */
  error(
    predicate?: (e: WayfindError) => boolean,
    options?: { from?: number; timeoutMs?: number },
  ): Promise<WayfindError>
}

export function recorder(): Recorder {
  const hub = createEvents<RecorderEvents>()
  const snapshots: ServiceSnapshot[] = []
  const errors: WayfindError[] = []
  const wait = <K extends keyof RecorderEvents>(
    type: K,
    list: RecorderEvents[K][],
    predicate: (v: RecorderEvents[K]) => boolean,
    { from = 0, timeoutMs = 5_000 }: { from?: number; timeoutMs?: number },
  ): Promise<RecorderEvents[K]> => {
    const found = list.slice(from).find(predicate)
    if (found !== undefined) return Promise.resolve(found)
    let off = (): void => {}
    const p = new Promise<RecorderEvents[K]>((resolve) => {
      off = hub.api.on(type, (v) => {
        if (predicate(v)) resolve(v)
      })
    })
    return withDeadline(p, timeoutMs, `a matching ${type}`).finally(off)
  }
  return {
    listener: {
      onSnapshot(s) {
        snapshots.push(s)
        hub.emit('snapshot', s)
      },
      onError(e) {
        errors.push(e)
        hub.emit('error', e)
      },
    },
    snapshots,
    errors,
    snapshot: (predicate = () => true, options = {}) =>
      wait('snapshot', snapshots, predicate, options),
    error: (predicate = () => true, options = {}) => wait('error', errors, predicate, options),
  }
}

/** `id@host:port/status` of each instance, for compact assertions. */
export function summary(s: ServiceSnapshot): string[] {
  return s.instances.map((i) => `${i.id}@${i.host}:${i.port}/${i.status}`)
}
