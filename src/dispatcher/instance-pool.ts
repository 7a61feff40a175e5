/**
 * The connections of one instance: at most `connections` undici `Client`s, each carrying at most
 * `pipelining` requests, and a FIFO of requests waiting for one of them.
 *
 * Why not undici's `Pool`: the dispatcher already wraps every request (in-flight, outcome,
 * retries), so it knows when each connection frees up. A `Pool` works that out again per request:
 * its dispatch scans its clients twice for a free one (pool-base.js `kDispatch`, pool.js
 * `kGetDispatcher`) and every completion runs its `'drain'` listener. Skipping that layer measured
 * about 5 % more req/s over four instances (bench/dispatch.ts), which is what puts the dispatcher
 * ahead of undici's `BalancedPool` instead of 1–3 % behind it.
 *
 * What it keeps from `Pool` on purpose: a request only goes to a connection with room, so it
 * never waits behind another request on a busy socket (no head-of-line blocking); when every
 * connection is busy it waits here and takes the first connection that frees up. A client whose
 * connect failed is dropped and replaced on demand, as `Pool` does since undici#4088.
 * `close()` lets queued and running requests finish; `destroy()` fails them.
 *
 * Pool-only options (`factory`, `clientTtl`) and HTTP/2 (`allowH2`, where one connection carries
 * many streams) keep undici's `Pool`: see `usesOwnConnections`.
 */
import { Client, errors, type Dispatcher } from 'undici'
import type { Call, Lease } from './call.js'

type Handler = Dispatcher.DispatchHandler

/** One connection (an undici Client) and the requests it carries now. */
class Connection implements Lease {
  readonly client: Client
  readonly #owner: InstancePool
  running = 0
  /** On the owner's stack of connections with room. */
  listed = false
  /** Connect failed: no new requests; dropped once its last request ends. */
  dead = false

  constructor(owner: InstancePool, client: Client) {
    this.#owner = owner
    this.client = client
  }

  release(): void {
    this.#owner.release(this)
  }
}

/** HTTP/2 may be negotiated: one connection then carries many streams at once. */
export function mayMultiplex(pool: { allowH2?: unknown; useH2c?: unknown }): boolean {
  return pool.allowH2 === true || pool.useH2c === true
}

/** Pool options that only undici's `Pool` implements; with any of them, the dispatcher uses it. */
export function usesOwnConnections(pool: {
  allowH2?: unknown
  useH2c?: unknown
  factory?: unknown
  clientTtl?: unknown
}): boolean {
  return !mayMultiplex(pool) && pool.factory === undefined && pool.clientTtl == null
}

export class InstancePool {
  readonly #origin: string
  readonly #options: Client.Options
  readonly #max: number
  readonly #depth: number
  readonly #onDrain: () => void
  /** Live connections (dead ones leave at once). */
  readonly #all: Connection[] = []
  /** Connections with room, most recently freed on top: keeps the warmest sockets busy. */
  readonly #free: Connection[] = []
  /** Dead connections still carrying a request: destroyed with the pool. */
  readonly #dead = new Set<Connection>()
  /** Waiting requests; `#head` is the next one (a shifting array costs O(n) per shift). */
  #queue: (Call | undefined)[] = []
  #head = 0
  #needDrain = false
  #closing = false
  #destroyed = false
  #closed: (() => void) | undefined
  #closePromise: Promise<void> | undefined

  /**
   * @param options Client options (connector, keep-alive, pipelining).
   * @param onDrain Called when a `send()` that returned false has room again (undici's `'drain'`).
   */
  constructor(origin: string, options: Client.Options, connections: number, onDrain: () => void) {
    this.#origin = origin
    this.#options = options
    this.#max = connections
    this.#depth = Math.max(1, options.pipelining ?? 1)
    this.#onDrain = onDrain
  }

