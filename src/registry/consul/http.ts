/**
 * HTTP to the Consul agent, on undici. Two lanes:
 * - `watch`: long polls, in their own bounded Pool (one connection each over HTTP/1.1);
 * - `agent`: short requests (first reads, confirming reads, registration, heartbeats) in a small
 *   separate Pool, so that a heartbeat never queues behind a five-minute long poll.
 * Over HTTPS with HTTP/2 negotiated (ALPN), both lanes share the watch Pool's single connection:
 * streams multiplex, so nothing queues behind a long poll.
 *
 * Answers are read whole, bounded by `limits.maxResponseBytes`, by a dispatch handler
 * (response-reader.ts) rather than through undici's body streams.
 *
 * The token travels in the `X-Consul-Token` header only: the query string would end up in access
 * logs (docs/design/consul.md#acl-tokens). It never appears in an error either.
 */
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { buildConnector, Pool, type Dispatcher } from 'undici'
import { abortReason, onAbort, raceSignal } from '../../core/abort.js'
import { errorMessage, LimitExceededError, RegistryUnavailableError } from '../../errors.js'
import type { ParsedConsulOptions } from './options.js'
import { ResponseReader, type RawAnswer } from './response-reader.js'

/** Which Pool a request goes to. */
export type Lane = 'watch' | 'agent'

/** What the agent speaks, learned from the first TLS handshake. */
export type Protocol = 'unknown' | 'http1' | 'h2'

export interface ConsulRequest {
  readonly method: 'GET' | 'PUT'
  /** Path under the URL's base path, already escaped, e.g. `/v1/health/service/orders`. */
  readonly path: string
  /** Query parameters; `''` sends the key with an empty value (`?stale=`). */
  readonly query?: readonly (readonly [string, string])[]
  /** JSON body for PUTs. */
  readonly body?: unknown
  readonly lane: Lane
  /** Whole-request bound (headers and body); our own timer, not undici's. */
  readonly timeoutMs: number
  readonly signal: AbortSignal
  /** The service this request is about, for errors (the watch sets it). */
  readonly service?: string
}

export interface ConsulResponse {
  readonly status: number
  /**
   * Response header by case-insensitive name (Consul writes Go-canonical names,
   * docs/design/consul.md#response-headers).
   */
  header(name: string): string | undefined
  readonly text: string
}

/** Counters for tests and debugging. */
export interface ConsulHttpStats {
  /** TCP connections open to the agent right now. */
  readonly openConnections: number
  /** Most TCP connections open at the same time since creation. */
  readonly peakConnections: number
  readonly protocol: Protocol
}

/** HTTP/2 streams kept for short requests beside the long polls. */
const H2_SHORT_STREAMS = 32

export class ConsulHttp {
  readonly #options: ParsedConsulOptions
  readonly #watchConnections: number
  readonly #agentConnections: number
  #watchPool: Pool | undefined
  #agentPool: Pool | undefined
  /** HTTPS with HTTP/2 allowed: a one-connection pool that learns the protocol, and keeps everything if it is h2. */
  #h2Pool: Pool | undefined
  /** ALPN result of the last TLS handshake. */
  #alpn: Protocol
  /** What requests are routed by; set once a request has completed over a known protocol. */
  #protocol: Protocol
  /** While the protocol is unknown, the first request goes alone and the others wait here. */
  #probe: Promise<void> | undefined
  #open = 0
  #peak = 0
  #closed = false
  readonly #protocolListeners: ((protocol: Protocol) => void)[] = []

  constructor(options: ParsedConsulOptions) {
    this.#options = options
    // A few connections for short requests, the rest of the budget for long polls.
    this.#agentConnections = options.maxConnections >= 16 ? 4 : 1
    this.#watchConnections = options.maxConnections - this.#agentConnections
    this.#protocol = options.https && options.http2 ? 'unknown' : 'http1'
    this.#alpn = this.#protocol
  }

  get protocol(): Protocol {
    return this.#protocol
  }

