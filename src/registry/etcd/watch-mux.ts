/**
 * One gRPC Watch stream shared by every range a client watches.
 *
 * etcd multiplexes watchers on a stream by `watch_id`, and the Go client puts every watch of a
 * context on one stream (`client/v3/watch.go`, `watchGrpcStream`). A stream per service cost
 * 1,000 streams (and their server-side goroutines) for 1,000 services; now it is one.
 *
 * Matching: etcd handles a stream's requests in order and answers each create with exactly one
 * `created` response (with `canceled` set when it refused it, e.g. permission denied, watch_id
 * -1), so pending creates are matched first in, first out; everything after carries the
 * watch_id. Per watcher, the contract of the former one-stream-per-range loop is kept: a cancel
 * from etcd (compaction or other) ends only that watcher with `relist`; the stream failing or
 * ending ends every watcher with `resume`, and each resumes from its own revision on a fresh
 * shared stream. The stream closes when its last watcher leaves, so nothing keeps a process alive.
 */
import type { IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from 'etcd3'
import { isAborted, onAbort } from '../../core/abort.js'
import type { WayfindEtcd3 } from './client.js'
import { etcd3 } from './load.js'

/** Why one watcher's watch ended. */
export type StreamEnd =
  | { readonly kind: 'relist'; readonly why: string; readonly delay?: boolean }
  | { readonly kind: 'resume'; readonly error: unknown }
  | { readonly kind: 'aborted' }

export interface StreamCallbacks {
  /** Returns a reason to re-list instead of watching on. */
  created(headerRevision: bigint): string | undefined
  events(events: readonly IEvent[], headerRevision: bigint): void
}

type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>

interface Watcher {
  readonly cb: StreamCallbacks
  /** etcd's id, once created. */
  id: string | undefined
  done: boolean
  /** Ends the watcher; `cancel` asks etcd to drop it (not needed when etcd ended it). */
  finish(end: StreamEnd, cancel: boolean): void
}

class SharedStream {
  readonly stream: WatchStream
  /** Creates sent and not yet answered, in order. */
  readonly pending: Watcher[] = []
  readonly byId = new Map<string, Watcher>()
  closed = false

  constructor(stream: WatchStream) {
    this.stream = stream
  }

  get live(): number {
    let n = this.byId.size
    for (const w of this.pending) if (!w.done) n++
    return n
  }
}

const muxes = new WeakMap<WayfindEtcd3, WatchMux>()

/** The shared Watch stream manager of `client`. */
export function watchMuxOf(client: WayfindEtcd3): WatchMux {
  let m = muxes.get(client)
  if (m === undefined) {
    m = new WatchMux(client)
    muxes.set(client, m)
  }
  return m
}

export class WatchMux {
  readonly #client: WayfindEtcd3
  #current: SharedStream | undefined
  #opening: Promise<SharedStream> | undefined

  constructor(client: WayfindEtcd3) {
    this.#client = client
  }

  /**
   * Watches `range` from `startRevision` until etcd cancels it, the stream fails or `signal`
   * aborts; resolves with why. Rejects when the stream cannot be opened.
   */
  async watch(
    range: { readonly key: Buffer; readonly end: Buffer },
    startRevision: bigint,
    signal: AbortSignal,
    cb: StreamCallbacks,
  ): Promise<StreamEnd> {
    if (signal.aborted) return { kind: 'aborted' }
    const s = await this.#stream()
    if (isAborted(signal)) {
      this.#closeIfUnused(s)
      return { kind: 'aborted' }
    }
    // It failed while we waited for it to open: the caller resumes as after any stream error.
    if (s.closed) return { kind: 'resume', error: new Error('the watch stream ended') }
    return new Promise<StreamEnd>((resolve) => {
      const w: Watcher = {
        cb,
        id: undefined,
        done: false,
        finish: (end, cancel) => {
          if (w.done) return
          w.done = true
          offAbort()
          if (w.id !== undefined) {
            s.byId.delete(w.id)
            if (cancel) this.#cancel(s, w.id)
          }
          // Still waiting for its `created`: that answer cancels it (see #onData).
          this.#closeIfUnused(s)
          resolve(end)
        },
      }
      const offAbort = onAbort(signal, () => {
        w.finish({ kind: 'aborted' }, true)
      })
      s.pending.push(w)
      s.stream.write({
        create_request: {
          key: range.key,
          range_end: range.end,
          start_revision: startRevision.toString(),
          progress_notify: true,
        },
      })
    })
  }

  #stream(): Promise<SharedStream> {
    const current = this.#current
    if (current !== undefined && !current.closed) return Promise.resolve(current)
    this.#opening ??= this.#open().finally(() => {
      this.#opening = undefined
    })
    return this.#opening
  }

  async #open(): Promise<SharedStream> {
    const s = new SharedStream(await this.#client.leaderWatchClient.watch())
    this.#current = s
    s.stream.on('data', (res) => {
      this.#onData(s, res)
    })
    s.stream.on('error', (err) => {
      this.#fail(s, etcd3().castGrpcError(err))
    })
    s.stream.on('end', () => {
      this.#fail(s, new Error('the watch stream ended'))
    })
    return s
  }

  #onData(s: SharedStream, res: IWatchResponse): void {
    if (s.closed) return
    const header = BigInt(res.header.revision)
    if (res.created) {
      const w = s.pending.shift()
      if (w === undefined) return
      w.id = res.watch_id
      if (res.canceled) {
        w.finish({ kind: 'relist', why: cancelReason(res) }, false)
        return
      }
      if (w.done) {
        // Left (aborted) before etcd created it; its finish() already closed an unused stream.
        this.#cancel(s, res.watch_id)
        return
      }
      s.byId.set(res.watch_id, w)
      const why = w.cb.created(header)
      if (why !== undefined) w.finish({ kind: 'relist', why, delay: true }, true)
      return
    }
    const w = s.byId.get(res.watch_id)
    if (w === undefined) return
    if (res.canceled) {
      // Compaction sets compact_revision (cancel_reason is empty on 3.4); the start revision
      // must not be retried (WatchResponse docs). Other cancels (token, permission) re-list
      // too: the unary listing re-authenticates, and reports what still fails.
      w.finish({ kind: 'relist', why: cancelReason(res) }, false)
      return
    }
    try {
      w.cb.events(res.events, header)
    } catch (err) {
      // A handler bug must not kill the loop; resuming re-applies from its revision.
      w.finish({ kind: 'resume', error: err }, true)
    }
  }

  /** The stream failed or ended: every watcher on it resumes on a new one. */
  #fail(s: SharedStream, error: unknown): void {
    if (s.closed) return
    this.#close(s)
    const all = [...s.byId.values(), ...s.pending]
    s.byId.clear()
    s.pending.length = 0
    for (const w of all) w.finish({ kind: 'resume', error }, false)
  }

  #cancel(s: SharedStream, id: string): void {
    if (s.closed) return
    try {
      s.stream.write({ cancel_request: { watch_id: id } })
    } catch {
      // The stream is going away: nothing to cancel.
    }
  }

  #closeIfUnused(s: SharedStream): void {
    if (!s.closed && s.live === 0) this.#close(s)
  }

  #close(s: SharedStream): void {
    s.closed = true
    if (this.#current === s) this.#current = undefined
    // end() before cancel(): etcd3 counts an error on a still-writable stream against the host
    // (and resets all its channels), and a cancel of ours is no failure.
    try {
      s.stream.end()
      s.stream.cancel()
    } catch {
      // Already closed.
    }
  }
}

function cancelReason(res: IWatchResponse): string {
  return res.compact_revision !== '0' && res.compact_revision !== ''
    ? `compacted at ${res.compact_revision}`
    : `canceled by etcd: ${res.cancel_reason === '' ? '(no reason)' : res.cancel_reason}`
}
