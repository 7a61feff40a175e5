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
 * many streams) keep undici's `Pool`: see `usesOwnConnections` in pool-options.ts.
 */
import { Client, Dispatcher, errors } from 'undici'
import { callbackOrPromise, destroyArgs } from './callback-or-promise.js'

/** The connection an attempt went out on; released exactly once when the attempt ends. */
export interface Lease {
  release(): void
}

/**
 * What the pool needs from a request beyond undici's handler callbacks: the dispatcher's request
 * handlers (request.ts) implement it. An undici `Pool` in the same place simply never calls these.
 */
export interface PooledHandler extends Dispatcher.DispatchHandler {
  /** The request already ended (the caller aborted while it waited): skip it. */
  readonly isFinished: boolean
  /** Every connection is busy: the request waits here. It may end (abort) while waiting. */
  waitForConnection(): void
  /** The request goes out on `lease`; the handler releases it when the attempt ends. */
  useConnection(lease: Lease): void
  /** The pool cannot take the request (closed): a before-send error, as a closed undici pool reports. */
  attemptError(err: Error): void
}

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

/**
 * Same interface as an undici `Pool` (`dispatch`, `close`, `destroy`, `'drain'`, `stats`), for
 * the dispatcher's request handlers ({@link PooledHandler}).
 */
export class InstancePool extends Dispatcher {
  readonly #origin: string
  readonly #options: Client.Options
  readonly #max: number
  readonly #depth: number
  readonly #drainOrigin: URL
  /** Live connections (dead ones leave at once). */
  readonly #all: Connection[] = []
  /** Connections with room, most recently freed on top: keeps the warmest sockets busy. */
  readonly #free: Connection[] = []
  /** Dead connections still carrying a request: destroyed with the pool. */
  readonly #dead = new Set<Connection>()
  /**
   * Waiting requests as (options, handler) pairs; `#head` is the next one's options (a shifting
   * array costs O(n) per shift).
   */
  #queue: (Dispatcher.DispatchOptions | PooledHandler | undefined)[] = []
  #head = 0
  #needDrain = false
  #closing = false
  #destroyed = false
  #closed: (() => void) | undefined
  #closePromise: Promise<void> | undefined

  /**
   * @param options Client options (connector, keep-alive, pipelining).
   * @param connections At most this many connections.
   */
  constructor(origin: string, options: Client.Options, connections: number) {
    super()
    this.#origin = origin
    this.#drainOrigin = new URL(origin)
    this.#options = options
    this.#max = connections
    this.#depth = Math.max(1, options.pipelining ?? 1)
  }

  /** Open sockets and waiting requests, as undici's `Pool.stats`. O(connections + waiting). */
  get stats(): { readonly connected: number; readonly queued: number } {
    let connected = 0
    for (const c of this.#all) if (c.client.stats.connected) connected++
    let queued = 0
    for (let i = this.#head + 1; i < this.#queue.length; i += 2)
      if ((this.#queue[i] as PooledHandler | undefined)?.isFinished === false) queued++
    return { connected, queued }
  }

  /**
   * Sends the request on a connection with room, or queues it. Returns false when the pool is
   * full (backpressure, as undici's `dispatch()`); `'drain'` follows when it has room again.
   */
  override dispatch(opts: Dispatcher.DispatchOptions, call: PooledHandler): boolean {
    if (this.#closing || this.#destroyed) {
      // As a closed undici dispatcher does: the error goes to the handler (a before-send error,
      // so the request may go to another instance).
      call.attemptError(
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
      // The request learns it waits (and gives the caller its start callback), so that an abort
      // answers it here at once instead of when a connection frees up.
      call.waitForConnection()
      if (call.isFinished) return false
      this.#queue.push(opts, call)
      this.#needDrain = true
      return false
    }
    this.#start(conn, opts, call)
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
    if (this.#waiting()) {
      this.#startNext(conn)
      return
    }
    if (!conn.listed) {
      this.#free.push(conn)
      conn.listed = true
    }
    if (this.#closed !== undefined) this.#closeIdle()
    if (this.#needDrain) {
      this.#needDrain = false
      this.emit('drain', this.#drainOrigin)
    }
  }

  /** Graceful: waiting and running requests finish, then every connection closes. */
  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: () => void): Promise<void> | undefined {
    return callbackOrPromise(this.#close(), callback)
  }

  /** Fails waiting requests with `err` and destroys every connection (running requests fail). */
  override destroy(err: Error | null, callback: () => void): void
  override destroy(callback: () => void): void
  override destroy(err?: Error | null): Promise<void>
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | undefined {
    const { err, callback } = destroyArgs(a, b)
    return callbackOrPromise(this.#destroy(err), callback)
  }

  #close(): Promise<void> {
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

  async #destroy(err: Error | null): Promise<void> {
    if (this.#destroyed) return
    this.#destroyed = true
    this.#closing = true
    const reason = err ?? new errors.ClientDestroyedError()
    while (this.#waiting()) {
      const call = this.#queue[this.#head + 1] as PooledHandler
      this.#queue[this.#head] = this.#queue[this.#head + 1] = undefined
      this.#head += 2
      call.attemptError(reason)
    }
    const conns = [...this.#all, ...this.#dead]
    this.#all.length = 0
    this.#free.length = 0
    this.#dead.clear()
    await Promise.allSettled(conns.map((c) => c.client.destroy(err ?? null)))
    // A close() still waiting for the queue ends here.
    this.#closed?.()
    this.#closed = undefined
  }

  #start(conn: Connection, opts: Dispatcher.DispatchOptions, call: PooledHandler): void {
    conn.running++
    call.useConnection(conn)
    conn.client.dispatch(opts, call)
  }

  /** Starts the oldest waiting request on `conn` (call only when {@link #waiting} said one waits). */
  #startNext(conn: Connection): void {
    const q = this.#queue
    const opts = q[this.#head] as Dispatcher.DispatchOptions
    const call = q[this.#head + 1] as PooledHandler
    q[this.#head] = q[this.#head + 1] = undefined
    this.#head += 2
    this.#start(conn, opts, call)
  }

  /** Drops aborted requests at the front (already answered); true when a live one waits. */
  #waiting(): boolean {
    const q = this.#queue
    while (this.#head < q.length && (q[this.#head + 1] as PooledHandler).isFinished) {
      q[this.#head] = q[this.#head + 1] = undefined
      this.#head += 2
    }
    if (this.#head > 0 && (this.#head === q.length || this.#head > 2048)) {
      this.#queue = q.slice(this.#head)
      this.#head = 0
    }
    return this.#head < this.#queue.length
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
      if (this.#all.length < this.#max && this.#waiting()) this.#startNext(this.#connect())
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