  /** Concurrent long polls this transport allows. */
  get watchCapacity(): number {
    if (this.#protocol === 'h2') return this.#options.maxStreams
    // Until ALPN tells, one poll at a time: a burst would open one connection per request.
    if (this.#protocol === 'unknown') return 1
    return this.#watchConnections
  }

  get stats(): ConsulHttpStats {
    return { openConnections: this.#open, peakConnections: this.#peak, protocol: this.#protocol }
  }

  /** Called once when the protocol becomes known. */
  onProtocol(listener: (protocol: Protocol) => void): void {
    this.#protocolListeners.push(listener)
  }

  /**
   * Sends one request. Resolves with any HTTP status; rejects with `RegistryUnavailableError`
   * for transport failures and timeouts, or with `signal.reason` when `signal` aborts.
   *
   * With `decode`, the call settles with what `decode` returns (or throws) for the response.
   * It runs as soon as the body is read, before the request's timer and abort listener are
   * cleaned up and before the promise chain back to the caller unwinds: a watch applies a
   * change there, so the change event does not wait for that bookkeeping.
   */
  request(req: ConsulRequest): Promise<ConsulResponse>
  request<T>(req: ConsulRequest, decode: (res: ConsulResponse) => T): Promise<T>
  async request<T>(
    req: ConsulRequest,
    decode?: (res: ConsulResponse) => T,
  ): Promise<ConsulResponse | T> {
    if (req.signal.aborted) throw abortReason(req.signal)
    while (this.#protocol === 'unknown' && this.#probe !== undefined) {
      await raceSignal(this.#probe, req.signal)
    }
    if (this.#protocol !== 'unknown') return this.#send(this.#pool(req.lane), req, decode)
    let done!: () => void
    this.#probe = new Promise<void>((resolve) => {
      done = resolve
    })
    try {
      this.#h2Pool ??= this.#createPool(1, true)
      return await this.#send(this.#h2Pool, req, decode)
    } finally {
      // Route by protocol only after a request completed: undici sets up the HTTP/2 session
      // after the handshake, and requests sent in between would each open a connection.
      if (this.#alpn !== 'unknown' && !this.#closed) this.#settleProtocol(this.#alpn)
      this.#probe = undefined
      done()
    }
  }

  /** Destroys every pool; in-flight requests fail (their signals have aborted already). */
  async close(): Promise<void> {
    this.#closed = true
    const pools = [this.#watchPool, this.#agentPool, this.#h2Pool]
    this.#watchPool = undefined
    this.#agentPool = undefined
    this.#h2Pool = undefined
    await Promise.all(
      pools.map(async (p) => {
        await p?.destroy().catch(() => undefined)
      }),
    )
  }

  #settleProtocol(protocol: Protocol): void {
    this.#protocol = protocol
    if (protocol === 'http1' && this.#h2Pool !== undefined) {
      // The agent declined h2: HTTP/1.1 needs the bounded pools; the probe's connection goes.
      const probe = this.#h2Pool
      this.#h2Pool = undefined
      void probe.close().catch(() => undefined)
    }
    for (const l of this.#protocolListeners) l(protocol)
  }

  #pool(lane: Lane): Pool {
    if (this.#closed)
      throw new RegistryUnavailableError('The Consul registry is closed', { retryable: false })
    // One connection, many streams: Pool({ connections: 1 }) never opens a second one, even
    // while it reconnects.
    if (this.#protocol === 'h2') return (this.#h2Pool ??= this.#createPool(1, true))
    if (lane === 'agent') return (this.#agentPool ??= this.#createPool(this.#agentConnections))
    return (this.#watchPool ??= this.#createPool(this.#watchConnections))
  }

  #createPool(connections: number, multiplexed = false): Pool {
    const o = this.#options
    const allowH2 = o.https && o.http2
    const connector = buildConnector({
      ...(o.tls ?? {}),
      ...(allowH2 ? { allowH2: true } : {}),
      timeout: o.requestTimeoutMs,
    })
    const connect: buildConnector.connector = (opts, callback) => {
      connector(opts, (...args) => {
        if (args[0] === null) this.#track(args[1])
        callback(...args)
      })
    }
    return new Pool(o.origin, {
      connections,
      connect,
      allowH2,
      // Go's HTTP/2 server allows 250 concurrent streams; we stay under our own cap.
      ...(allowH2 ? { maxConcurrentStreams: o.maxStreams } : {}),
      // undici's Client runs one request at a time unless told otherwise, HTTP/2 included: the
      // shared connection needs room for every long poll plus the short requests beside them.
      // Only this pool gets it, and it only carries concurrent requests once ALPN said h2 (an
      // HTTP/1.1 connection must never pipeline behind a long poll).
      ...(multiplexed ? { pipelining: o.maxStreams + H2_SHORT_STREAMS } : {}),
      // Our own timer bounds every request; undici's defaults (300 s) would cut a 5 min wait.
      headersTimeout: 0,
      bodyTimeout: 0,
    })
  }

  #track(socket: Socket | TLSSocket): void {
    this.#open++
    this.#peak = Math.max(this.#peak, this.#open)
    socket.once('close', () => {
      this.#open--
    })
    if (this.#options.https && this.#options.http2)
      this.#alpn = (socket as TLSSocket).alpnProtocol === 'h2' ? 'h2' : 'http1'
  }

  async #send<T>(
    pool: Dispatcher,
    req: ConsulRequest,
    decode: ((res: ConsulResponse) => T) | undefined,
  ): Promise<ConsulResponse | T> {
    const headers: Record<string, string> = {}
    if (this.#options.token !== undefined) headers['x-consul-token'] = this.#options.token
    let body: string | undefined
    if (req.body !== undefined) {
      body = JSON.stringify(req.body)
      headers['content-type'] = 'application/json'
    }
    const search = new URLSearchParams(
      req.query?.map(([k, v]): [string, string] => [k, v]) ?? [],
    ).toString()
    const path = `${this.#options.basePath}${req.path}${search === '' ? '' : `?${search}`}`
    const outcome = { timedOut: false }
    let reader!: ResponseReader
    const answered = new Promise<RawAnswer>((resolve, reject) => {
      reader = new ResponseReader(
        this.#options.limits.maxResponseBytes,
        (size) =>
          new LimitExceededError(
            'limits.maxResponseBytes',
            this.#options.limits.maxResponseBytes,
            `Consul's answer to ${req.method} ${req.path} is ${size}, over the limit`,
            ...(req.service === undefined ? [] : [{ service: req.service }]),
          ),
        (error, answer) => {
          if (error !== undefined) reject(error)
          else resolve(answer as RawAnswer)
        },
      )
    })
    const timer = setTimeout(() => {
      outcome.timedOut = true
      reader.abort(new TimeoutMarker())
    }, req.timeoutMs)
    timer.unref()
    const off = onAbort(req.signal, () => {
      reader.abort(abortReason(req.signal))
    })
    /** Set once the response is handed to `decode`, whose errors are the caller's own. */
    let decoding = false
    try {
      pool.dispatch(
        {
          method: req.method,
          path,
          headers,
          ...(body === undefined ? {} : { body }),
          // Every agent write we send is an idempotent PUT (register is an upsert, pass/deregister
          // repeat safely). undici holds non-idempotent requests until an HTTP/2 connection is
          // idle, which with five-minute long polls means a heartbeat would miss its TTL.
          idempotent: true,
        },
        reader,
      )
      const raw = await answered
      const response: ConsulResponse = {
        status: raw.status,
        header(name) {
          // undici hands over header names in lower case (the reader's RawAnswer): one lookup.
          const v = raw.headers[name.toLowerCase()]
          return Array.isArray(v) ? v[0] : v
        },
        text: raw.text,
      }
      if (decode === undefined) return response
      decoding = true
      return decode(response)
    } catch (err) {
      if (decoding) throw err
      if (req.signal.aborted) throw abortReason(req.signal)
      if (err instanceof LimitExceededError) throw err
      if (outcome.timedOut)
        throw new RegistryUnavailableError(
          `Consul agent ${this.#options.origin} did not answer ${req.method} ${req.path} within ${req.timeoutMs} ms`,
          { cause: err },
        )
      throw new RegistryUnavailableError(
        `Consul agent ${this.#options.origin} unreachable (${req.method} ${req.path}): ${errorMessage(err)}`,
        { cause: err },
      )
    } finally {
      clearTimeout(timer)
      off()
    }
  }
}

/** Why our own timer aborted a request (reported as a timeout, never seen by callers). */
class TimeoutMarker extends Error {}
