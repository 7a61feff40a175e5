/**
 * Draining a node:http / node:https / node:http2 server the application gave us: stop accepting,
 * let the requests in flight finish, and cut what is left when the bound runs out.
 *
 * HTTP/1.1 keep-alive is the trap: a caller's idle pooled socket can carry a new request at the
 * very moment the server closes it, and the caller sees "other side closed" for a request it
 * cannot safely retry (a POST). So once draining starts, every response (those in flight and any
 * new one) carries `Connection: close`: each socket ends right after its current response, and
 * callers open new sockets elsewhere. HTTP/2 sessions get a GOAWAY instead (`session.close()`),
 * which tells the caller which streams will still be served.
 */
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http'
import type { Http2Server, Http2SecureServer, Http2Session } from 'node:http2'
import type { Server as HttpsServer } from 'node:https'

/** A server wayfind can drain. */
export type DrainableServer = HttpServer | HttpsServer | Http2Server | Http2SecureServer

/** Drain control of one server. */
export interface ServerDrain {
  /** From now on every response says `Connection: close` (HTTP/1.1). Idempotent. */
  markDraining(): void
  /**
   * Stops accepting and resolves when every connection has ended, or after `timeoutMs`, when
   * the remaining connections are destroyed. Idempotent: every call returns the first promise.
   */
  close(timeoutMs: number): Promise<void>
}

// One tracker per server: two registrations (or two clients) sharing a server drain it once.
const trackers = new WeakMap<DrainableServer, ServerDrain>()

/** Starts tracking `server` (call at registration time, before any drain). */
export function trackServer(server: DrainableServer): ServerDrain {
  let tracker = trackers.get(server)
  if (tracker === undefined) {
    tracker = isHttp1(server) ? new Http1Drain(server) : new Http2Drain(server)
    trackers.set(server, tracker)
  }
  return tracker
}

function isHttp1(server: DrainableServer): server is HttpServer | HttpsServer {
  return typeof (server as Partial<HttpServer>).closeAllConnections === 'function'
}

/** `server.close()` that settles (also when the server was not listening). */
function stopListening(server: DrainableServer): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      server.close(() => {
        resolve()
      })
    } catch {
      resolve()
    }
  })
}

function bounded(work: Promise<void>, timeoutMs: number, onTimeout: () => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  // Ref'd on purpose: a caller awaits the drain, and it is bounded by this very timer.
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      onTimeout()
      resolve()
    }, timeoutMs)
  })
  return Promise.race([work, deadline]).finally(() => {
    clearTimeout(timer)
  })
}

class Http1Drain implements ServerDrain {
  readonly #server: HttpServer | HttpsServer
  readonly #inFlight = new Set<ServerResponse>()
  #draining = false
  #closing: Promise<void> | undefined

  constructor(server: HttpServer | HttpsServer) {
    this.#server = server
    // prependListener: runs before the application's handler, so the header is there before
    // the application writes its head.
    server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
      if (this.#draining) res.setHeader('connection', 'close')
      this.#inFlight.add(res)
      res.once('close', () => {
        this.#inFlight.delete(res)
      })
    })
  }

  markDraining(): void {
    if (this.#draining) return
    this.#draining = true
    for (const res of this.#inFlight) if (!res.headersSent) res.setHeader('connection', 'close')
  }

  close(timeoutMs: number): Promise<void> {
    this.#closing ??= (() => {
      this.markDraining()
      const server = this.#server
      const done = stopListening(server)
      // server.close() already closes idle sockets on Node ≥ 19; explicit for clarity.
      server.closeIdleConnections()
      return bounded(done, timeoutMs, () => {
        server.closeAllConnections()
      })
    })()
    return this.#closing
  }
}

class Http2Drain implements ServerDrain {
  readonly #server: Http2Server | Http2SecureServer
  readonly #sessions = new Set<Http2Session>()
  #closing: Promise<void> | undefined

  constructor(server: Http2Server | Http2SecureServer) {
    this.#server = server
    server.on('session', (session: Http2Session) => {
      this.#sessions.add(session)
      session.once('close', () => {
        this.#sessions.delete(session)
      })
    })
  }

  markDraining(): void {
    // HTTP/2 has no per-response "last request" header; the GOAWAY in close() says it.
  }

  close(timeoutMs: number): Promise<void> {
    this.#closing ??= (() => {
      const done = stopListening(this.#server)
      // GOAWAY: streams already open are served, the caller opens no new ones here.
      for (const s of this.#sessions) s.close()
      return bounded(done, timeoutMs, () => {
        for (const s of this.#sessions) s.destroy()
      })
    })()
    return this.#closing
  }
}
