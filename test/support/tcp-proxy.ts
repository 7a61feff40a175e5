/**
 * A loopback TCP proxy for fault injection (etcd3's test `Proxy` idea): every client connection
 * is forwarded to `target`, and the test can
 * - `cut()`: destroy both sides of every connection and refuse new ones until `heal()`;
 * - `blackhole()`: stop forwarding bytes on the current connections while keeping both sockets
 *   open (a half-open path: nothing errors, nothing arrives). Connections made afterwards are
 *   forwarded normally, as when a NAT forgot one flow;
 * - `heal()`: forward again (blackholed connections stay dead: their bytes are gone).
 */
import { EventEmitter } from 'node:events'
import { createConnection, createServer, type Server, type Socket } from 'node:net'

interface Pair {
  readonly client: Socket
  readonly upstream: Socket
  blackholed: boolean
}

/** Emits `connection` (after the upstream connected) and `refused` (a connection during a cut). */
export class TcpProxy extends EventEmitter {
  readonly #server: Server
  readonly #target: { host: string; port: number }
  readonly #pairs = new Set<Pair>()
  #mode: 'forward' | 'cut' = 'forward'
  #port = 0
  /** Connections accepted since start (for assertions on reconnects). */
  connections = 0

  private constructor(target: { host: string; port: number }) {
    super()
    this.#target = target
    this.#server = createServer((client) => {
      this.#accept(client)
    })
  }

  /** Starts a proxy on 127.0.0.1, on a free port. */
  static async start(target: { host?: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy({ host: target.host ?? '127.0.0.1', port: target.port })
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject)
      proxy.#server.listen(0, '127.0.0.1', () => {
        proxy.#server.off('error', reject)
        resolve()
      })
    })
    const address = proxy.#server.address()
    if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address')
    proxy.#port = address.port
    return proxy
  }

  get port(): number {
    return this.#port
  }

  /** `127.0.0.1:<port>`, usable as an etcd host. */
  get host(): string {
    return `127.0.0.1:${this.#port}`
  }

  /** Number of connections currently forwarded (or blackholed). */
  get openConnections(): number {
    return this.#pairs.size
  }

  /** Destroys every connection (both sides) and refuses new ones until `heal()`. */
  cut(): void {
    this.#mode = 'cut'
    for (const pair of this.#pairs) this.#destroy(pair)
  }

  /** Silently drops all bytes of the current connections; keeps their sockets open. */
  blackhole(): void {
    for (const pair of this.#pairs) pair.blackholed = true
  }

  /** Accepts and forwards new connections again. */
  heal(): void {
    this.#mode = 'forward'
  }

  async close(): Promise<void> {
    this.#mode = 'cut'
    for (const pair of this.#pairs) this.#destroy(pair)
    await new Promise<void>((resolve) => {
      this.#server.close(() => {
        resolve()
      })
    })
  }

  #accept(client: Socket): void {
    if (this.#mode === 'cut') {
      client.on('error', () => {})
      client.resetAndDestroy()
      this.emit('refused')
      return
    }
    this.connections++
    const upstream = createConnection(this.#target)
    const pair: Pair = { client, upstream, blackholed: false }
    this.#pairs.add(pair)
    const forward = (from: Socket, to: Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (!pair.blackholed && !to.destroyed) to.write(chunk)
      })
      from.on('error', () => {
        this.#destroy(pair)
      })
      from.on('close', () => {
        // A blackholed path must not tell the other side that the peer went away.
        if (!pair.blackholed) this.#destroy(pair)
      })
    }
    forward(client, upstream)
    forward(upstream, client)
    upstream.once('connect', () => {
      this.emit('connection')
    })
  }

  #destroy(pair: Pair): void {
    if (!this.#pairs.delete(pair)) return
    pair.client.resetAndDestroy()
    pair.upstream.resetAndDestroy()
  }
}
