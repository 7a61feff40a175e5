/**
 * Shared pieces of the etcd integration tests: a recording WatchListener whose waits are
 * event-driven with deadlines, and a tiny writer.
 */
import { EventEmitter } from 'node:events'
import type { Etcd3 } from 'etcd3'
import type { WayfindError } from '../../../src/errors.js'
import type { Instance } from '../../../src/instance.js'
import type { ServiceSnapshot, WatchListener } from '../../../src/registry/provider.js'
import { withDeadline } from '../../support/wait.js'

/** Records every snapshot and error; `until()` waits for a snapshot matching a predicate. */
export class Recorder implements WatchListener {
  readonly snapshots: ServiceSnapshot[] = []
  readonly errors: WayfindError[] = []
  /** When each snapshot arrived (performance.now()). */
  readonly times: number[] = []
  readonly #events = new EventEmitter()

  onSnapshot(snapshot: ServiceSnapshot): void {
    this.snapshots.push(snapshot)
    this.times.push(performance.now())
    this.#events.emit('snapshot', snapshot)
  }

  onError(error: WayfindError): void {
    this.errors.push(error)
    this.#events.emit('error-event', error)
  }

  get last(): ServiceSnapshot | undefined {
    return this.snapshots.at(-1)
  }

  /** Ids of the last snapshot, sorted. */
  ids(): string[] {
    return (this.last?.instances ?? []).map((i) => i.id).sort()
  }

  /** Resolves with the first snapshot (already received or future) for which `predicate` holds. */
  until(
    predicate: (s: ServiceSnapshot) => boolean,
    timeoutMs = 10_000,
    what = 'a matching snapshot',
  ): Promise<ServiceSnapshot> {
    const last = this.last
    if (last !== undefined && predicate(last)) return Promise.resolve(last)
    let handler: ((s: ServiceSnapshot) => void) | undefined
    const p = new Promise<ServiceSnapshot>((resolve) => {
      handler = (s) => {
        if (predicate(s)) resolve(s)
      }
      this.#events.on('snapshot', handler)
    })
    return withDeadline(p, timeoutMs, what).finally(() => {
      if (handler) this.#events.off('snapshot', handler)
    })
  }

  /** Waits for an error (already received counts only if `since` is before it). */
  untilError(
    predicate: (e: WayfindError) => boolean,
    timeoutMs = 10_000,
    since = 0,
  ): Promise<WayfindError> {
    const found = this.errors.slice(since).find(predicate)
    if (found !== undefined) return Promise.resolve(found)
    let handler: ((e: WayfindError) => void) | undefined
    const p = new Promise<WayfindError>((resolve) => {
      handler = (e) => {
        if (predicate(e)) resolve(e)
      }
      this.#events.on('error-event', handler)
    })
    return withDeadline(p, timeoutMs, 'a matching error').finally(() => {
      if (handler) this.#events.off('error-event', handler)
    })
  }
}

/** The registrar's JSON layout. */
export function wayfindValue(
  id: string,
  port: number,
  extra: Partial<Record<string, unknown>> = {},
): string {
  return JSON.stringify({
    id,
    name: extra.name ?? 'svc',
    address: '127.0.0.1',
    port,
    tags: [],
    meta: {},
    weight: 1,
    ...extra,
  })
}

/** Puts with retries until etcd answers (for writes right after a restart). */
export async function putEventually(
  client: Etcd3,
  key: string,
  value: string,
  timeoutMs = 15_000,
): Promise<void> {
  const started = Date.now()
  for (;;) {
    try {
      await client.put(key).value(value)
      return
    } catch (err) {
      if (Date.now() - started > timeoutMs) throw err
      await new Promise((r) => setTimeout(r, 20))
    }
  }
}

export function hasIds(...ids: string[]): (s: ServiceSnapshot) => boolean {
  const want = [...ids].sort().join(',')
  return (s) =>
    s.instances
      .map((i: Instance) => i.id)
      .sort()
      .join(',') === want
}