  /** Requests waiting for a connection. O(waiting): for stats, not the hot path. */
  get queued(): number {
    let n = 0
    for (let i = this.#head; i < this.#queue.length; i++)
      if (this.#queue[i]?.isFinished === false) n++
    return n
  }

  /** Open sockets (a connection whose idle socket expired reconnects on its next request). */
  get connected(): number {
    let n = 0
    for (const c of this.#all) if (c.client.stats.connected) n++
    return n
  }

  /**
   * Sends `call` on a connection with room, or queues it. Returns false when the pool is full
   * (backpressure, as undici's `dispatch()`); `onDrain` follows when it has room again.
   */
  send(call: Call): boolean {
    if (this.#closing || this.#destroyed) {
      // As a closed undici dispatcher does: the error goes to the handler (a before-send error,
      // so the call may go to another instance).
      call.errored(
        this.#destroyed ? new errors.ClientDestroyedError() : new errors.ClientClosedError(),
      )
      return false
    }
    const free = this.#free
    const n = free.length
    let conn: Connection
    if (n > 0) {
      conn = free[n - 1] as Connection
      if (conn.running + 1 >= this.#depth) {
        free.pop()
        conn.listed = false
      }
    } else if (this.#all.length < this.#max) {
      conn = this.#connect()
      if (this.#depth > 1) {
        free.push(conn)
        conn.listed = true
      }
    } else {
      // The caller's start callback now (as while waiting for instances), so that its abort
      // reaches the call while it waits here instead of when a connection frees up.
      call.queued = true
      call.startEarly()
      if (call.isFinished) return false
      this.#queue.push(call)
      this.#needDrain = true
      return false
    }
    this.#start(conn, call)
    if (free.length > 0 || this.#all.length < this.#max) return true
    this.#needDrain = true
    return false
  }

  /** A request on `conn` ended (exactly once per start, via the call's lease). */
  release(conn: Connection): void {
    conn.running--
    if (conn.dead) {
      // It reconnected for a request handed over before the event: close it once that ends.
      if (conn.running <= 0 && this.#dead.delete(conn)) conn.client.close().catch(noop)
      return
    }
    // The connection goes straight to the oldest waiting request.
    const next = this.#dequeue()
    if (next !== undefined) {
      this.#start(conn, next)
      return
    }
    if (!conn.listed) {
      this.#free.push(conn)
      conn.listed = true
    }
    if (this.#closed !== undefined) this.#closeIdle()
    if (this.#needDrain) {
      this.#needDrain = false
      this.#onDrain()
    }
  }

  /** Graceful: waiting and running requests finish, then every connection closes. */
  close(): Promise<void> {
    if (this.#closePromise !== undefined) return this.#closePromise
    this.#closing = true
    this.#closePromise = this.#destroyed
      ? Promise.resolve()
      : new Promise((resolve) => {
          this.#closed = resolve
          this.#closeIdle()
        })
    return this.#closePromise
  }

  /** Fails waiting requests with `err` and destroys every connection (running requests fail). */
  async destroy(err?: Error | null): Promise<void> {
    if (this.#destroyed) return
    this.#destroyed = true
    this.#closing = true
    const reason = err ?? new errors.ClientDestroyedError()
    for (let c = this.#dequeue(); c !== undefined; c = this.#dequeue()) c.errored(reason)
    const conns = [...this.#all, ...this.#dead]
    this.#all.length = 0
    this.#free.length = 0
    this.#dead.clear()
    await Promise.allSettled(conns.map((c) => c.client.destroy(err ?? null)))
    // A close() still waiting for the queue ends here.
    this.#closed?.()
    this.#closed = undefined
  }

  #start(conn: Connection, call: Call): void {
    conn.running++
    call.queued = false
    call.lease = conn
    conn.client.dispatch(call.opts, call as unknown as Handler)
  }

  /** Drops aborted requests at the front (already answered); true when a live one waits. */
  #waiting(): boolean {
    const q = this.#queue
    while (this.#head < q.length && (q[this.#head] as Call).isFinished) q[this.#head++] = undefined
    if (this.#head > 0 && (this.#head === q.length || this.#head > 1024)) {
      this.#queue = q.slice(this.#head)
      this.#head = 0
    }
    return this.#head < this.#queue.length
  }

  #dequeue(): Call | undefined {
    if (!this.#waiting()) return undefined
    const call = this.#queue[this.#head] as Call
    this.#queue[this.#head++] = undefined
    return call
  }

  #connect(): Connection {
    const client = new Client(this.#origin, this.#options)
    const conn = new Connection(this, client)
    // Dropped after a failed connect, like undici's Pool (#4088); its requests have already
    // failed (the client errors them before the event), so a new connection replaces it.
    client.on('connectionError', () => {
      if (conn.dead) return
      conn.dead = true
      const i = this.#all.indexOf(conn)
      if (i >= 0) this.#all.splice(i, 1)
      if (conn.listed) {
        const j = this.#free.indexOf(conn)
        if (j >= 0) this.#free.splice(j, 1)
        conn.listed = false
      }
      if (conn.running > 0) this.#dead.add(conn)
      // A waiting request may now have room (the dead connection freed a slot under the bound).
      const next = this.#all.length < this.#max ? this.#dequeue() : undefined
      if (next !== undefined) this.#start(this.#connect(), next)
    })
    this.#all.push(conn)
    return conn
  }

  /** Once nothing waits, closes every connection; resolves close() when all have closed. */
  #closeIdle(): void {
    const done = this.#closed
    if (done === undefined || this.#waiting()) return
    this.#closed = undefined
    const conns = [...this.#all, ...this.#dead]
    Promise.allSettled(conns.map((c) => c.client.close())).then(() => {
      done()
    }, done)
  }
}

function noop(): void {}
